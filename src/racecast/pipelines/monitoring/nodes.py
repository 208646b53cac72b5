"""Nodes of the monitoring pipeline: drift and performance of recent races vs the reference.

The reference is the training set (``model_zoo.train_set``, optionally its last
``reference.last_days`` race days) with the monitored model's out-of-fold predictions;
the window is the last ``window.last_days`` race days of the holdout with the model's
holdout predictions. The tests and rules are those of :mod:`racecast.monitoring.drift`,
:mod:`~racecast.monitoring.performance` and :mod:`~racecast.monitoring.actions`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from racecast.models.split import compute_race_days
from racecast.monitoring import plots
from racecast.monitoring.actions import ACTIONS, DEFAULT_ACTION_PARAMS, action_reasons
from racecast.monitoring.drift import feature_drift, prediction_drift
from racecast.monitoring.performance import (
    compare_performance,
    performance_window,
    rolling_log_loss,
    scored_races,
)

logger = logging.getLogger(__name__)

PREDICTION_COLUMN = "p_model"
FRAME_COLUMNS = ["race_id", "horse_id", "off_time", "won", "odds_final"]


def _last_race_days(frame: pd.DataFrame, last_days: int | None, parameter: str) -> pd.DataFrame:
    """Rows of the last ``last_days`` race days (all rows when None), in time order."""
    if frame.empty:
        raise ValueError(f"no rows to select from (parameter {parameter})")
    if last_days is not None:
        if int(last_days) < 1:
            raise ValueError(f"parameter {parameter} must be >= 1 or null, got {last_days}")
        days = compute_race_days(frame)
        keep = np.sort(days.unique())[-int(last_days) :]
        frame = frame[days.isin(keep)]
    return frame.sort_values(["off_time", "race_id", "horse_id"], kind="mergesort").reset_index(
        drop=True
    )


def select_window(holdout_set: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """The monitored window: the last ``window.last_days`` race days of the holdout.

    Args:
        holdout_set: ``model_zoo.holdout_set`` (the most recent races with a result).
        params: ``monitoring`` parameters (``window.last_days``; null: the whole holdout).

    Returns:
        The window's runner rows in time order (a new frame).
    """
    last_days = (params.get("window") or {}).get("last_days")
    window = _last_race_days(holdout_set, last_days, "monitoring.window.last_days")
    logger.info(
        "monitoring window: %d races, %d runners from %s to %s",
        window["race_id"].nunique(),
        len(window),
        window["off_time"].min(),
        window["off_time"].max(),
    )
    return window


def select_reference(train_set: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """The reference rows: the training set, or its last ``reference.last_days`` race days.

    Args:
        train_set: ``model_zoo.train_set``.
        params: ``monitoring`` parameters (``reference.last_days``; null: all).

    Returns:
        The reference runner rows in time order (a new frame).
    """
    last_days = (params.get("reference") or {}).get("last_days")
    return _last_race_days(train_set, last_days, "monitoring.reference.last_days")


def build_prediction_frame(runners: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Runner rows (labels, odds) with the model's probability, races fully predicted.

    Args:
        runners: Reference or window rows (``race_id, horse_id, off_time, won,
            odds_final``).
        predictions: The model's prediction frame (``race_id, horse_id, p``); the
            out-of-fold frame has no probability on its first race days.

    Returns:
        ``race_id, horse_id, off_time, won, odds_final, p_model`` of the races of
        ``runners`` whose every runner has a probability, in time order.

    Raises:
        KeyError: If a column is missing.
        ValueError: If no race of ``runners`` is fully predicted.
    """
    for name, frame, cols in (
        ("runner", runners, FRAME_COLUMNS),
        ("prediction", predictions, ["race_id", "horse_id", "p"]),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise KeyError(f"columns {missing} are missing from the {name} frame")
    preds = predictions[["race_id", "horse_id", "p"]].rename(columns={"p": PREDICTION_COLUMN})
    frame = runners[FRAME_COLUMNS].merge(
        preds, on=["race_id", "horse_id"], how="left", validate="one_to_one"
    )
    predicted = frame[PREDICTION_COLUMN].notna().groupby(frame["race_id"]).transform("all")
    n_races = frame["race_id"].nunique()
    frame = frame[predicted].reset_index(drop=True)
    if frame.empty:
        raise ValueError(f"none of the {n_races} races has a prediction for every runner")
    if frame["race_id"].nunique() < n_races:
        logger.info(
            "monitoring: %d of %d races without a prediction for every runner left out",
            n_races - frame["race_id"].nunique(),
            n_races,
        )
    return frame


def _drift_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "p_val": float(params.get("p_val", 0.05)),
        "max_reference": params.get("max_reference", 5000),
        "seed": int(params.get("seed", 0)),
    }


