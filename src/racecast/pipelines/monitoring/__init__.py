"""Monitoring: feature and prediction drift and rolling performance of recent races."""

from .pipeline import MONITORED_MODEL, create_pipeline

__all__ = ["MONITORED_MODEL", "create_pipeline"]
