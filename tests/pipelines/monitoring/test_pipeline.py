"""The monitoring pipeline run in memory: quiet, drifted and degraded windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from racecast.pipelines.monitoring import MONITORED_MODEL, create_pipeline
from tests.catalog_files import catalog_file
from tests.monitoring.test_drift import CATEGORICAL, FEATURES, RACE_LEVEL, make_runners

PARAMS = {
    "window": {"last_days": 20},
    "reference": {"last_days": None},
    "features": FEATURES,
    "categorical": CATEGORICAL,
    "race_level": RACE_LEVEL,
    "p_val": 0.05,
    "max_reference": 5000,
    "seed": 0,
    "performance": {"window_races": 50},
    "action": {"min_races": 50, "max_log_loss_increase": 0.1, "max_pseudo_r2_drop": 0.08},
}


def _predictions(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["race_id", "horse_id", "off_time", "p_model"]].rename(columns={"p_model": "p"})


def inputs(shift: float = 0.0, shuffle: bool = False) -> dict:
    """Training races and a later holdout of the same random world (i.i.d. races).

    ``shift`` adds that many reference standard deviations to two holdout features;
    ``shuffle`` permutes the holdout probabilities within each race.
    """
    frame = make_runners(n_races=480, seed=2)
    race_order = frame["race_id"].drop_duplicates()
    holdout_races = set(race_order.iloc[-160:])
    train = frame[~frame["race_id"].isin(holdout_races)].reset_index(drop=True)
    hold = frame[frame["race_id"].isin(holdout_races)].reset_index(drop=True)
    for col in ("rating", "weight_carried_kg"):
        hold[col] = hold[col] + shift * train[col].std()
    oof = _predictions(train)
    oof.loc[oof["off_time"] < oof["off_time"].quantile(0.3), "p"] = np.nan  # first days
    hold_pred = _predictions(hold)
    if shuffle:
        rng = np.random.default_rng(7)
        hold_pred["p"] = hold_pred.groupby("race_id")["p"].transform(
            lambda s: rng.permutation(s.to_numpy())
        )
    return {
        "model_zoo.train_set": train,
        "model_zoo.holdout_set": hold,
        f"model_zoo.{MONITORED_MODEL}.oof_predictions": oof,
        f"model_zoo.{MONITORED_MODEL}.holdout_predictions": hold_pred,
        "params:monitoring": PARAMS,
    }


def run(data: dict, tmp_path: Path) -> tuple[dict, dict]:
    """Run the pipeline with the report and plot entries of the catalog file in tmp_path."""
    config = catalog_file("08_reporting_monitoring")
    assert (
        config["monitoring_metrics"]["type"]
        == "kedro_mlflow.io.metrics.MlflowMetricsHistoryDataset"
    )
    # the report and plot are MLflow artifacts of a `kedro run`; here (no run) their files
    for name in ("monitoring_report", "monitoring_plot"):
        assert config[name]["type"] == "kedro_mlflow.io.artifacts.MlflowArtifactDataset"
        assert config[name]["artifact_path"] == "monitoring"
        config[name] = config[name]["dataset"]
    assert config["monitoring_plot"]["type"] == "matplotlib.MatplotlibDataset"
    assert config["monitoring_report"]["filepath"] == "data/08_reporting/monitoring.json"
    config.pop("monitoring_metrics")
    for name in ("monitoring_report", "monitoring_plot"):
        filename = Path(config[name]["filepath"]).name
        config[name] = {**config[name], "filepath": str(tmp_path / filename)}
    catalog = DataCatalog.from_config(config)
    for name, value in data.items():
        catalog[name] = MemoryDataset(value)
    catalog["monitoring_metrics"] = MemoryDataset()
    SequentialRunner().run(create_pipeline(), catalog)
    assert (tmp_path / "monitoring.png").stat().st_size > 0
    report = json.loads((tmp_path / "monitoring.json").read_text())
    return report, catalog.load("monitoring_metrics")


def test_pipeline_inputs_and_outputs():
    pipeline = create_pipeline()
    assert pipeline.inputs() == {
        "model_zoo.train_set",
        "model_zoo.holdout_set",
        "model_zoo.stacked.oof_predictions",
        "model_zoo.stacked.holdout_predictions",
        "params:monitoring",
    }
    assert {"monitoring_report", "monitoring_plot", "monitoring_metrics"} <= pipeline.all_outputs()
    other = create_pipeline(model="lgbm_ranker")
    assert "model_zoo.lgbm_ranker.oof_predictions" in other.inputs()


def test_same_distribution_window_is_quiet(tmp_path):
    report, metrics = run(inputs(), tmp_path)
    assert report["model"] == MONITORED_MODEL
    assert report["is_drift"] is False and report["feature_drift"]["drifted"] == []
    assert report["prediction_drift"]["is_drift"] is False
    assert report["action"] == "none" and report["reasons"] == []
    assert set(report["feature_drift"]["features"]) == set(FEATURES)
    assert report["window"]["n_race_days"] == 20
    assert report["performance"]["window"]["n_races"] == report["window"]["n_races"]
    assert metrics["action_level"] == {"value": 0.0, "step": 0}


def test_injected_shift_raises_an_alert(tmp_path):
    report, metrics = run(inputs(shift=1.0), tmp_path)
    assert report["is_drift"] is True
    assert set(report["feature_drift"]["drifted"]) == {"rating", "weight_carried_kg"}
    assert report["action"] == "alert"
    assert metrics["action_level"]["value"] == 1.0


def test_degraded_model_asks_for_retraining(tmp_path):
    report, metrics = run(inputs(shuffle=True), tmp_path)
    assert report["is_drift"] is False
    assert report["performance"]["change"]["log_loss_increase"] > 0.1
    assert report["action"] == "retrain"
    assert metrics["action_level"]["value"] == 2.0


@pytest.mark.parametrize("name", ["monitoring_report", "monitoring_plot"])
def test_catalog_writes_to_the_reporting_layer(name):
    config = catalog_file("08_reporting_monitoring")
    assert config[name]["dataset"]["filepath"].startswith("data/08_reporting/")
