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
  ``p`` the track named by ``staking_track`` (:mod:`racecast.signals.staking`); no price,
  no bet (edge None, stake 0);
* ``feature_staleness_days``: days between the off and the horse's last run
  (``days_since_last_run``, or ``h_last_off_ts``); None for a debutant; ``stale`` when
  it exceeds the threshold;
* ``explanation``: the features that move the runner's score most.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from racecast.signals.staking import edge, fair_odds, kelly_fraction, stake_units

__all__ = ["ScoringConfig", "feature_staleness_days", "score_races"]

_KEYS = ["race_id", "horse_id"]
_SECONDS_PER_DAY = 86_400.0


class ScoringConfig:
    """Staking and staleness parameters of :func:`score_races`.

    Args:
        kelly_fraction: Kelly multiplier, in (0, 1].
        bankroll_units: Bankroll in units, > 0.
        max_stake_fraction: Cap on one stake's share of the bankroll, in (0, 1].
        staleness_threshold_days: Runners whose last run is older are flagged ``stale``.
        staking_track: ``fundamental`` or ``combined``.
    """

    def __init__(
        self,
        kelly_fraction: float = 0.25,
        bankroll_units: float = 100.0,
        max_stake_fraction: float = 0.05,
        staleness_threshold_days: float = 180.0,
        staking_track: str = "fundamental",
    ) -> None:
        if staking_track not in ("fundamental", "combined"):
            raise ValueError(f"staking_track must be 'fundamental' or 'combined', got {staking_track!r}")
        if not staleness_threshold_days > 0:
            raise ValueError(f"staleness_threshold_days must be > 0, got {staleness_threshold_days}")
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
    if "days_since_last_run" in features.columns:
        return pd.to_numeric(features["days_since_last_run"], errors="coerce").astype(float)
    if {"h_last_off_ts", "off_time"} <= set(features.columns):
        off = pd.to_datetime(features["off_time"], utc=True).astype("int64") / 1e9
        last = pd.to_numeric(features["h_last_off_ts"], errors="coerce")
        return ((off - last) / _SECONDS_PER_DAY).astype(float)
    return pd.Series(np.nan, index=features.index, dtype=float)


def _check_predictions(predictions: pd.DataFrame) -> None:
    missing = [c for c in [*_KEYS, "p_fundamental", "p_market", "p_combined"] if c not in predictions]
    if missing:
        raise KeyError(f"predictions lack columns {missing}")
    p = predictions["p_fundamental"].to_numpy(dtype=float)
    bad = ~((p > 0) & (p <= 1))
    if bad.any():
        first = predictions.loc[bad, _KEYS].iloc[0].tolist()
        raise ValueError(f"predictions: p_fundamental of runner {first} is {p[bad][0]!r}, not in (0, 1]")


def _staking(p: np.ndarray, odds: np.ndarray, config: ScoringConfig) -> dict[str, np.ndarray]:
    """Edge, Kelly fraction and stake per runner (odds NaN: no bet)."""
    kelly = np.atleast_1d(kelly_fraction(p, odds, config.kelly_fraction))
    return {
        "edge": np.atleast_1d(edge(p, odds)),
        "kelly_fraction": kelly,
        "stake_units": np.atleast_1d(
            stake_units(kelly, config.bankroll_units, config.max_stake_fraction)
        ),
    }


