"""Is a probability track safe to stake? Its staking rule's return on the validation period.

A track (``fundamental``: the stacked model's ``p_win``; ``combined``: the Benter blend)
is **stakeable** only if the bets the service's staking rule would have placed on the
*validation period* returned money after the take. The rule, applied there exactly as
:func:`racecast.inference.scoring.score_races` applies it online:

* a **bet** is every runner of a single-winner race with final decimal odds ``o > 1``
  and a positive edge ``p * o - 1 > 0`` (the runners that get ``kelly_fraction > 0``);
* each bet is staked its full-Kelly fraction ``w = (p * o - 1) / (o - 1)`` (the Kelly
  multiplier scales every stake alike and cancels out of the ratio below; the
  per-bet cap ``max_stake_fraction`` and compounding are left out);
* a winning bet returns ``w * o`` (final odds are the pool's dividends after the take).

``roi = sum(w * (o * won - 1)) / sum(w)``: the expected return per unit staked. The
track is stakeable when it placed at least :data:`MIN_BETS` bets and ``roi > 0``;
``roi_flat`` (one unit per bet) is recorded beside it. The validation period is never
the protocol holdout: the model_zoo pipeline evaluates the tracks on the rolling-origin
test races of the training period, where both tracks' probabilities are out of sample
(:func:`racecast.evaluation.second_stage.rolling_second_stage`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MIN_BETS", "TRACKS", "not_assessed", "stake_decision", "staking_validation"]

#: Probability tracks the service can stake on.
TRACKS = ("fundamental", "combined")

#: Fewest validation bets that can make a track stakeable (fewer is no evidence).
MIN_BETS = 30


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    return (
        stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    ).isoformat()


def staking_validation(
    frame: pd.DataFrame,
    prob_col: str,
    odds_col: str = "odds_final",
    race_col: str = "race_id",
    won_col: str = "won",
    time_col: str = "off_time",
) -> dict[str, Any]:
    """The staking rule's return on validation races, and whether the track is stakeable.

    Args:
        frame: One row per runner of the validation races: the track's probability,
            final odds (NaN: no price, no bet), the 0/1 winner flag and the off time.
            Races without exactly one winner are left out (no settlement rule).
        prob_col: The track's win probability column, each in (0, 1].
        odds_col: Final decimal odds column.
        race_col: Race id column.
        won_col: 0/1 winner column.
        time_col: Off-time column (the period's bounds).

    Returns:
        ``{"period_start", "period_end", "n_races", "n_bets", "roi", "roi_flat",
        "min_bets", "stakeable", "reason"}``: ``roi`` and ``roi_flat`` are None without
        bets; ``reason`` is None when stakeable, else why not.

    Raises:
        KeyError: If a column is missing.
        ValueError: If a probability is missing or outside (0, 1].
    """
    missing = [c for c in (prob_col, odds_col, race_col, won_col, time_col) if c not in frame]
    if missing:
        raise KeyError(f"staking validation: columns {missing} are missing")
    winners = frame.groupby(race_col)[won_col].transform("sum")
    races = frame[winners == 1]
    p = races[prob_col].to_numpy(dtype=float, na_value=np.nan)
    bad = ~((p > 0) & (p <= 1))
    if bad.any():
        raise ValueError(
            f"staking validation: column {prob_col!r} has {int(bad.sum())} values outside (0, 1]"
        )
    odds = races[odds_col].to_numpy(dtype=float, na_value=np.nan)
    won = races[won_col].to_numpy(dtype=float)
    priced = np.isfinite(odds) & (odds > 1)
    safe_odds = np.where(priced, odds, 2.0)
    edge = np.where(priced, p * safe_odds - 1.0, 0.0)
    bet = edge > 0
    weight = edge[bet] / (safe_odds[bet] - 1.0)
    profit = safe_odds[bet] * won[bet] - 1.0
    n_bets = int(bet.sum())
    roi = float((weight * profit).sum() / weight.sum()) if n_bets else None
    figures: dict[str, Any] = {
        "period_start": _iso(races[time_col].min()) if len(races) else None,
        "period_end": _iso(races[time_col].max()) if len(races) else None,
        "n_races": int(races[race_col].nunique()),
        "n_bets": n_bets,
        "roi": roi,
        "roi_flat": float(profit.mean()) if n_bets else None,
        "min_bets": MIN_BETS,
    }
    period = f"{figures['n_races']} validation races {figures['period_start']} .. {figures['period_end']}"
    if n_bets < MIN_BETS:
        reason = f"only {n_bets} bets on the {period} (at least {MIN_BETS} needed to judge)"
    elif roi is None or not roi > 0:
        reason = (
            f"validation ROI {roi:+.4f} <= 0 on {n_bets} bets ({period}): "
            "no positive expected return after the take"
        )
    else:
        reason = None
    return {**figures, "stakeable": reason is None, "reason": reason}


def not_assessed(reason: str) -> dict[str, Any]:
    """The figures of a track that could not be evaluated: not stakeable, with ``reason``."""
    return {
        "period_start": None,
        "period_end": None,
        "n_races": 0,
        "n_bets": 0,
        "roi": None,
        "roi_flat": None,
        "min_bets": MIN_BETS,
        "stakeable": False,
        "reason": reason,
    }


def stake_decision(
    validation: Mapping[str, Mapping[str, Any]] | None, track: str
) -> tuple[bool, str | None]:
    """May ``track`` be staked, given a bundle's recorded validation figures?

    Args:
        validation: Track -> :func:`staking_validation` figures (the bundle's
            ``staking_validation``); None for a bundle built before they were recorded.
        track: ``fundamental`` or ``combined``.

    Returns:
        ``(True, None)``, or ``(False, reason)``: a track without figures is never staked.
    """
    if validation is None:
        return False, (
            "the bundle records no staking validation (built before it was recorded): "
            "retrain it with `kedro run`"
        )
    figures = validation.get(track)
    if figures is None:
        return False, f"the bundle records no staking validation of the {track} track"
    if figures.get("stakeable") is True:
        return True, None
    reason = figures.get("reason") or "not stakeable"
    return False, f"{track} track not stakeable: {reason}"
