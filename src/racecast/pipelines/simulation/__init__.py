"""Synthetic race world: simulate racing and write the racecard/results JSON it produces."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
