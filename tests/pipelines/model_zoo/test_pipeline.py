"""Run the model_zoo (two cheap models) and evaluation pipelines in memory with Kedro's runner."""

from __future__ import annotations

import numpy as np
import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from racecast.models.base import RaceModel
from racecast.pipelines.evaluation import create_pipeline as create_evaluation
from racecast.pipelines.model_zoo import ZOO_MODELS, create_pipeline
from tests.pipelines.evaluation.test_nodes import PARAMS as EVALUATION_PARAMS
from tests.pipelines.model_zoo.test_nodes import CHEAP_MODELS, small_params, small_training_set


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so tests can read it afterwards."""

    def _release(self) -> None:
        pass


def _feed(prefix: str, value, out: dict) -> dict:
    """``params:`` entries for a parameter dict and every nested key (as Kedro does)."""
    out[prefix] = value
    if isinstance(value, dict):
        for key, item in value.items():
            _feed(f"{prefix}.{key}", item, out)
    return out


def test_default_pipeline_shape():
    pipeline = create_pipeline()
    names = {n.name for n in pipeline.nodes}
    for model in ZOO_MODELS:
        assert {
            f"model_zoo.{model}.{step}" for step in ("fit_oof", "fit_model", "predict_holdout")
        } <= names
        assert f"model_zoo.{model}.model" in pipeline.all_outputs()
        assert f"params:model_zoo.models.{model}" in pipeline.inputs()
    assert "model_zoo.fit_stacker" in names and "model_zoo.fit_blend" in names
    assert {i for i in pipeline.inputs() if not i.startswith("params:")} == {"training_set"}
    assert {
        "model_zoo.stacked.model",
        "model_zoo.blend.model",
        "model_zoo.stacked.holdout_predictions",
        "model_zoo.blend.holdout_predictions",
        "model_zoo.split_info",
        "model_zoo.tuned_params",
    } <= pipeline.all_outputs()


def test_model_zoo_and_evaluation_run_in_memory():
    models = list(CHEAP_MODELS)
    pipeline = create_pipeline(models=models) + create_evaluation(models=models, with_oracle=False)
    feed = _feed("params:model_zoo", small_params(), {})
    _feed("params:evaluation", EVALUATION_PARAMS, feed)
    catalog = DataCatalog(
        {
            "training_set": MemoryDataset(small_training_set()),
            **{name: MemoryDataset(value) for name, value in feed.items()},
            **{name: KeptDataset() for name in pipeline.all_outputs()},
        }
    )
    SequentialRunner().run(pipeline, catalog)

    for name in [*models, "stacked"]:
        assert isinstance(catalog.load(f"model_zoo.{name}.model"), RaceModel)
    for name in models:
        oof = catalog.load(f"model_zoo.{name}.oof_predictions")
        assert list(oof.columns) == ["race_id", "horse_id", "off_time", "p"]
        assert oof["p"].notna().any() and oof["p"].isna().any()  # first days never predicted
    hold = catalog.load("model_zoo.holdout_set")
    for name in [*models, "stacked", "blend"]:
        pred = catalog.load(f"model_zoo.{name}.holdout_predictions")
        assert len(pred) == len(hold)
        np.testing.assert_allclose(pred.groupby("race_id")["p"].sum(), 1.0, atol=1e-9)
    track = catalog.load("model_zoo.blend.model")
    assert np.isfinite(track.benter_.coef_).all() and np.isfinite(track.market_.coef_).all()

    report = catalog.load("evaluation_report")
    candidates = {"market_corrected", "benter", "residual"}
    serving = {"serving_stacked", "serving_blend"}
    assert set(report["models"]) == {"market", *models, "stacked", "blend", *candidates, *serving}
    assert report["models"]["blend"]["track"] == "combined"
    assert report["models"]["serving_blend"]["track"] == "combined"
    assert report["models"]["serving_stacked"]["track"] == "fundamental"
    subset = catalog.load("model_zoo.serving_subset")
    assert report["serving"]["models"] == subset["models"] and set(subset["models"]) <= set(models)
    assert "## Serving bundle" in catalog.load("evaluation_table")
    assert report["models"]["market_corrected"]["track"] == "market"
    assert report["combined"]["choice"] == track.choice_
    holdout = report["combined"]["holdout"]["blend_vs_market_corrected"]
    assert {"mean_gain", "se", "p_value", "mde"} <= set(holdout)
    assert report["split"]["holdout_start"] == catalog.load("model_zoo.split_info")["holdout_start"]
    metrics = catalog.load("evaluation_metrics")
    assert "stacked.pseudo_r2" in metrics
    assert "| stacked |" in catalog.load("evaluation_table")
    assert catalog.load("model_zoo.tuned_params")["tuned"] is False
    assert isinstance(catalog.load("model_zoo.train_set"), pd.DataFrame)
