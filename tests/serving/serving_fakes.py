"""Deterministic stand-ins for the inference service tests (no model, no Feast).

* :class:`FakeBundle`: the ``InferenceBundle`` interface; ``p_fundamental`` is the softmax
  of ``rating / 10`` per race, ``p_market`` normalised ``1/odds_final`` (NaN for a race
  with an unpriced runner), ``p_combined`` the normalised geometric mean of both;
* :func:`fake_online_features`: replaces ``racecast.features.online.online_features``:
  keys, ``off_time``, ``rating``, ``draw`` and ``days_since_last_run`` (from the horse id:
  ``D...`` horses are debutants, ``H<n>`` last ran ``n`` days ago);
* :class:`FakeStore`: ``get_online_features`` for ``horse_form`` lookups.

They live outside ``conftest.py`` (that one holds the bundle tests' real tiny zoo).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pandas as pd

from racecast.inference.settings import ServingSettings

API_KEY = "test-key-0123456789abcdef"
OTHER_KEY = "second-key-fedcba9876543210"


#: Staking validation figures of a track that returned money on its validation races.
STAKEABLE = {
    "period_start": "2024-01-02T12:00:00+00:00",
    "period_end": "2024-02-27T16:00:00+00:00",
    "n_races": 120,
    "n_bets": 96,
    "roi": 0.041,
    "roi_flat": 0.012,
    "min_bets": 30,
    "stakeable": True,
    "reason": None,
}

#: ... and of one that lost (the figures of the issue's ruinous fundamental track).
NOT_STAKEABLE = {
    **STAKEABLE,
    "roi": -0.187,
    "roi_flat": -0.231,
    "stakeable": False,
    "reason": "validation ROI -0.1870 <= 0 on 96 bets (120 validation races "
    "2024-01-02T12:00:00+00:00 .. 2024-02-27T16:00:00+00:00): no positive expected return "
    "after the take",
}


def _per_race_normalised(values: pd.Series, races: pd.Series) -> pd.Series:
    return values / values.groupby(races).transform("sum")


class FakeBundle:
    """The ``InferenceBundle`` interface with closed-form, deterministic outputs."""

    feature_service = "combined_v1"
    fundamental_features = ["rating", "draw", "days_since_last_run"]
    model_version = "racecast-win/7"
    #: Both tracks stakeable (test_stakeability.py swaps in losing figures).
    staking_validation = {track: dict(STAKEABLE) for track in ("fundamental", "combined")}

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, features: pd.DataFrame, kept: Any = None) -> pd.DataFrame:
        self.calls += 1
        races = features["race_id"]
        utility = np.exp(features["rating"].astype(float) / 10.0)
        p_fund = _per_race_normalised(utility, races)
        inverse = 1.0 / features["odds_final"].astype(float)
        priced = inverse.notna().groupby(races).transform("all")
        p_market = _per_race_normalised(inverse, races).where(priced)
        p_comb = _per_race_normalised(np.sqrt(p_fund * p_market), races).where(priced)
        return pd.DataFrame(
            {
                "race_id": races,
                "horse_id": features["horse_id"],
                "p_fundamental": p_fund,
                "p_market": p_market,
                "p_combined": p_comb,
            },
            index=features.index,
        )

    def explain(self, features: pd.DataFrame, top_k: int = 5) -> dict[tuple[str, str], list[dict[str, Any]]]:
        mean_rating = features.groupby("race_id")["rating"].transform("mean")
        out = {}
        for i, row in features.iterrows():
            entries = [
                {"feature": "rating", "value": float(row["rating"]), "contribution": (row["rating"] - mean_rating[i]) / 10},
                {"feature": "draw", "value": float(row["draw"]), "contribution": -0.01 * float(row["draw"])},
            ]
            entries.sort(key=lambda e: -abs(e["contribution"]))
            out[(str(row["race_id"]), str(row["horse_id"]))] = entries[:top_k]
        return out


def _days_since(horse_id: str) -> float:
    return np.nan if horse_id.startswith("D") else float(horse_id.removeprefix("H"))


class FakeReader:
    """Stands in for the service's ``OnlineReader`` (``fake_online_features`` reads nothing)."""

    def __init__(self, feature_store: Any, service_name: str) -> None:
        self.service_name = service_name