def score_races(
    predictions: pd.DataFrame,
    entity_rows: pd.DataFrame,
    features: pd.DataFrame,
    explanations: Mapping[tuple[str, str], list[dict[str, Any]]] | None,
    model_version: str,
    config: ScoringConfig | None = None,
) -> list[dict[str, Any]]:
    """Per-race, per-runner answers of the service.

    Args:
        predictions: ``InferenceBundle.predict`` output (``race_id``, ``horse_id``,
            ``p_fundamental``, ``p_market``, ``p_combined``).
        entity_rows: ``racecard_entity_rows`` output (``off_time``, ``course``,
            ``odds_final``, ``n_runners`` ...).
        features: The feature rows that were scored (for staleness).
        explanations: ``InferenceBundle.explain`` output, or None.
        model_version: The bundle's ``model_version``.
        config: Staking and staleness parameters (defaults: quarter Kelly, 100 units).

    Returns:
        One dict per race in racecard order: ``race_id``, ``off_time`` (ISO 8601 UTC),
        ``course``, ``n_runners``, ``model_version``, ``market`` (every runner priced),
        ``staking_track`` and ``runners`` sorted by rank.

    Raises:
        KeyError: If a column is missing or a predicted runner is not on the racecard.
        ValueError: If a probability is outside (0, 1] or odds are <= 1.
    """
    config = config or ScoringConfig()
    _check_predictions(predictions)
    context_cols = [c for c in ["off_time", "course", "n_runners", "odds_final"] if c in entity_rows]
    frame = predictions[[*_KEYS, "p_fundamental", "p_market", "p_combined"]].merge(
        entity_rows[[*_KEYS, *context_cols]], on=_KEYS, how="left", validate="one_to_one", indicator=True
    )
    if (frame["_merge"] != "both").any():
        first = frame.loc[frame["_merge"] != "both", _KEYS].iloc[0].tolist()
        raise KeyError(f"predicted runner {first} is not on the racecard")
    staleness = features[_KEYS].assign(staleness_days=feature_staleness_days(features).to_numpy())
    frame = frame.drop(columns="_merge").merge(staleness, on=_KEYS, how="left", validate="one_to_one")
    odds = (
        pd.to_numeric(frame["odds_final"], errors="coerce").to_numpy(dtype=float)
        if "odds_final" in frame
        else np.full(len(frame), np.nan)
    )
    p_fund = frame["p_fundamental"].to_numpy(dtype=float)
    p_comb = frame["p_combined"].to_numpy(dtype=float)
    p_stake = p_fund if config.staking_track == "fundamental" else np.where(np.isnan(p_comb), p_fund, p_comb)
    staked = _staking(p_stake, odds, config)
    fair = np.atleast_1d(fair_odds(p_fund))
    rank = frame.groupby("race_id", sort=False)["p_fundamental"].rank(ascending=False, method="min")
    explanations = explanations or {}

    races: dict[str, dict[str, Any]] = {}
    for i, row in enumerate(frame.itertuples(index=False)):
        race = races.get(row.race_id)
        if race is None:
            off = getattr(row, "off_time", None)
            race = races[row.race_id] = {
                "race_id": str(row.race_id),
                "off_time": _iso_utc(off),
                "course": None if pd.isna(getattr(row, "course", None)) else str(row.course),
                "n_runners": 0,
                "model_version": model_version,
                "market": True,
                "staking_track": config.staking_track,
                "runners": [],
            }
        stale_days = _json_float(row.staleness_days)
        race["runners"].append(
            {
                "horse_id": str(row.horse_id),
                "rank": int(rank.iloc[i]),
                "p_win": float(p_fund[i]),
                "fair_odds": float(fair[i]),
                "market_odds": _json_float(odds[i]),
                "p_market": _json_float(row.p_market),
                "p_win_combined": _json_float(p_comb[i]),
                "edge": _json_float(staked["edge"][i]),
                "kelly_fraction": float(staked["kelly_fraction"][i]),
                "stake_units": float(staked["stake_units"][i]),
                "feature_staleness_days": stale_days,
                "stale": stale_days is not None and stale_days > config.staleness_threshold_days,
                "explanation": list(explanations.get((str(row.race_id), str(row.horse_id)), [])),
            }
        )
        race["market"] = race["market"] and not math.isnan(odds[i])
    for race in races.values():
        race["runners"].sort(key=lambda r: (r["rank"], -r["p_win"], r["horse_id"]))
        race["n_runners"] = len(race["runners"])
    return list(races.values())
