"""Third-party warnings judged harmless, silenced with the reason for each.

Every other warning is logged (logger ``py.warnings``), one line each in the format of
``conf/logging.yml``, so ``make run 2>&1 | grep WARNING`` lists what is left to read.
A warning joins :data:`KNOWN_WARNINGS` only with a reason it does not matter to racecast;
warnings racecast's own code causes are fixed where they arise instead.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownWarning:
    """A warning filter and why it is safe.

    Attributes:
        category: Warning class.
        message: Regular expression matched against the start of the message.
        why: Where it comes from and why racecast can ignore it.
    """

    category: type[Warning]
    message: str
    why: str


KNOWN_WARNINGS: tuple[KnownWarning, ...] = (
    KnownWarning(
        UserWarning,
        r"register_new_resolver\(\) is deprecated",
        "OmegaConf 2.4 deprecates the call Kedro's config loader and kedro-mlflow's hook make; "
        "it still works and the versions are pinned in constraints.txt.",
    ),
    KnownWarning(
        UserWarning,
        r"One or more dataset names contain '\.' characters",
        "Kedro warns once for any dotted name outside the node's own namespace: "
        "evaluation, registry and monitoring read the model_zoo namespace's outputs by their "
        "namespaced names (kedro-org/kedro#5021), and feature_state.{view} is a dataset "
        "factory; tests/test_pipeline_warnings.py checks every dotted name is one of these.",
    ),
    KnownWarning(
        UserWarning,
        r"(\x1b\[\d+m)?Add type hints to the `predict` method",
        "mlflow on kedro-mlflow's KedroPipelineModel (not used by racecast), when the plugin "
        "is imported; racecast's pyfunc model has type hints.",
    ),
    KnownWarning(
        UserWarning,
        r'Field name "vector_enabled" in "SqliteOnlineStoreConfig" shadows',
        "pydantic on Feast 0.49's SQLite online store config class; racecast uses no vector "
        "search.",
    ),
    KnownWarning(
        RuntimeWarning,
        r"On demand feature view is an experimental feature",
        "Feast on every on-demand feature view (feature_repo/market.py); its offline "
        "retrieval speed is measured in benchmarks/features.py.",
    ),
    KnownWarning(
        RuntimeWarning,
        r"The spark (data source API|offline store) is an experimental feature",
        "Feast 0.49 on every use of its Spark offline store and SparkSource (the scale env); "
        "tests/features/test_spark_offline.py checks it against the DuckDB store.",
    ),
    KnownWarning(
        DeprecationWarning,
        r"`torch\.jit\.script` is deprecated",
        "torch 2.13 on alibi-detect's scripted PyTorch helpers at import (racecast's drift "
        "tests are the NumPy TabularDrift); torch and alibi-detect are pinned.",
    ),
    KnownWarning(
        DeprecationWarning,
        r"Please import `spmatrix` from the `scipy\.sparse` namespace",
        "pytorch-tabnet imports a deprecated scipy path (removed in SciPy 2.0); scipy is pinned.",
    ),
    KnownWarning(
        DeprecationWarning,
        r"the load_module\(\) method is deprecated",
        "Python 3.11 on a third-party import hook that still uses load_module(); racecast "
        "needs Python 3.11 exactly.",
    ),
    KnownWarning(
        UserWarning,  # FastAPIDeprecationWarning
        r"ORJSONResponse is deprecated",
        "FastAPI on kedro-viz's own server code (`make viz`); racecast's service does not use it.",
    ),
)


class KnownWarningFilter(logging.Filter):
    """Drops ``py.warnings`` records of :data:`KNOWN_WARNINGS`.

    Needed beside the warning filters: some libraries put their own filter first while
    they warn (mlflow wraps calls in ``simplefilter("once", UserWarning)``; Feast sets
    ``"once"`` for DeprecationWarning and RuntimeWarning at import).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(re.search(": " + known.message, text) for known in KNOWN_WARNINGS)


def quiet_known_warnings() -> None:
    """Ignore :data:`KNOWN_WARNINGS` and route every other warning to logging."""
    for known in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=known.message, category=known.category)
    logging.captureWarnings(True)
    captured = logging.getLogger("py.warnings")
    if not any(isinstance(f, KnownWarningFilter) for f in captured.filters):
        captured.addFilter(KnownWarningFilter())
