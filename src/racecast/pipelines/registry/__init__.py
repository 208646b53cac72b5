"""Registry: the inference bundle, registered in MLflow as challenger / champion."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
