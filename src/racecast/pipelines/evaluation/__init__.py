"""Evaluation: every model of the zoo scored on the holdout (docs/evaluation-protocol.md)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
