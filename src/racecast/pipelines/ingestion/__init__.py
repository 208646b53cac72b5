"""Ingestion pipeline: a source adapter, then shared validation into canonical tables."""

from racecast.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
