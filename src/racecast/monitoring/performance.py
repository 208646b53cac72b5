"""Performance monitoring: a model scored on a window of races.

:func:`performance_window` scores a model on a window of races with
:mod:`racecast.evaluation.metrics` (log loss, pseudo R², the market's pseudo R² and the
difference), on single-winner races with a complete market and a prediction of every
runner (:func:`scored_races`), and adds the rolling log loss over ``window_races``
races (:func:`rolling_log_loss`); :func:`compare_performance` gives the change from the
reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from racecast.evaluation.metrics import (
    log_loss,
    market_probability,
    pseudo_r2,
    single_winner_races,
    uniform_log_loss,
)
from racecast.monitoring.drift import MIN_PROBABILITY, _require_columns

__all__ = ["compare_performance", "performance_window", "rolling_log_loss", "scored_races"]


def _finite_or_none(value: Any) -> float | None:
    """A plain float, or None when missing or not finite (JSON-safe)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def scored_races(
    frame: pd.DataFrame,
    p_col: str = "p_model",
    odds_col: str = "odds_final",
    race_col: str = "race_id",
    won_col: str = "won",
) -> tuple[pd.DataFrame, int]:
    """Single-winner races with a result, a prediction and final odds for every runner.

    Args:
        frame: Runner rows (``off_time``, ``won``, odds and the model's probability).
        p_col: Model probability column.
        odds_col: Decimal final odds column.
        race_col: Race id column.
        won_col: 0/1 winner column.

    Returns:
        The scored rows with ``p_market`` added (a new frame sorted by off time), and
        the number of races left out.
    """
    n_races = frame[race_col].nunique()
    data = frame.copy()
    data["p_market"] = market_probability(data, odds_col, race_col)
    present = data[[p_col, "p_market", won_col]].notna().all(axis=1)
    data = data[present.groupby(data[race_col]).transform("all")]
    if not data.empty:
        data = single_winner_races(data, race_col, won_col)
    data = data.sort_values(["off_time", race_col], kind="mergesort").reset_index(drop=True)
    return data, int(n_races - data[race_col].nunique())


def rolling_log_loss(
    frame: pd.DataFrame,
    window_races: int,
    p_col: str = "p_model",
    market_col: str | None = "p_market",
    race_col: str = "race_id",
    won_col: str = "won",
    time_col: str = "off_time",
) -> pd.DataFrame:
    """Rolling mean over ``window_races`` races of ``-log p_winner``, races in time order.

    Args:
        frame: Runner-level frame of single-winner races.
        window_races: Races per window (>= 1); the first ``window_races - 1`` races
            have no value and are left out.
        p_col: Model probability column.
        market_col: Market probability column, or None.
        race_col: Race id column.
        won_col: 0/1 winner column.
        time_col: Off-time column.

    Returns:
        One row per race end: ``off_time``, ``race_id``, ``log_loss`` and (with a market)
        ``market_log_loss``.

    Raises:
        ValueError: If ``window_races`` is below 1.
    """
    if window_races < 1:
        raise ValueError(f"window_races must be >= 1, got {window_races}")
    cols = [p_col] + ([market_col] if market_col else [])
    _require_columns(frame, [race_col, won_col, time_col, *cols], "performance")
    winners = frame[frame[won_col] == 1].sort_values([time_col, race_col], kind="mergesort")
    out = pd.DataFrame({time_col: winners[time_col].to_numpy(), race_col: winners[race_col]})
    out = out.reset_index(drop=True)
    names = {p_col: "log_loss", market_col: "market_log_loss"}
    for col in cols:
        per_race = -np.log(np.clip(winners[col].to_numpy(dtype=float), MIN_PROBABILITY, None))
        out[names[col]] = pd.Series(per_race).rolling(window_races).mean().to_numpy()
    return out.iloc[window_races - 1 :].reset_index(drop=True)


