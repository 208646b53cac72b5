"""Point-in-time features: state tables -> Feast (apply, materialize) -> training set."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
