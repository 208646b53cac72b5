"""Canonical data model shared by every source adapter and pipeline."""