def performance_window(
    frame: pd.DataFrame,
    window_races: int = 100,
    p_col: str = "p_model",
    odds_col: str = "odds_final",
    race_col: str = "race_id",
    won_col: str = "won",
    include_rolling: bool = True,
) -> dict[str, Any]:
    """Protocol metrics of a model on a window of races and its rolling log loss.

    Scored races: single-winner races where every runner has a probability and final
    odds (so the model and the market are scored on the same races).

    Args:
        frame: Runner rows with ``race_id``, ``off_time``, ``won``, ``odds_final`` and
            the model's per-race normalised probability ``p_col``.
        window_races: Races per rolling window.
        p_col: Model probability column.
        odds_col: Decimal final odds column.
        race_col: Race id column.
        won_col: 0/1 winner column (missing: race not scored).
        include_rolling: Add the rolling series under ``"rolling"``.

    Returns:
        ``{"n_races", "n_excluded_races", "start", "end", "log_loss",
        "uniform_log_loss", "market_log_loss", "pseudo_r2", "market_pseudo_r2",
        "delta_r2_vs_market", "log_loss_se", "rolling_log_loss_max",
        "rolling_log_loss_last"}`` (+ ``"rolling": {"off_time": [...], "log_loss":
        [...], "market_log_loss": [...]}``). Metrics are None when no race is scored;
        ``log_loss_se`` is the standard error of the mean per-race log loss.

    Raises:
        KeyError: If a column is missing.
    """
    _require_columns(frame, [race_col, "off_time", won_col, odds_col, p_col], "performance")
    data, excluded = scored_races(frame, p_col, odds_col, race_col, won_col)
    n_races = int(data[race_col].nunique())
    result: dict[str, Any] = {
        "n_races": n_races,
        "n_excluded_races": excluded,
        "window_races": int(window_races),
        "start": None,
        "end": None,
        "log_loss": None,
        "uniform_log_loss": None,
        "market_log_loss": None,
        "pseudo_r2": None,
        "market_pseudo_r2": None,
        "delta_r2_vs_market": None,
        "log_loss_se": None,
        "rolling_log_loss_max": None,
        "rolling_log_loss_last": None,
    }
    if n_races == 0:
        if include_rolling:
            result["rolling"] = {"off_time": [], "log_loss": [], "market_log_loss": []}
        return result
    keys = {"race_col": race_col, "won_col": won_col}
    winner_loss = -np.log(
        np.clip(data.loc[data[won_col] == 1, p_col].to_numpy(float), MIN_PROBABILITY, None)
    )
    model_r2 = pseudo_r2(data, p_col, **keys)
    market_r2 = pseudo_r2(data, "p_market", **keys)
    rolling = rolling_log_loss(
        data, min(window_races, n_races), p_col, "p_market", race_col, won_col
    )
    result.update(
        {
            "start": data["off_time"].min().isoformat(),
            "end": data["off_time"].max().isoformat(),
            "log_loss": _finite_or_none(log_loss(data, p_col, **keys)),
            "uniform_log_loss": _finite_or_none(uniform_log_loss(data, **keys)),
            "market_log_loss": _finite_or_none(log_loss(data, "p_market", **keys)),
            "pseudo_r2": _finite_or_none(model_r2),
            "market_pseudo_r2": _finite_or_none(market_r2),
            "delta_r2_vs_market": _finite_or_none(model_r2 - market_r2),
            "log_loss_se": _finite_or_none(
                winner_loss.std(ddof=1) / math.sqrt(n_races) if n_races > 1 else np.nan
            ),
            "rolling_log_loss_max": _finite_or_none(rolling["log_loss"].max()),
            "rolling_log_loss_last": _finite_or_none(rolling["log_loss"].iloc[-1]),
        }
    )
    if include_rolling:
        result["rolling"] = {
            "off_time": [t.isoformat() for t in rolling["off_time"]],
            "log_loss": [float(v) for v in rolling["log_loss"]],
            "market_log_loss": [float(v) for v in rolling["market_log_loss"]],
        }
    return result


def compare_performance(reference: Mapping[str, Any], window: Mapping[str, Any]) -> dict[str, Any]:
    """Change of the window's performance against the reference's.

    Args:
        reference: :func:`performance_window` of the reference races.
        window: :func:`performance_window` of the recent races.

    Returns:
        ``{"log_loss_increase", "log_loss_increase_z", "pseudo_r2_drop",
        "delta_r2_vs_market_drop"}``: positive values are worse; ``log_loss_increase_z``
        divides the increase by the combined standard error (None when undefined).
    """

    def diff(key: str, sign: float) -> float | None:
        a, b = reference.get(key), window.get(key)
        return None if a is None or b is None else sign * (float(b) - float(a))

    increase = diff("log_loss", 1.0)
    se = [reference.get("log_loss_se"), window.get("log_loss_se")]
    z = None
    if increase is not None and all(s is not None for s in se):
        combined = math.hypot(float(se[0]), float(se[1]))
        z = increase / combined if combined > 0 else None
    return {
        "log_loss_increase": increase,
        "log_loss_increase_z": z,
        "pseudo_r2_drop": diff("pseudo_r2", -1.0),
        "delta_r2_vs_market_drop": diff("delta_r2_vs_market", -1.0),
    }
