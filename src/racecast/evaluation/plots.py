"""Evaluation figures: reliability diagram, Kelly bankroll curves, feature importance.

Figures are built on the Agg canvas directly (no ``pyplot`` state, nothing shown or
saved); callers save them, e.g. through Kedro's ``MatplotlibWriter``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

__all__ = [
    "feature_importance",
    "kelly_curve",
    "reliability_bins",
    "reliability_diagram",
    "wilson_interval",
]


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A Figure attached to an Agg canvas."""
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


#: 95% two-sided normal quantile of the Wilson intervals drawn on the reliability bins.
WILSON_Z = 1.959964


def wilson_interval(
    wins: np.ndarray, n: np.ndarray, z: float = WILSON_Z
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion ``wins / n`` (``n > 0``).

    Args:
        wins: Successes per group.
        n: Trials per group.
        z: Normal quantile (default: 95% two-sided).

    Returns:
        ``(low, high)``, within [0, 1]; also informative for 0 or ``n`` successes.
    """
    wins = np.asarray(wins, dtype=float)
    n = np.asarray(n, dtype=float)
    rate = wins / n
    denominator = 1.0 + z**2 / n
    centre = (rate + z**2 / (2 * n)) / denominator
    half = z * np.sqrt(rate * (1 - rate) / n + z**2 / (4 * n**2)) / denominator
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def reliability_bins(p: np.ndarray, won: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability, win rate, count and Wilson interval per bin of p.

    Bins match :func:`racecast.evaluation.metrics.expected_calibration_error`:
    bin ``j`` holds ``j/n_bins <= p < (j+1)/n_bins`` (the last includes 1).

    Args:
        p: Predicted probabilities.
        won: 0/1 outcomes.
        n_bins: Number of bins.

    Returns:
        A frame indexed by bin with ``mean_p``, ``win_rate``, ``count`` and the 95%
        Wilson interval of the win rate (``low``, ``high``); empty bins are left out.
    """
    bins = np.minimum((np.asarray(p, dtype=float) * n_bins).astype(np.int64), n_bins - 1)
    table = (
        pd.DataFrame({"bin": bins, "p": p, "won": won})
        .groupby("bin")
        .agg(mean_p=("p", "mean"), win_rate=("won", "mean"), count=("p", "size"))
    )
    low, high = wilson_interval(table["win_rate"] * table["count"], table["count"])
    return table.assign(low=low, high=high)


#: Styles of the curves after the reference (cycled): solid, each its own colour and marker.
CURVE_STYLES = (
    {"color": "tab:blue", "marker": "o", "linestyle": "-"},
    {"color": "tab:orange", "marker": "^", "linestyle": "-"},
    {"color": "tab:green", "marker": "D", "linestyle": "-"},
    {"color": "tab:purple", "marker": "v", "linestyle": "-"},
)
#: The reference curve (the market): wide, dashed, drawn underneath the models.
REFERENCE_STYLE = {
    "color": "black",
    "marker": "s",
    "linestyle": "--",
    "linewidth": 2.5,
    "alpha": 0.55,
}


def _styles(names: Sequence[str], reference: str | None) -> dict[str, dict]:
    """Line style per curve: the reference's, else the next of :data:`CURVE_STYLES`."""
    others = [n for n in names if n != reference]
    styles = {n: CURVE_STYLES[i % len(CURVE_STYLES)] for i, n in enumerate(others)}
    if reference in names:
        styles[reference] = REFERENCE_STYLE
    return styles


def _coincident_label(name: str, ys: np.ndarray, drawn: Mapping[str, np.ndarray]) -> str:
    """``name``, or ``"name (= other)"`` when its curve equals one already drawn."""
    for other, other_ys in drawn.items():
        if other_ys.shape == ys.shape and np.allclose(other_ys, ys, rtol=1e-9, atol=1e-12):
            return f"{name} (= {other})"
    return name


def reliability_diagram(
    frame: pd.DataFrame,
    prob_cols: Sequence[str],
    won_col: str = "won",
    n_bins: int = 10,
    reference: str | None = None,
    title: str = "Reliability of win probabilities",
) -> Figure:
    """Reliability diagram (win rate against mean predicted probability) per model.

    Every bin carries its 95% Wilson interval (vertical bars); the panel below gives the
    runners per bin. A curve equal to one drawn before it says so in its label.

    Args:
        frame: Runner-level frame.
        prob_cols: Probability columns, one curve each (the column name is the label).
        won_col: 0/1 winner column.
        n_bins: Number of equal-width bins of p.
        reference: Column drawn first as the dashed reference (e.g. the market).
        title: Title of the diagram.

    Returns:
        A Figure with the diagram on top and the runner count per bin below.

    Raises:
        KeyError: If a column is missing.
    """
    for col in (*prob_cols, won_col):
        if col not in frame.columns:
            raise KeyError(f"column '{col}' is missing from the frame")
    figure = _new_figure((6.5, 7.0))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    won = frame[won_col].to_numpy(dtype=float)
    styles = _styles(prob_cols, reference)
    order = sorted(prob_cols, key=lambda c: c != reference)  # the reference underneath
    drawn: dict[str, np.ndarray] = {}
    for i, col in enumerate(order):
        table = reliability_bins(frame[col].to_numpy(dtype=float), won, n_bins)
        label = _coincident_label(col, table[["mean_p", "win_rate"]].to_numpy(), drawn)
        drawn[col] = table[["mean_p", "win_rate"]].to_numpy()
        style = styles[col]
        top.plot(table["mean_p"], table["win_rate"], label=label, zorder=2 + i, **style)
        offset = 0.004 * (i - (len(order) - 1) / 2)  # side by side, not on top of each other
        top.vlines(
            table["mean_p"] + offset,
            table["low"],
            table["high"],
            color=style["color"],
            alpha=0.5,
            linewidth=1.5,
            zorder=1 + i,
        )
        bottom.plot(table["mean_p"], table["count"], label=label, **style)
    top.set(
        ylabel="observed win rate (bars: 95% Wilson interval)",
        xlim=(0, 1),
        ylim=(0, 1),
        title=title,
    )
    top.legend(loc="upper left")
    bottom.set(xlabel="mean predicted probability (bin)", ylabel="runners per bin", yscale="log")
    return figure


def _bankroll_ticks(axes: Any, low: float, high: float) -> None:
    """Labelled log ticks for a bankroll axis spanning ``[low, high]``: 1-2-5 steps over
    more than a decade, every integer step within one (never only one or two ticks)."""
    decades = np.log10(max(high, 1e-300) / max(low, 1e-300))
    subs = (1.0,) if decades > 4 else (1.0, 2.0, 5.0) if decades > 1 else np.arange(1.0, 10.0)
    axes.yaxis.set_major_locator(LogLocator(base=10.0, subs=subs, numticks=30))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())


