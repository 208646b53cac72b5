"""The service's answer for scored runners: probabilities, fair odds, edge and stakes.

Pure functions of the bundle's predictions, the racecard's entity rows and the feature
rows; :func:`score_races` returns plain JSON-ready dictionaries (NaN -> None), the same
for ``POST /api/v1/predict`` and ``racecast predict``.

Per runner:

* ``p_win``: the fundamental probability (stacked meta-learner; sums to 1 per race) and
  ``rank`` (1 = most likely), ``fair_odds = 1 / p_win``;
* when the racecard has final odds: ``market_odds``, ``p_market`` (normalised ``1/odds``)
  and ``p_win_combined`` (the Benter blend of both tracks; None unless every runner of
  the race is priced);
* ``edge = p * odds - 1``, the fractional ``kelly_fraction`` and ``stake_units``, with
  ``p`` the track named by ``staking_track`` (:mod:`racecast.signals.staking`; default
  :data:`DEFAULT_STAKING_TRACK`, the combined track); no price, no bet (edge None,
  stake 0). Stakes are 0 on every runner, and ``stake_reason`` says why, unless the
  bundle's validation found the track stakeable
  (:mod:`racecast.evaluation.stakeability`: positive return of this staking rule on
  the validation races, never the holdout); ``stake_reason`` also names a runner's
  missing price or non-positive edge (None when it is staked);
* ``feature_staleness_days``: days between the off and the horse's last run
  (``days_since_last_run``, or ``h_last_off_ts``); None for a debutant; ``stale`` when
  it exceeds the threshold;
* ``explanation``: the features that move the runner's score most (None unless asked for).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.races import race_code_array
from racecast.evaluation.stakeability import TRACKS, stake_decision
from racecast.features.columnar import group_ranks
from racecast.signals.staking import edge, fair_odds, kelly_fraction, stake_units

__all__ = [
    "DEFAULT_STAKING_TRACK",
    "ScoringConfig",
    "feature_staleness_days",
    "runner_positions",
    "score_races",
]

#: The probability stakes are sized on unless ``staking_track`` says otherwise (the
#: one default of the setting: ServingSettings and ScoringConfig use it).
DEFAULT_STAKING_TRACK = "combined"

_KEYS = ["race_id", "horse_id"]
_CONTEXT = ["off_time", "course", "n_runners", "odds_final"]
_SECONDS_PER_DAY = 86_400.0


class ScoringConfig:
    """Staking and staleness parameters of :func:`score_races`.

    Args:
        kelly_fraction: Kelly multiplier, in (0, 1].
        bankroll_units: Bankroll in units, > 0.
        max_stake_fraction: Cap on one stake's share of the bankroll, in (0, 1].
        staleness_threshold_days: Runners whose last run is older are flagged ``stale``.
        staking_track: ``fundamental`` or ``combined`` (default
            :data:`DEFAULT_STAKING_TRACK`).
    """

    def __init__(
        self,
        kelly_fraction: float = 0.25,
        bankroll_units: float = 100.0,
        max_stake_fraction: float = 0.05,
        staleness_threshold_days: float = 180.0,
        staking_track: str = DEFAULT_STAKING_TRACK,
    ) -> None:
        if staking_track not in TRACKS:
            raise ValueError(
                f"staking_track must be 'fundamental' or 'combined', got {staking_track!r}"
            )
        if not staleness_threshold_days > 0:
            raise ValueError(
                f"staleness_threshold_days must be > 0, got {staleness_threshold_days}"
            )
        self.kelly_fraction = float(kelly_fraction)
        self.bankroll_units = float(bankroll_units)
        self.max_stake_fraction = float(max_stake_fraction)
        self.staleness_threshold_days = float(staleness_threshold_days)
        self.staking_track = staking_track


def _json_float(value: Any) -> float | None:
    """A finite float, or None for NaN/None/inf."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _iso_utc(value: Any) -> str | None:
    """ISO 8601 text of a timestamp in UTC (naive = UTC), None when missing."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.isoformat()


def feature_staleness_days(features: pd.DataFrame) -> pd.Series:
    """Days between each runner's off and the horse's last run (NaN for a debutant).

    Uses ``days_since_last_run`` when the feature rows have it, else ``off_time`` minus
    ``h_last_off_ts`` (epoch seconds of the last run), else all NaN.

    Args:
        features: Feature rows (``build_features`` output).

    Returns:
        Float days, indexed like ``features``.
    """
    return pd.Series(_staleness_values(features), index=features.index, dtype=float)


def _staleness_values(features: pd.DataFrame) -> np.ndarray:
    """:func:`feature_staleness_days` as a float64 array (a new one, in row order)."""
    if "days_since_last_run" in features.columns:
        days = features["days_since_last_run"]
        if days.dtype == np.float64:  # build_features' own column: as it is
            return days.to_numpy(copy=True)
        return pd.to_numeric(days, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if {"h_last_off_ts", "off_time"} <= set(features.columns):
        off = pd.to_datetime(features["off_time"], utc=True).astype("int64") / 1e9
        last = pd.to_numeric(features["h_last_off_ts"], errors="coerce")
        return ((off - last) / _SECONDS_PER_DAY).to_numpy(dtype=float, na_value=np.nan)
    return np.full(len(features), np.nan)


def _check_predictions(predictions: pd.DataFrame) -> None:
    missing = [
        c for c in [*_KEYS, "p_fundamental", "p_market", "p_combined"] if c not in predictions
    ]
    if missing:
        raise KeyError(f"predictions lack columns {missing}")
    p = predictions["p_fundamental"].to_numpy(dtype=float)
    bad = ~((p > 0) & (p <= 1))
    if bad.any():
        first = predictions.loc[bad, _KEYS].iloc[0].tolist()
        raise ValueError(
            f"predictions: p_fundamental of runner {first} is {p[bad][0]!r}, not in (0, 1]"
        )


def runner_positions(frame: pd.DataFrame, keys: list[tuple[Any, Any]], what: str) -> np.ndarray:
    """Row position in ``frame`` of each ``(race_id, horse_id)`` (-1 when absent).

    Args:
        frame: Rows with ``race_id`` and ``horse_id``.
        keys: The runners to find.
        what: Name of ``frame`` in the error message.

    Returns:
        One position per key.

    Raises:
        pandas.errors.MergeError: If a runner appears twice in ``frame`` or in ``keys``
            (as the one-to-one merge this replaces).
    """
    rows = list(zip(frame["race_id"].tolist(), frame["horse_id"].tolist(), strict=True))
    if rows == keys:  # the same runners in the same order (the bundle keeps its input's)
        if len(set(rows)) != len(rows):
            raise pd.errors.MergeError(f"runners are not unique in the predictions or the {what}")
        return np.arange(len(rows), dtype=np.int64)
    index = {key: i for i, key in enumerate(rows)}
    if len(index) != len(rows) or len(set(keys)) != len(keys):
        raise pd.errors.MergeError(f"runners are not unique in the predictions or the {what}")
    return np.asarray([index.get(key, -1) for key in keys], dtype=np.int64)


def _staleness_of(features: pd.DataFrame, keys: list[tuple[Any, Any]]) -> np.ndarray:
    """:func:`feature_staleness_days` of each runner of ``keys`` (NaN when not in features)."""
    at = runner_positions(features, keys, "feature rows")
    days = _staleness_values(features)
    return np.where(at >= 0, days[np.maximum(at, 0)], np.nan)


def _odds(entity_rows: pd.DataFrame, at: np.ndarray) -> np.ndarray:
    """``odds_final`` of the racecard rows ``at`` as float (NaN: missing or not a number)."""
    if "odds_final" not in entity_rows:
        return np.full(len(at), np.nan)
    column = entity_rows["odds_final"]
    if column.dtype == np.float64:  # the parser's own column: no conversion
        return column.to_numpy()[at]
    values = column.to_numpy(dtype=object)[at]
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)


def _ranks(race_ids: list[Any], p: np.ndarray) -> list[int]:
    """1 + the number of runners of the same race with a higher ``p`` (ties share the best)."""
    codes = race_code_array(np.asarray(race_ids, dtype=object), "race_id")
    return group_ranks(p.reshape(-1, 1), codes, ascending=False)[:, 0].astype(np.int64).tolist()


def _staking(
    p: np.ndarray, odds: np.ndarray, config: ScoringConfig, stakeable: bool
) -> dict[str, np.ndarray]:
    """Edge, Kelly fraction and stake per runner (odds NaN: no bet; not stakeable: 0)."""
    kelly = np.atleast_1d(kelly_fraction(p, odds, config.kelly_fraction))
    if not stakeable:
        kelly = np.zeros_like(kelly)
    return {
        "edge": np.atleast_1d(edge(p, odds)),
        "kelly_fraction": kelly,
        "stake_units": np.atleast_1d(
            stake_units(kelly, config.bankroll_units, config.max_stake_fraction)
        ),
    }


def _stake_reason(track_reason: str | None, runner_edge: float | None) -> str | None:
    """Why a runner gets no stake (None when it is staked)."""
    if track_reason is not None:
        return track_reason
    if runner_edge is None:
        return "no market price"
    if not runner_edge > 0:
        return "edge <= 0"
    return None


def score_races(
    predictions: pd.DataFrame,
    entity_rows: pd.DataFrame,
    features: pd.DataFrame,
    explanations: Mapping[tuple[str, str], list[dict[str, Any]]] | None,
    model_version: str,
    config: ScoringConfig | None = None,
    staking_validation: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per-race, per-runner answers of the service.

    Args:
        predictions: ``InferenceBundle.predict`` output (``race_id``, ``horse_id``,
            ``p_fundamental``, ``p_market``, ``p_combined``).
        entity_rows: ``racecard_entity_rows`` output (``off_time``, ``course``,
            ``odds_final``, ``n_runners`` ...).
        features: The feature rows that were scored (for staleness).
        explanations: ``InferenceBundle.explain`` output, or None (not asked for: every
            runner's ``explanation`` is None).
        model_version: The bundle's ``model_version``.
        config: Staking and staleness parameters (defaults: quarter Kelly, 100 units).
        staking_validation: The bundle's ``staking_validation`` (track -> figures); the
            configured track is staked only if it is stakeable there (None: never).

    Returns:
        One dict per race in racecard order: ``race_id``, ``off_time`` (ISO 8601 UTC),
        ``course``, ``n_runners``, ``model_version``, ``market`` (every runner priced),
        ``staking_track``, ``stakeable`` and ``stake_reason`` (why the track is not
        stakeable, else None) and ``runners`` sorted by rank (each with its own
        ``stake_reason``).

    Raises:
        KeyError: If a column is missing or a predicted runner is not on the racecard.
        ValueError: If a probability is outside (0, 1] or odds are <= 1.
    """
    config = config or ScoringConfig()
    _check_predictions(predictions)
    race_ids = predictions["race_id"].tolist()
    horse_ids = predictions["horse_id"].tolist()
    keys = list(zip(race_ids, horse_ids, strict=True))
    at = runner_positions(entity_rows, keys, "racecard")
    missing = [i for i, j in enumerate(at) if j < 0]
    if missing:
        raise KeyError(
            f"predicted runner {[race_ids[missing[0]], horse_ids[missing[0]]]} is not on the racecard"
        )
    # off_time is read once per race (a Timestamp per runner costs ~3 us each)
    context = {
        c: entity_rows[c].to_numpy(dtype=object)[at]
        for c in _CONTEXT
        if c in entity_rows and c not in ("off_time", "odds_final")
    }
    off_times = entity_rows["off_time"].array if "off_time" in entity_rows else None
    staleness = _staleness_of(features, keys).tolist()
    odds = _odds(entity_rows, at)
    p_fund = predictions["p_fundamental"].to_numpy(dtype=float)
    p_market = predictions["p_market"].to_numpy(dtype=float)
    p_comb = predictions["p_combined"].to_numpy(dtype=float)
    p_stake = (
        p_fund
        if config.staking_track == "fundamental"
        else np.where(np.isnan(p_comb), p_fund, p_comb)
    )
    stakeable, track_reason = stake_decision(staking_validation, config.staking_track)
    staked = {k: v.tolist() for k, v in _staking(p_stake, odds, config, stakeable).items()}
    fair = np.atleast_1d(fair_odds(p_fund)).tolist()
    rank = _ranks(race_ids, p_fund)
    # Python floats for the loop (a numpy scalar per field and runner costs more)
    p_win, p_market, p_comb, odds = p_fund.tolist(), p_market.tolist(), p_comb.tolist(), odds.tolist()

    races: dict[str, dict[str, Any]] = {}
    for i, (race_id, horse_id) in enumerate(zip(race_ids, horse_ids, strict=True)):
        race = races.get(race_id)
        if race is None:
            course = context["course"][i] if "course" in context else None
            race = races[race_id] = {
                "race_id": str(race_id),
                "off_time": _iso_utc(None if off_times is None else off_times[at[i]]),
                "course": None if pd.isna(course) else str(course),
                "n_runners": 0,
                "model_version": model_version,
                "market": True,
                "staking_track": config.staking_track,
                "stakeable": stakeable,
                "stake_reason": track_reason,
                "runners": [],
            }
        stale_days = _json_float(staleness[i])
        runner_edge = _json_float(staked["edge"][i])
        race["runners"].append(
            {
                "horse_id": str(horse_id),
                "rank": rank[i],
                "p_win": float(p_win[i]),
                "fair_odds": float(fair[i]),
                "market_odds": _json_float(odds[i]),
                "p_market": _json_float(p_market[i]),
                "p_win_combined": _json_float(p_comb[i]),
                "edge": runner_edge,
                "kelly_fraction": float(staked["kelly_fraction"][i]),
                "stake_units": float(staked["stake_units"][i]),
                "stake_reason": _stake_reason(track_reason, runner_edge),
                "feature_staleness_days": stale_days,
                "stale": stale_days is not None and stale_days > config.staleness_threshold_days,
                "explanation": (
                    None
                    if explanations is None
                    else list(explanations.get((str(race_id), str(horse_id)), []))
                ),
            }
        )
        race["market"] = race["market"] and not math.isnan(odds[i])
    for race in races.values():
        race["runners"].sort(key=lambda r: (r["rank"], -r["p_win"], r["horse_id"]))
        race["n_runners"] = len(race["runners"])
    return list(races.values())
