"""Canonical tables back to the v1 racecard JSON contract (pre-race fields only).

Used to turn any ingested race (e.g. a Hong Kong race) into the racecard a client would
post to the service, so the online path can be checked against the training set on real
data. Results (``post_*`` columns) are never exported.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from racecast.ingestion.contract import RACECARD_FORMAT

_RACE_FIELDS = ("race_type", "surface", "going", "distance_m", "race_class", "prize", "rail", "rating_band")
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


def racecard_document(races: pd.DataFrame, runners: pd.DataFrame) -> dict[str, Any]:
    """Build a ``racecast.racecard/1`` document for the given races.

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
                }
                doc["odds"] = {k: v for k, v in odds.items() if v is not None} or None
                doc["non_runner"] = bool(runner.non_runner) if not pd.isna(runner.non_runner) else False
                runner_docs.append(doc)
            race_doc = {
                "race_id": str(race.race_id),
                "off_time": pd.Timestamp(race.off_time).isoformat(),
                **{name: _value(getattr(race, name), name) for name in _RACE_FIELDS},
                "runners": runner_docs,
            }
            race_docs.append(race_doc)
        meetings.append(
            {"date": str(date), "course": str(course), "country": _value(country, "country"), "races": race_docs}
        )
    return {"format": RACECARD_FORMAT, "meetings": meetings}


def racecard_json(races: pd.DataFrame, runners: pd.DataFrame) -> str:
    """``racecard_document`` as indented JSON text."""
    return json.dumps(racecard_document(races, runners), indent=2)
