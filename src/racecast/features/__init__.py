"""Point-in-time features: entity state tables, the shared request-time transform, Feast I/O."""