def compute_feature_drift(
    reference_set: pd.DataFrame, window_set: pd.DataFrame, params: dict[str, Any]
) -> dict[str, Any]:
    """Feature drift of the window against the reference (:func:`feature_drift`).

    Args:
        reference_set: Output of :func:`select_reference`.
        window_set: Output of :func:`select_window`.
        params: ``monitoring`` parameters (``features``, ``categorical``,
            ``race_level``, ``p_val``, ``max_reference``, ``seed``).

    Returns:
        The :func:`feature_drift` result.
    """
    return feature_drift(
        reference_set,
        window_set,
        list(params.get("features") or []),
        categorical=list(params.get("categorical") or []),
        race_level=list(params.get("race_level") or []),
        **_drift_params(params),
    )


def compute_prediction_drift(
    reference_frame: pd.DataFrame, window_frame: pd.DataFrame, params: dict[str, Any]
) -> dict[str, Any]:
    """Prediction drift of the window against the reference (:func:`prediction_drift`).

    Args:
        reference_frame: Reference rows with ``p_model`` (:func:`build_prediction_frame`).
        window_frame: Window rows with ``p_model``.
        params: ``monitoring`` parameters (``p_val``, ``max_reference``, ``seed``).

    Returns:
        The :func:`prediction_drift` result.
    """
    return prediction_drift(
        reference_frame, window_frame, p_col=PREDICTION_COLUMN, **_drift_params(params)
    )


def compute_performance(
    reference_frame: pd.DataFrame, window_frame: pd.DataFrame, params: dict[str, Any]
) -> dict[str, Any]:
    """The model's performance on the reference and on the window, and the change.

    Args:
        reference_frame: Reference rows with ``p_model`` (out-of-fold predictions).
        window_frame: Window rows with ``p_model``.
        params: ``monitoring`` parameters (``performance.window_races``).

    Returns:
        ``{"reference": ..., "window": ..., "change": ...}``: two
        :func:`performance_window` results (the reference without its rolling series)
        and :func:`compare_performance`.
    """
    window_races = int((params.get("performance") or {}).get("window_races", 100))
    reference = performance_window(
        reference_frame, window_races, p_col=PREDICTION_COLUMN, include_rolling=False
    )
    window = performance_window(window_frame, window_races, p_col=PREDICTION_COLUMN)
    change = compare_performance(reference, window)
    logger.info(
        "monitoring performance: window log loss %s vs reference %s (change %s), "
        "pseudo R2 %s vs %s",
        window["log_loss"],
        reference["log_loss"],
        change["log_loss_increase"],
        window["pseudo_r2"],
        reference["pseudo_r2"],
    )
    return {"reference": reference, "window": window, "change": change}


def _period(frame: pd.DataFrame) -> dict[str, Any]:
    days = compute_race_days(frame)
    return {
        "start": frame["off_time"].min().isoformat(),
        "end": frame["off_time"].max().isoformat(),
        "n_race_days": int(days.nunique()),
        "n_races": int(frame["race_id"].nunique()),
        "n_runners": int(len(frame)),
    }


