"""The monitoring action: ``"none"``, ``"alert"`` or ``"retrain"`` from drift and performance.

:func:`decide_action` applies the rules documented there; :func:`action_reasons` says
which rules fired.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["ACTIONS", "DEFAULT_ACTION_PARAMS", "action_reasons", "decide_action"]

ACTIONS: tuple[str, ...] = ("none", "alert", "retrain")
"""Possible outcomes of :func:`decide_action`, in increasing severity."""

DEFAULT_ACTION_PARAMS: dict[str, Any] = {
    "min_races": 50,
    "max_log_loss_increase": 0.10,
    "max_pseudo_r2_drop": 0.08,
    "alert_on_prediction_drift": True,
}
"""Defaults of the ``action`` parameters of :func:`decide_action`."""


def _action_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_ACTION_PARAMS))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) monitoring.action.{unknown}; "
            f"known: {sorted(DEFAULT_ACTION_PARAMS)}"
        )
    return {**DEFAULT_ACTION_PARAMS, **params}


def action_reasons(
    drift: Mapping[str, Any], performance: Mapping[str, Any], params: Mapping[str, Any] | None
) -> tuple[str, list[str]]:
    """The action of :func:`decide_action` and the reasons for it.

    Returns:
        ``(action, reasons)``; ``reasons`` names every rule that fired (empty for
        ``"none"``).
    """
    cfg = _action_params(params)
    window = performance.get("window") or {}
    change = performance.get("change") or {}
    retrain: list[str] = []
    n_races = int(window.get("n_races") or 0)
    if n_races >= int(cfg["min_races"]):
        increase = change.get("log_loss_increase")
        limit = cfg["max_log_loss_increase"]
        if limit is not None and increase is not None and increase > float(limit):
            retrain.append(f"log loss up {increase:.4f} nats (> {float(limit):.4f})")
        drop = change.get("pseudo_r2_drop")
        limit = cfg["max_pseudo_r2_drop"]
        if limit is not None and drop is not None and drop > float(limit):
            retrain.append(f"pseudo R2 down {drop:.4f} (> {float(limit):.4f})")
    if retrain:
        return "retrain", retrain
    alert: list[str] = []
    if n_races < int(cfg["min_races"]):
        logger.info(
            "monitoring: %d scored races in the window (< min_races %d): no performance rule",
            n_races,
            cfg["min_races"],
        )
    features = drift.get("features") or {}
    if features.get("is_drift"):
        alert.append(f"feature drift in {features.get('drifted')}")
    predictions = drift.get("predictions") or {}
    if cfg["alert_on_prediction_drift"] and predictions.get("is_drift"):
        alert.append(f"prediction drift (KS p={predictions.get('p_value'):.3g})")
    if alert:
        return "alert", alert
    return "none", []


def decide_action(
    drift: Mapping[str, Any], performance: Mapping[str, Any], params: Mapping[str, Any] | None
) -> str:
    """``"retrain"``, ``"alert"`` or ``"none"`` from the drift tests and the performance.

    Rules (parameters ``monitoring.action``, defaults :data:`DEFAULT_ACTION_PARAMS`):

    1. **retrain** when the window has at least ``min_races`` scored races and its log
       loss exceeds the reference's by more than ``max_log_loss_increase`` nats, or its
       pseudo R² is below the reference's by more than ``max_pseudo_r2_drop`` (either
       limit ``None`` switches its rule off). The model is losing accuracy: drift or
       not, it should be refitted on recent races.
    2. **alert** otherwise, when the feature drift test fires, or the prediction drift
       test fires and ``alert_on_prediction_drift`` is true: the inputs (or outputs)
       moved but accuracy holds, so someone should look.
    3. **none** otherwise (including a window too short for the performance rule and
       no drift).

    Args:
        drift: ``{"features": feature_drift(...), "predictions": prediction_drift(...)}``;
            either may be missing.
        performance: ``{"reference": ..., "window": performance_window(...),
            "change": compare_performance(...)}``.
        params: ``monitoring.action`` parameters (unknown keys raise ``ValueError``).

    Returns:
        One of :data:`ACTIONS`.
    """
    return action_reasons(drift, performance, params)[0]
