"""Plausibility rules: one definition, the same verdict in batch ingestion and on requests."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from racecast.features.online import RacecardError, racecard_entity_rows
from racecast.ingestion.plausibility import Plausibility, implausible
from racecast.ingestion.racecards import parse_racecards
from racecast.ingestion.request import clean_racecard_columns
from racecast.ingestion.validate import parse_plausibility, validate_and_split
from tests.serving.serving_fakes import racecard

AS_OF = "2025-02-01T00:00:00+00:00"


def _races(off_times, dates):
    return {"off_time": off_times, "meeting_date": dates}


def test_each_rule_flags_only_what_breaks_it():
    races = _races(
        [
            pd.Timestamp("2025-02-06T06:30Z"),  # fine
            pd.Timestamp("2025-02-09T06:30Z"),  # 3 days after its meeting date
            pd.Timestamp("2099-02-06T06:30Z"),  # far ahead of as_of
            pd.Timestamp("1900-02-06T06:30Z"),  # far behind as_of
            None,  # missing: the schema's business, not plausibility's
        ],
        ["2025-02-06", "2025-02-06", "2099-02-06", "1900-02-06", "2025-02-06"],
    )
    runners = {
        "odds_final": [2.5, 1.0, 1e300, None, 1000.0],
        "odds_morning": [None, None, None, 1.005, 1.01],
        "rating": [60.0, -50.0, 200.0, 201.0, None],
    }
    found = implausible(races, runners, Plausibility(), AS_OF)
    assert {(v.table, v.row, v.field) for v in found} == {
        ("races", 1, "off_time"),
        ("races", 2, "off_time"),
        ("races", 3, "off_time"),
        ("runners", 1, "odds_final"),
        ("runners", 2, "odds_final"),
        ("runners", 3, "odds_morning"),
        ("runners", 1, "rating"),
        ("runners", 3, "rating"),
    }
    messages = {(v.row, v.field): v.detail for v in found}
    assert "outside the plausible range [1.01, 1000]" in messages[(2, "odds_final")]
    assert "from the meeting date 2025-02-06" in messages[(1, "off_time")]
    assert "after the reference time" in messages[(2, "off_time")]
    assert "before the reference time" in messages[(3, "off_time")]


def test_a_meeting_date_covers_every_time_zone():
    # 23:00 local in Honolulu and 01:00 local in Auckland are both the meeting's date
    races = _races(
        [pd.Timestamp("2025-02-07T09:00Z"), pd.Timestamp("2025-02-05T12:00Z")],
        ["2025-02-06", "2025-02-06"],
    )
    assert implausible(races, {}, Plausibility(off_time_meeting_days=0.5), AS_OF) == []


def test_ranges_are_configurable_and_checked():
    runners = {"odds_final": [1500.0]}
    assert implausible({}, runners, Plausibility(), AS_OF)
    assert not implausible({}, runners, parse_plausibility({"odds_max": 2000}), AS_OF)
    with pytest.raises(ValueError, match="ingestion.plausibility"):
        parse_plausibility({"odds_min": 5, "odds_max": 2})
    with pytest.raises(ValueError, match="ingestion.plausibility"):
        parse_plausibility({"odds_limit": 5})


def _implausible_card() -> str:
    card = racecard()
    race = card["meetings"][0]["races"][0]
    race["runners"][0]["odds"] = {"final": 1e300}
    race["runners"][1]["rating"] = -50.0
    return json.dumps(card)


def test_batch_ingestion_quarantines_what_requests_reject_with_the_same_message():
    text = _implausible_card()
    parsed = parse_racecards({"day.racecard": lambda: text}, {"source": "racecards"})
    races, _, quarantine, report = validate_and_split(
        *parsed, {"source": "racecards", "months": None}
    )
    own = quarantine[quarantine["reason"] == "implausible_value"]
    assert set(own["field"]) == {"odds_final", "rating"}
    assert "R-PRICED" not in set(races["race_id"])  # the race goes whole
    assert report["quarantine_reasons"]["implausible_value"] == 2

    assert clean_racecard_columns(text, "day.racecard.json", ["race_id"], ["horse_id"]) is None
    with pytest.raises(RacecardError) as caught:
        racecard_entity_rows(text, "day.racecard.json")
    problems = {p["field"]: p["detail"] for p in caught.value.problems}
    batch = dict(zip(own["field"], own["detail"], strict=True))
    assert problems == batch


def test_request_off_time_window_follows_as_of():
    card = racecard()  # races on 2025-02-06
    text = json.dumps(card)
    racecard_entity_rows(text, as_of="2025-02-05T00:00:00+00:00")
    with pytest.raises(RacecardError, match="after the reference time"):
        racecard_entity_rows(text, as_of="2020-01-01T00:00:00+00:00")
