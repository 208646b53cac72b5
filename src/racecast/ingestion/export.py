"""Canonical tables back to the racecard JSON contract 1.1 (pre-race fields only).

Used to turn any ingested race (e.g. a Hong Kong race) into the racecard a client would
post to the service, so the online path can be checked against the training set on real
data. Results (``post_*`` columns) are never exported.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from racecast.ingestion.contract import RACECARD_FORMAT_1_1

_RACE_FIELDS = (
    "source_race_id",
    "race_grade",
    "race_type",
    "surface",
    "going",
    "distance_m",
    "race_class",
    "prize",
    "rail",
    "rating_band",
)
_RUNNER_FIELDS = (
    "horse_name",
    "cloth_number",
    "draw",
    "age",
    "sex",
    "horse_country",
    "weight_carried_kg",
    "body_weight_kg",
    "rating",
    "gear",
    "jockey_id",
    "trainer_id",
    "comment",
)
_INT_FIELDS = {"distance_m", "race_class", "cloth_number", "draw", "age"}


def _value(value: Any, name: str) -> Any:
    """A JSON value for a canonical cell (None for missing; ints stay ints)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if name in _INT_FIELDS:
        return int(value)
    if hasattr(value, "item"):
        return value.item()
    return value


def _capped(value: Any) -> bool:
    """``odds_capped`` as the contract's ``final_capped`` (null means not capped)."""
    return bool(value) if _value(value, "odds_capped") is not None else False


def racecard_document(races: pd.DataFrame, runners: pd.DataFrame) -> dict[str, Any]:
    """Build a ``racecast.racecard/1.1`` document for the given races.

    A price at the source's cap (``odds_capped``, e.g. Hong Kong's 99) is written with
    ``odds.final_capped: true``; canonical tables without a 1.1 column give it as null.

    Args:
        races: Canonical races (one meeting per (meeting_date, course)).
        runners: Canonical runners of those races.

    Returns:
        The racecard document (a JSON-able dict).

    Raises:
        ValueError: If a runner's race is not among ``races``.
    """
    unknown = set(runners["race_id"]) - set(races["race_id"])
    if unknown:
        raise ValueError(f"runners of unknown races: {sorted(unknown)[:5]}")
    meetings = []
    ordered = races.sort_values("off_time")
    for (date, course), meeting in ordered.groupby(["meeting_date", "course"], sort=False):
        country = meeting["country"].iloc[0]
        race_docs = []
        for race in meeting.itertuples(index=False):
            field = runners[runners["race_id"] == race.race_id]
            runner_docs = []
            for runner in field.itertuples(index=False):
                doc = {"horse_id": str(runner.horse_id)}
                doc.update({name: _value(getattr(runner, name), name) for name in _RUNNER_FIELDS})
                odds = {
                    "morning": _value(runner.odds_morning, "odds_morning"),
                    "final": _value(runner.odds_final, "odds_final"),
                    "final_capped": _capped(getattr(runner, "odds_capped", None)),
                }
                doc["odds"] = {k: v for k, v in odds.items() if v not in (None, False)} or None
                doc["non_runner"] = (
                    bool(runner.non_runner) if not pd.isna(runner.non_runner) else False
                )
                runner_docs.append(doc)
            race_doc = {
                "race_id": str(race.race_id),
                "off_time": pd.Timestamp(race.off_time).isoformat(),
                **{name: _value(getattr(race, name, None), name) for name in _RACE_FIELDS},
                "runners": runner_docs,
            }
            race_docs.append(race_doc)
        meetings.append(
            {
                "date": str(date),
                "course": str(course),
                "country": _value(country, "country"),
                "races": race_docs,
            }
        )
    return {"format": RACECARD_FORMAT_1_1, "meetings": meetings}


def racecard_json(races: pd.DataFrame, runners: pd.DataFrame) -> str:
    """``racecard_document`` as indented JSON text."""
    return json.dumps(racecard_document(races, runners), indent=2)
