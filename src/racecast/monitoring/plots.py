"""Monitoring figure: drift p-values against the Bonferroni threshold, rolling log loss.

Built on the Agg canvas directly (no ``pyplot`` state), like
:mod:`racecast.evaluation.plots`; callers save it, e.g. through Kedro's
``matplotlib.MatplotlibDataset``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["P_VALUE_FLOOR", "drift_test_table", "monitoring_figure"]

P_VALUE_FLOOR = 1e-30
"""p-values are drawn at least this large (the log axis cannot show 0)."""


def drift_test_table(feature_drift: Mapping[str, Any]) -> pd.DataFrame:
    """One row per drift test of a :func:`~racecast.monitoring.drift.feature_drift` result.

    Args:
        feature_drift: The result (its ``features`` and ``threshold``).

    Returns:
        ``test`` (``"<feature>"`` or ``"<feature> (missing)"``), ``p_value`` and
        ``is_drift`` (below the threshold), in feature order.
    """
    threshold = float(feature_drift["threshold"])
    rows = []
    for name, entry in feature_drift["features"].items():
        for label, key in ((name, "p_value"), (f"{name} (missing)", "missing_p_value")):
            p = entry.get(key)
            if p is not None:
                rows.append({"test": label, "p_value": float(p), "is_drift": p < threshold})
    return pd.DataFrame(rows, columns=["test", "p_value", "is_drift"])


def _plot_p_values(axes: Any, feature_drift: Mapping[str, Any]) -> None:
    table = drift_test_table(feature_drift).iloc[::-1]
    shown = np.maximum(table["p_value"].to_numpy(dtype=float), P_VALUE_FLOOR)
    colours = np.where(table["is_drift"], "tab:red", "tab:blue")
    axes.barh(table["test"], shown, color=colours)
    threshold = float(feature_drift["threshold"])
    axes.axvline(
        threshold,
        color="black",
        linestyle="--",
        label=f"Bonferroni {feature_drift['p_val']:g}/{feature_drift['n_tests']}",
    )
    axes.set(
        xscale="log",
        xlabel="p-value, window vs reference (KS; chi-square for categories and missing)",
        title=(
            f"Feature drift: {'DRIFT' if feature_drift['is_drift'] else 'no drift'} "
            "(red: p below the threshold)"
        ),
    )
    axes.legend(loc="lower left")


def _plot_rolling(
    axes: Any,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    reference_log_loss: float | None,
    retrain_log_loss: float | None,
    title: str,
) -> None:
    for label, frame, colour in (("reference", reference, "grey"), ("window", window, "tab:blue")):
        if frame.empty:
            continue
        axes.plot(frame["off_time"], frame["log_loss"], color=colour, label=f"model ({label})")
        if "market_log_loss" in frame:
            axes.plot(
                frame["off_time"],
                frame["market_log_loss"],
                color=colour,
                linestyle=":",
                label=f"market ({label})",
            )
    if not window.empty:
        axes.axvspan(
            window["off_time"].min(), window["off_time"].max(), color="tab:blue", alpha=0.08
        )
    if reference_log_loss is not None:
        axes.axhline(
            reference_log_loss,
            color="grey",
            linestyle="--",
            linewidth=0.8,
            label="reference log loss",
        )
    if retrain_log_loss is not None:
        axes.axhline(
            retrain_log_loss,
            color="tab:red",
            linestyle="--",
            linewidth=0.8,
            label="retrain trigger",
        )
    axes.set(xlabel="off time", ylabel="rolling log loss per race (nats)", title=title)
    axes.tick_params(axis="x", labelrotation=30)
    axes.legend(loc="best", fontsize="small")


def monitoring_figure(
    feature_drift: Mapping[str, Any],
    reference_rolling: pd.DataFrame,
    window_rolling: pd.DataFrame,
    reference_log_loss: float | None = None,
    retrain_log_loss: float | None = None,
    model: str | None = None,
    window_races: int | None = None,
) -> Figure:
    """Per-test drift p-values (bars, log scale) and the rolling log loss over time.

    Args:
        feature_drift: A :func:`~racecast.monitoring.drift.feature_drift` result.
        reference_rolling: :func:`~racecast.monitoring.performance.rolling_log_loss` of the
            reference races (``off_time``, ``log_loss``, optional ``market_log_loss``).
        window_rolling: The same for the monitored window (shaded).
        reference_log_loss: Drawn as a horizontal line when given.
        retrain_log_loss: Log loss above which the window triggers a retrain (line).
        model: Name of the monitored model, in the title of the log loss panel.
        window_races: Races per rolling window, in that title.

    Returns:
        A Figure with the two panels side by side.

    Raises:
        ValueError: If the drift result has no test.
    """
    if not feature_drift.get("features"):
        raise ValueError("feature_drift has no feature test to plot")
    n_tests = len(drift_test_table(feature_drift))
    figure = Figure(figsize=(13.0, max(4.5, 0.3 * n_tests + 1.5)), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, width_ratios=(1, 1.4))
    _plot_p_values(left, feature_drift)
    title = f"Rolling log loss of {model}" if model else "Rolling log loss"
    if window_races:
        title += f" (window of {window_races} races)"
    _plot_rolling(
        right, reference_rolling, window_rolling, reference_log_loss, retrain_log_loss, title
    )
    return figure
