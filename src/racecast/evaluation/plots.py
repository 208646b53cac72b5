"""Evaluation figures: reliability diagram, Kelly bankroll curves, feature importance.

Figures are built on the Agg canvas directly (no ``pyplot`` state, nothing shown or
saved); callers save them, e.g. through Kedro's ``MatplotlibWriter``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["feature_importance", "kelly_curve", "reliability_bins", "reliability_diagram"]


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A Figure attached to an Agg canvas."""
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def reliability_bins(p: np.ndarray, won: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability, win rate and count per equal-width bin of p.

    Bins match :func:`racecast.evaluation.metrics.expected_calibration_error`:
    bin ``j`` holds ``j/n_bins <= p < (j+1)/n_bins`` (the last includes 1).

    Args:
        p: Predicted probabilities.
        won: 0/1 outcomes.
        n_bins: Number of bins.

    Returns:
        A frame indexed by bin with ``mean_p``, ``win_rate`` and ``count``; empty bins
        are left out.
    """
    bins = np.minimum((np.asarray(p, dtype=float) * n_bins).astype(np.int64), n_bins - 1)
    table = (
        pd.DataFrame({"bin": bins, "p": p, "won": won})
        .groupby("bin")
        .agg(mean_p=("p", "mean"), win_rate=("won", "mean"), count=("p", "size"))
    )
    return table


def reliability_diagram(
    frame: pd.DataFrame,
    prob_cols: Sequence[str],
    won_col: str = "won",
    n_bins: int = 10,
) -> Figure:
    """Reliability diagram (win rate against mean predicted probability) per model.

    Args:
        frame: Runner-level frame.
        prob_cols: Probability columns, one curve each.
        won_col: 0/1 winner column.
        n_bins: Number of equal-width bins of p.

    Returns:
        A Figure with the diagram on top and the runner count per bin below.

    Raises:
        KeyError: If a column is missing.
    """
    for col in (*prob_cols, won_col):
        if col not in frame.columns:
            raise KeyError(f"column '{col}' is missing from the frame")
    figure = _new_figure((6.0, 6.5))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    won = frame[won_col].to_numpy(dtype=float)
    for col in prob_cols:
        table = reliability_bins(frame[col].to_numpy(dtype=float), won, n_bins)
        top.plot(table["mean_p"], table["win_rate"], marker="o", label=col)
        bottom.plot(table["mean_p"], table["count"], marker=".", label=col)
    top.set(ylabel="observed win rate", xlim=(0, 1), ylim=(0, 1), title="Reliability")
    top.legend(loc="upper left")
    bottom.set(xlabel="mean predicted probability", ylabel="runners", yscale="log")
    return figure


def kelly_curve(bankroll_series_by_model: Mapping[str, pd.Series]) -> Figure:
    """Bankroll after each race for each model's fractional-Kelly simulation.

    Args:
        bankroll_series_by_model: Model name -> bankroll after each race in race order
            (e.g. ``KellyResult.bankroll``); every curve starts from 1.0 at race 0.

    Returns:
        A Figure with the bankroll (log scale) against the race number.

    Raises:
        ValueError: If no series is given.
    """
    if not bankroll_series_by_model:
        raise ValueError("bankroll_series_by_model is empty")
    figure = _new_figure((8.0, 4.5))
    axes = figure.subplots()
    for name, bankroll in bankroll_series_by_model.items():
        path = np.r_[1.0, bankroll.to_numpy(dtype=float)]
        axes.plot(np.arange(len(path)), path, label=name)
    axes.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    axes.set(xlabel="race", ylabel="bankroll", yscale="log", title="Quarter-Kelly bankroll")
    axes.legend(loc="best")
    return figure


def feature_importance(importances: pd.Series, top_n: int | None = 30) -> Figure:
    """Horizontal bar chart of feature importances, largest at the top.

    Args:
        importances: Importance per feature (index = feature name).
        top_n: Show only the ``top_n`` largest by absolute value (None: all).

    Returns:
        The Figure.

    Raises:
        ValueError: If ``importances`` is empty or has missing values.
    """
    if importances.empty:
        raise ValueError("importances is empty")
    if importances.isna().any():
        raise ValueError(
            f"importances has missing values for {importances[importances.isna()].index.tolist()}"
        )
    ordered = importances.reindex(importances.abs().sort_values(ascending=False).index)
    if top_n is not None:
        ordered = ordered.iloc[:top_n]
    ordered = ordered.iloc[::-1]
    figure = _new_figure((7.0, 0.3 * len(ordered) + 1.5))
    axes = figure.subplots()
    axes.barh(ordered.index.astype(str), ordered.to_numpy(dtype=float))
    axes.set(xlabel=importances.name or "importance", title="Feature importance")
    return figure
