"""A tiny fitted zoo (three cheap base models, stacker, blend) and an MLflow sandbox.

The zoo is fitted once per process by the model_zoo pipeline's own node functions on the
small random world of ``tests/pipelines/model_zoo``. A plain module (not a conftest), so
the other serving tests do not import MLflow or fit anything; ``tests/serving`` and
``tests/pipelines/registry`` import it.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from racecast.features.specs import FUNDAMENTAL_FEATURES, KEY_COLUMNS, MARKET_FEATURES
from racecast.inference.bundle import InferenceBundle, build_bundle
from racecast.pipelines.model_zoo import nodes
from tests.pipelines.model_zoo.test_nodes import small_params, small_training_set

#: Base models of the tiny zoo: the LightGBM ranker (it explains predictions) and
#: classifier, small enough to fit in well under a second.
_TREES = {"n_estimators": 30, "num_leaves": 7, "min_child_samples": 10, "n_jobs": 1}
TINY_MODELS: dict[str, dict[str, Any]] = {
    "lgbm_ranker": {"class": "LGBMRankerModel", "kwargs": dict(_TREES)},
    "lgbm_classifier": {"class": "LGBMClassifierModel", "kwargs": dict(_TREES)},
}

#: Columns of the bundle's input: what build_features returns, plus the final odds.
FEATURE_COLUMNS = [*KEY_COLUMNS, *FUNDAMENTAL_FEATURES, *MARKET_FEATURES, "odds_final"]


def tiny_params() -> dict[str, Any]:
    """model_zoo parameters of the tiny zoo."""
    return small_params(models=TINY_MODELS)


@functools.lru_cache(maxsize=1)
def _fitted_zoo() -> dict[str, Any]:
    params = tiny_params()
    train, hold, info = nodes.split_training_set(small_training_set(), params)
    tuned = nodes.tune_hyperparameters(train, params)
    models, oof, holdout = {}, {}, {}
    for name, spec in params["models"].items():
        oof[name] = nodes.fit_oof(train, spec, params["cv"], tuned, model_name=name)
        models[name] = nodes.fit_model(train, spec, params["cv"], tuned, model_name=name)
        holdout[name] = nodes.predict_holdout(models[name], hold)
    stacker = nodes.fit_stacker(train, params, **oof)
    stacked = nodes.predict_stacked_holdout(stacker, hold, **holdout)
    blend, _ = nodes.fit_blend(train, params, **oof)  # (blend, stacked OOF reference)
    return {
        "train": train,
        "hold": hold,
        "split_info": info,
        "models": models,
        "stacker": stacker,
        "blend": blend,
        "stacked_holdout": stacked,
        "blend_holdout": nodes.predict_blend_holdout(blend, stacked, hold),
        "params": params,
        "oof": oof,
        "holdout": holdout,
    }


@functools.lru_cache(maxsize=1)
def _serving_zoo() -> dict[str, Any]:
    from racecast.pipelines.model_zoo import serving

    zoo = fitted_zoo()
    # a tolerance no loss reaches: the subset drops every model it may (all but one)
    params = {
        **zoo["params"],
        "serving_subset": {"enabled": True, "tolerance": 10.0, "drop_order": ["lgbm_ranker"]},
    }
    train, hold = zoo["train"], zoo["hold"]
    subset = serving.select_serving_subset(train, params, **zoo["oof"])
    stacker = serving.fit_serving_stacker(train, params, subset, zoo["stacker"], **zoo["oof"])
    stacked = nodes.predict_stacked_holdout(stacker, hold, **zoo["holdout"])
    blend = serving.fit_serving_blend(train, params, subset, zoo["blend"], **zoo["oof"])
    return {
        "params": params,
        "subset": subset,
        "stacker": stacker,
        "blend": blend,
        "stacked_holdout": stacked,
        "blend_holdout": nodes.predict_blend_holdout(blend, stacked, hold),
    }


def serving_zoo() -> dict[str, Any]:
    """The tiny zoo's serving subset (``lgbm_ranker`` left out), its stacker, blend and
    their holdout predictions (shared, do not mutate)."""
    return _serving_zoo()


def fitted_zoo() -> dict[str, Any]:
    """The tiny zoo's fitted models and holdout predictions (shared, do not mutate)."""
    return _fitted_zoo()


def holdout_features() -> pd.DataFrame:
    """Holdout runners as the bundle receives them (a fresh copy)."""
    return fitted_zoo()["hold"][FEATURE_COLUMNS].copy()


def evaluation_report(log_loss: float = 2.0) -> dict[str, Any]:
    """A minimal evaluation report: the stacked model's holdout log loss and friends."""
    return {
        "split": {"holdout_start": fitted_zoo()["split_info"]["holdout_start"]},
        "models": {
            "market": {"track": "market", "log_loss": 1.9},
            "lgbm_ranker": {"track": "fundamental", "log_loss": 2.2},
            "stacked": {"track": "fundamental", "log_loss": log_loss},
            "blend": {"track": "combined", "log_loss": 1.85},
        },
    }


def make_bundle(staking_validation: dict[str, Any] | None = None) -> InferenceBundle:
    """A bundle of the tiny zoo.

    Args:
        staking_validation: Track -> staking validation figures; None keeps the blend's
            own (its few validation races make no track stakeable).
    """
    zoo = fitted_zoo()
    return build_bundle(
        zoo["models"],
        zoo["stacker"],
        zoo["blend"],
        feature_service="combined_v1",
        trained_until=zoo["train"]["off_time"].max(),
        holdout_metrics=evaluation_report()["models"],
        staking_validation=staking_validation,
    )


@functools.lru_cache(maxsize=1)
def _sandbox_root() -> Path:
    """One SQLite tracking store per test process (creating one takes seconds)."""
    root = Path(tempfile.mkdtemp(prefix="racecast-mlflow-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    uri = f"sqlite:///{root}/mlflow.db"
    experiment_id = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).create_experiment(
        "racecast-tests", artifact_location=(root / "artifacts").as_uri()
    )
    (root / "experiment_id").write_text(experiment_id)
    return root


@contextlib.contextmanager
def mlflow_sandbox() -> Iterator[str]:
    """Point MLflow at a temporary SQLite store and experiment; restore on exit.

    Yields:
        The sandbox experiment's id (also ``MLFLOW_EXPERIMENT_ID`` inside the block).
    """
    root = _sandbox_root()
    uri = f"sqlite:///{root}/mlflow.db"
    experiment_id = (root / "experiment_id").read_text()
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield experiment_id
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])