def build_report(
    reference_set: pd.DataFrame,
    window_set: pd.DataFrame,
    feature_drift_result: dict[str, Any],
    prediction_drift_result: dict[str, Any],
    performance: dict[str, Any],
    params: dict[str, Any],
    model: str = "stacked",
) -> dict[str, Any]:
    """The monitoring report with its action (:func:`racecast.monitoring.decide_action`).

    Args:
        reference_set: Reference rows (their period is reported).
        window_set: Window rows.
        feature_drift_result: Output of :func:`compute_feature_drift`.
        prediction_drift_result: Output of :func:`compute_prediction_drift`.
        performance: Output of :func:`compute_performance`.
        params: ``monitoring`` parameters (``window``, ``reference``, ``action``).
        model: Name of the monitored model.

    Returns:
        ``{"model", "reference", "window", "is_drift", "feature_drift",
        "prediction_drift", "performance", "action", "reasons"}``; ``is_drift`` is the
        feature drift verdict (``prediction_drift.is_drift`` is separate) and ``action``
        one of ``none``, ``alert``, ``retrain``.
    """
    drift = {"features": feature_drift_result, "predictions": prediction_drift_result}
    action, reasons = action_reasons(drift, performance, params.get("action"))
    report = {
        "model": model,
        "reference": {
            "last_days": (params.get("reference") or {}).get("last_days"),
            **_period(reference_set),
        },
        "window": {
            "last_days": (params.get("window") or {}).get("last_days"),
            **_period(window_set),
        },
        "is_drift": bool(feature_drift_result["is_drift"]),
        "feature_drift": feature_drift_result,
        "prediction_drift": prediction_drift_result,
        "performance": performance,
        "action": action,
        "reasons": reasons,
    }
    log = logger.warning if action != "none" else logger.info
    log("monitoring %s: action %s %s", model, action, reasons)
    return report


def mlflow_metrics(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Monitoring metrics in ``MlflowMetricsHistoryDataset`` format.

    Args:
        report: Output of :func:`build_report`.

    Returns:
        ``{"<name>": {"value": v, "step": 0}}`` (kedro-mlflow prefixes the dataset
        name, ``monitoring_metrics.``): ``action_level`` (0 none,
        1 alert, 2 retrain), ``feature_drift`` (0/1), ``n_drifted_features``,
        ``prediction_drift_p_value``, the window's ``log_loss``, ``pseudo_r2`` and
        ``delta_r2_vs_market``, ``log_loss_increase`` and ``p_value.<feature>``;
        missing or non-finite values are left out.
    """
    features = report["feature_drift"]
    window = report["performance"]["window"]
    values: dict[str, Any] = {
        "action_level": ACTIONS.index(report["action"]),
        "feature_drift": int(report["is_drift"]),
        "n_drifted_features": len(features["drifted"]),
        "prediction_drift_p_value": report["prediction_drift"]["p_value"],
        "log_loss": window["log_loss"],
        "pseudo_r2": window["pseudo_r2"],
        "delta_r2_vs_market": window["delta_r2_vs_market"],
        "log_loss_increase": report["performance"]["change"]["log_loss_increase"],
        **{f"p_value.{name}": entry["p_value"] for name, entry in features["features"].items()},
    }
    return {
        key: {"value": float(value), "step": 0}
        for key, value in values.items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    }


def plot_monitoring(
    report: dict[str, Any],
    reference_frame: pd.DataFrame,
    window_frame: pd.DataFrame,
    params: dict[str, Any],
) -> Figure:
    """Drift p-values with the Bonferroni threshold, and the rolling log loss.

    Args:
        report: Output of :func:`build_report`.
        reference_frame: Reference rows with ``p_model``.
        window_frame: Window rows with ``p_model``.
        params: ``monitoring`` parameters (``performance.window_races``,
            ``action.max_log_loss_increase``).

    Returns:
        The Figure of :func:`racecast.monitoring.plots.monitoring_figure`.
    """
    window_races = int((params.get("performance") or {}).get("window_races", 100))
    rolling = []
    for frame in (reference_frame, window_frame):
        scored, _ = scored_races(frame, PREDICTION_COLUMN)
        n_races = scored["race_id"].nunique()
        rolling.append(
            rolling_log_loss(scored, min(window_races, n_races), PREDICTION_COLUMN)
            if n_races
            else pd.DataFrame(columns=["off_time", "log_loss", "market_log_loss"])
        )
    reference_ll = report["performance"]["reference"]["log_loss"]
    limit = {**DEFAULT_ACTION_PARAMS, **(params.get("action") or {})}["max_log_loss_increase"]
    trigger = (
        reference_ll + float(limit) if reference_ll is not None and limit is not None else None
    )
    return plots.monitoring_figure(
        report["feature_drift"],
        rolling[0],
        rolling[1],
        reference_ll,
        trigger,
        model=report.get("model"),
        window_races=window_races,
    )
