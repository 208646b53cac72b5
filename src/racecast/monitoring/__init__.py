"""Monitoring: feature and prediction drift (alibi-detect), rolling performance, actions."""

from .actions import ACTIONS, action_reasons, decide_action
from .drift import feature_drift, prediction_drift
from .performance import compare_performance, performance_window, rolling_log_loss

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
