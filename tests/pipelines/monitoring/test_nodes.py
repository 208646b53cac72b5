"""Node tests of the monitoring pipeline on a small random race world (feature pipeline)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure

from racecast.evaluation.metrics import market_probability
from racecast.features.specs import FUNDAMENTAL_FEATURES
from racecast.models.split import compute_race_days
from racecast.monitoring.actions import ACTIONS, DEFAULT_ACTION_PARAMS, decide_action
from racecast.pipelines.model_zoo.nodes import split_training_set
from racecast.pipelines.monitoring import nodes
from tests.pipelines.model_zoo.test_nodes import small_params, small_training_set

PARAMS_FILE = (
    Path(__file__).resolve().parents[3] / "conf" / "base" / "parameters" / "monitoring.yml"
)
REPORT_KEYS = {
    "model",
    "reference",
    "window",
    "is_drift",
    "feature_drift",
    "prediction_drift",
    "performance",
    "action",
    "reasons",
}


def project_params(**overrides) -> dict:
    """The project's monitoring parameters, with a short window for the small world."""
    params = yaml.safe_load(PARAMS_FILE.read_text())["monitoring"]
    params["window"] = {"last_days": 4}
    params.update(overrides)
    return params


def predictions(runners: pd.DataFrame, seed: int, nan_days: int = 0) -> pd.DataFrame:
    """Market-like per-race probabilities; none on the first ``nan_days`` race days."""
    rng = np.random.default_rng(seed)
    market = market_probability(runners).fillna(0.1).to_numpy()
    out = runners[["race_id", "horse_id", "off_time"]].copy()
    out["p"] = market * np.exp(rng.normal(0, 0.3, len(runners)))
    out["p"] = out["p"] / out.groupby("race_id")["p"].transform("sum")
    if nan_days:
        days = compute_race_days(runners)
        out.loc[days.isin(np.sort(days.unique())[:nan_days]), "p"] = np.nan
    return out


@functools.lru_cache(maxsize=1)
def world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train set, holdout set, OOF predictions, holdout predictions)."""
    train, hold, _ = split_training_set(small_training_set(), small_params())
    return train, hold, predictions(train, 0, nan_days=10), predictions(hold, 1)


@functools.lru_cache(maxsize=1)
def world_report() -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    train, hold, oof, hold_pred = world()
    params = project_params()
    reference = nodes.select_reference(train, params)
    window = nodes.select_window(hold, params)
    ref_frame = nodes.build_prediction_frame(reference, oof)
    win_frame = nodes.build_prediction_frame(window, hold_pred)
    report = nodes.build_report(
        reference,
        window,
        nodes.compute_feature_drift(reference, window, params),
        nodes.compute_prediction_drift(ref_frame, win_frame, params),
        nodes.compute_performance(ref_frame, win_frame, params),
        params,
        model="stacked",
    )
    return report, ref_frame, win_frame


def test_default_parameters_are_consistent():
    params = yaml.safe_load(PARAMS_FILE.read_text())["monitoring"]
    assert set(params["features"]) <= set(FUNDAMENTAL_FEATURES)
    assert set(params["categorical"]) <= set(params["features"])
    assert set(params["race_level"]) <= set(params["features"])
    assert set(params["action"]) == set(DEFAULT_ACTION_PARAMS)
    assert params["window"]["last_days"] >= 1


def test_window_is_the_last_race_days_of_the_holdout():
    _, hold, _, _ = world()
    window = nodes.select_window(hold, {"window": {"last_days": 3}})
    days = compute_race_days(hold)
    last = np.sort(days.unique())[-3:]
    assert set(compute_race_days(window)) == set(pd.to_datetime(last))
    assert len(window) == days.isin(last).sum()
    assert window["off_time"].is_monotonic_increasing
    whole = nodes.select_window(hold, {"window": {"last_days": None}})
    assert len(whole) == len(hold)
    with pytest.raises(ValueError, match="monitoring.window.last_days must be >= 1"):
        nodes.select_window(hold, {"window": {"last_days": 0}})


def test_reference_keeps_the_training_rows_or_their_last_days():
    train, _, _, _ = world()
    assert len(nodes.select_reference(train, {"reference": {"last_days": None}})) == len(train)
    recent = nodes.select_reference(train, {"reference": {"last_days": 5}})
    assert compute_race_days(recent).nunique() == 5
    assert recent["off_time"].min() > train["off_time"].min()


def test_prediction_frame_keeps_fully_predicted_races():
    train, _, oof, _ = world()
    frame = nodes.build_prediction_frame(train, oof)
    assert frame["p_model"].notna().all()
    predicted = oof.groupby("race_id")["p"].apply(lambda s: s.notna().all())
    assert set(frame["race_id"]) == set(predicted.index[predicted])
    np.testing.assert_allclose(frame.groupby("race_id")["p_model"].sum(), 1.0)
    with pytest.raises(ValueError, match="none of the"):
        nodes.build_prediction_frame(train, oof.assign(p=np.nan))
    with pytest.raises(KeyError, match=r"\['p'\] are missing from the prediction frame"):
        nodes.build_prediction_frame(train, oof.drop(columns="p"))


def test_report_shape_matches_the_spec():
    report, ref_frame, win_frame = world_report()
    json.dumps(report, allow_nan=False)  # strict JSON
    assert set(report) == REPORT_KEYS
    params = project_params()
    features = report["feature_drift"]["features"]
    assert list(features) == params["features"]
    for entry in features.values():
        assert 0.0 <= entry["p_value"] <= 1.0
        assert isinstance(entry["is_drift"], bool)
    assert report["is_drift"] is report["feature_drift"]["is_drift"]
    assert report["window"]["last_days"] == 4 and report["window"]["n_race_days"] == 4
    assert report["window"]["n_races"] == win_frame["race_id"].nunique()
    perf = report["performance"]
    assert set(perf) == {"reference", "window", "change"}
    assert perf["window"]["n_races"] <= report["window"]["n_races"]
    assert "rolling" in perf["window"] and "rolling" not in perf["reference"]
    assert report["action"] in ACTIONS
    drift = {"features": report["feature_drift"], "predictions": report["prediction_drift"]}
    assert report["action"] == decide_action(drift, perf, params["action"])
    assert (report["action"] == "none") is (report["reasons"] == [])


def test_world_from_scratch_shows_cold_start_drift():
    """The small world starts with no history: the reference has far more debutants."""
    report, _, _ = world_report()
    entry = report["feature_drift"]["features"]["days_since_last_run"]
    assert entry["missing_rate_reference"] > 2 * entry["missing_rate_current"]
    assert entry["missing_p_value"] < report["feature_drift"]["threshold"]
    assert report["is_drift"] is True
    assert report["action"] in ("alert", "retrain")


def test_mlflow_metrics_are_finite():
    report, _, _ = world_report()
    metrics = nodes.mlflow_metrics(report)
    assert metrics["action_level"]["value"] == ACTIONS.index(report["action"])
    assert metrics["feature_drift"]["value"] == float(report["is_drift"])
    assert metrics["n_drifted_features"]["value"] == len(report["feature_drift"]["drifted"])
    assert "p_value.rating" in metrics
    for entry in metrics.values():
        assert entry["step"] == 0 and np.isfinite(entry["value"])


def test_plot_is_a_figure():
    report, ref_frame, win_frame = world_report()
    figure = nodes.plot_monitoring(report, ref_frame, win_frame, project_params())
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].patches) == report["feature_drift"]["n_tests"]
    window = project_params()["performance"]["window_races"]
    assert figure.axes[1].get_title() == (
        f"Rolling log loss of {report['model']} (window of {window} races)"
    )
