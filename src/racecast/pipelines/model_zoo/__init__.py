"""Model zoo: protocol split, walk-forward OOF base models, stacked meta-learner, Benter blend."""

from .pipeline import ZOO_MODELS, create_pipeline

__all__ = ["ZOO_MODELS", "create_pipeline"]
