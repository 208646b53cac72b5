"""Race models: one interface (:class:`RaceModel`), many models, and a spec factory.

Names are loaded lazily so that ``import racecast.models`` (or ``racecast.models.base``)
does not import torch, LightGBM, CatBoost and XGBoost until a model is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_LOCATIONS = {
    "RaceModel": "base",
    "GroupLayout": "base",
    "group_layout": "base",
    "relevance_from_position": "base",
    "ConditionalLogit": "linear",
    "LogisticModel": "linear",
    "LGBMRankerModel": "trees",
    "LGBMClassifierModel": "trees",
    "CatBoostRankerModel": "trees",
    "XGBRankerModel": "trees",
    "RandomForestModel": "trees",
    "TabNetModel": "neural",
    "RaceSetAttention": "neural",
    "SemanticScorer": "semantic",
    "TextEmbeddingProvider": "semantic",
    "TfidfProvider": "semantic",
    "OpenAICompatibleProvider": "semantic",
    "MarketCorrection": "market",
    "ResidualBooster": "residual",
    "MODELS": "zoo",
    "build_model": "factory",
}

__all__ = sorted(_LOCATIONS)


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module 'racecast.models' has no attribute {name!r}")
    module = importlib.import_module(f"racecast.models.{_LOCATIONS[name]}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LOCATIONS))
