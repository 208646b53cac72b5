"""Monitoring: feature and prediction drift (alibi-detect), rolling performance, actions."""

from .drift import (
    ACTIONS,
    action_reasons,
    compare_performance,
    decide_action,
    feature_drift,
    performance_window,
    prediction_drift,
    rolling_log_loss,
)

__all__ = [
    "ACTIONS",
    "action_reasons",
    "compare_performance",
    "decide_action",
    "feature_drift",
    "performance_window",
    "prediction_drift",
    "rolling_log_loss",
]
