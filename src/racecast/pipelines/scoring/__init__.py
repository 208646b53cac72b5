"""Scoring: a day's upcoming racecards -> signals and bets in the signals database; settlement."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