def kelly_curve(
    bankroll_series_by_model: Mapping[str, pd.Series],
    reference: str | None = None,
    title: str = "Fractional-Kelly bankroll",
) -> Figure:
    """Bankroll after each race for each model's fractional-Kelly simulation.

    Args:
        bankroll_series_by_model: Model name -> bankroll after each race in race order
            (e.g. ``KellyResult.bankroll``); every curve starts from 1.0 at race 0.
        reference: Model drawn first as the dashed reference (e.g. the market).
        title: Title of the figure.

    Returns:
        A Figure with the bankroll (log scale, labelled ticks) against the race number; a
        curve equal to one drawn before it says so in its label.

    Raises:
        ValueError: If no series is given.
    """
    if not bankroll_series_by_model:
        raise ValueError("bankroll_series_by_model is empty")
    figure = _new_figure((8.0, 4.5))
    axes = figure.subplots()
    names = list(bankroll_series_by_model)
    styles = _styles(names, reference)
    drawn: dict[str, np.ndarray] = {}
    for i, name in enumerate(sorted(names, key=lambda n: n != reference)):
        path = np.r_[1.0, bankroll_series_by_model[name].to_numpy(dtype=float)]
        label = _coincident_label(name, path, drawn)
        drawn[name] = path
        style = {k: v for k, v in styles[name].items() if k != "marker"}
        axes.plot(np.arange(len(path)), path, label=label, zorder=2 + i, **style)
    axes.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
    paths = np.concatenate(list(drawn.values()))
    axes.set(xlabel="race (holdout, in time order)", ylabel="bankroll (start = 1)", yscale="log")
    _bankroll_ticks(axes, float(np.nanmin(paths)), float(np.nanmax(paths)))
    axes.set_title(title)
    axes.legend(loc="best")
    return figure


def feature_importance(
    importances: pd.Series,
    top_n: int | None = 30,
    model: str | None = None,
    kind: str | None = None,
) -> Figure:
    """Horizontal bar chart of feature importances, largest at the top.

    Args:
        importances: Importance per feature (index = feature name).
        top_n: Show only the ``top_n`` largest by absolute value (None: all).
        model: Name of the model, in the title.
        kind: What the importance measures (e.g. ``"total split gain"``): the x label
            and the title (default: the series name).

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
    kind = kind or importances.name or "importance"
    shown = f"top {len(ordered)} of {len(importances)}"
    title = f"Feature importance of {model}: {kind}" if model else f"Feature importance: {kind}"
    axes.set(xlabel=kind, title=f"{title} ({shown})")
    return figure