def fake_online_features(
    entity_rows, service_name, repo_path="feature_repo", params=None, feature_store=None, reader=None, guard=None, kept=None,
    with_odds=False,
):
    """Feature rows of the racecard's runners, like ``build_features`` (no ``odds_final``)."""
    if service_name != FakeBundle.feature_service:
        raise KeyError(f"feature service {service_name!r} is not registered")
    frame = entity_rows[["race_id", "horse_id", "jockey_id", "trainer_id", "off_time", "rating", "draw"]].copy()
    frame["days_since_last_run"] = [_days_since(h) for h in frame["horse_id"]]
    frame["is_debut"] = frame["days_since_last_run"].isna().astype(int)
    return frame.reset_index(drop=True)


class _Response:
    def __init__(self, data: dict[str, list[Any]]) -> None:
        self._data = data

    def to_dict(self) -> dict[str, list[Any]]:
        return self._data


class FakeStore:
    """``get_online_features`` over a dict ``horse_id -> {feature: value}``."""

    def __init__(self, horses: dict[str, dict[str, Any]] | None = None, broken: bool = False) -> None:
        self.horses = horses or {}
        self.broken = broken

    def get_online_features(self, features, entity_rows):
        if self.broken:
            raise ConnectionError("online store unreachable")
        names = [f.split(":", 1)[1] for f in features]
        data: dict[str, list[Any]] = {"horse_id": [r["horse_id"] for r in entity_rows]}
        for name in names:
            data[name] = [self.horses.get(r["horse_id"], {}).get(name) for r in entity_rows]
        return _Response(data)


def settings(**overrides: Any) -> ServingSettings:
    """Settings with one API key and no credentials file."""
    values: dict[str, Any] = {"api_keys": (API_KEY,), "credentials_path": None, "bundle_uri": "unused.pkl"}
    values.update(overrides)
    return ServingSettings(**values)


def _runner(horse_id: str, draw: int, rating: float, odds: float | None) -> dict[str, Any]:
    runner: dict[str, Any] = {
        "horse_id": horse_id,
        "draw": draw,
        "age": 4,
        "sex": "gelding",
        "weight_carried_kg": 57.0,
        "rating": rating,
        "jockey_id": f"J{draw}",
        "trainer_id": f"T{draw}",
    }
    if odds is not None:
        runner["odds"] = {"final": odds}
    return runner


RACECARD: dict[str, Any] = {
    "format": "racecast.racecard/1",
    "meetings": [
        {
            "date": "2025-02-06",
            "course": "ST",
            "country": "HK",
            "races": [
                {
                    "race_id": "R-PRICED",
                    "off_time": "2025-02-06T14:30:00+08:00",
                    "surface": "turf",
                    "distance_m": 1200,
                    "race_class": 4,
                    "runners": [
                        _runner("H30", 1, 70.0, 2.5),
                        _runner("H400", 2, 60.0, 4.0),
                        _runner("D1", 3, 55.0, 8.0),
                        _runner("H12", 4, 50.0, 26.0),
                    ],
                },
                {
                    "race_id": "R-UNPRICED",
                    "off_time": "2025-02-06T15:00:00+08:00",
                    "surface": "turf",
                    "distance_m": 1650,
                    "race_class": 3,
                    "runners": [
                        _runner("H20", 1, 65.0, None),
                        _runner("H21", 2, 64.0, 3.0),
                        _runner("H22", 3, 40.0, None),
                    ],
                },
            ],
        }
    ],
}


def racecard() -> dict[str, Any]:
    """A deep copy of :data:`RACECARD`."""
    return copy.deepcopy(RACECARD)


def racecard_text(card: dict[str, Any] | None = None) -> str:
    return json.dumps(RACECARD if card is None else card)
