"""Every race model of the zoo, importable from one place (the factory's default module).

Importing this module imports all model libraries (LightGBM, CatBoost, XGBoost, torch,
pytorch-tabnet); import the individual modules to load fewer.
"""

from racecast.models.base import RaceModel
from racecast.models.linear import ConditionalLogit, LogisticModel
from racecast.models.neural import RaceSetAttention, TabNetModel
from racecast.models.semantic import (
    OpenAICompatibleProvider,
    SemanticScorer,
    TextEmbeddingProvider,
    TfidfProvider,
)
from racecast.models.trees import (
    CatBoostRankerModel,
    LGBMClassifierModel,
    LGBMRankerModel,
    RandomForestModel,
    XGBRankerModel,
)

#: Every concrete race model, by class name.
MODELS: dict[str, type[RaceModel]] = {
    cls.__name__: cls
    for cls in (
        ConditionalLogit,
        LGBMRankerModel,
        LGBMClassifierModel,
        CatBoostRankerModel,
        XGBRankerModel,
        TabNetModel,
        LogisticModel,
        RandomForestModel,
        RaceSetAttention,
        SemanticScorer,
    )
}

__all__ = [
    "MODELS",
    "CatBoostRankerModel",
    "ConditionalLogit",
    "LGBMClassifierModel",
    "LGBMRankerModel",
    "LogisticModel",
    "OpenAICompatibleProvider",
    "RaceModel",
    "RaceSetAttention",
    "RandomForestModel",
    "SemanticScorer",
    "TabNetModel",
    "TextEmbeddingProvider",
    "TfidfProvider",
    "XGBRankerModel",
]
