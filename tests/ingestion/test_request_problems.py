"""``racecard_problems``: the request path's cheap problem report equals the batch path's."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from racecast.data.schema import QUARANTINE_COLUMNS
from racecast.features.online import RacecardError, racecard_entity_rows
from racecast.ingestion.racecards import parse_racecards
from racecast.ingestion.request import racecard_problems
from racecast.ingestion.validate import validate_and_split
from tests.serving.serving_fakes import racecard

FILE = "day.racecard.json"


def _missing_horse(card):
    del card["meetings"][0]["races"][0]["runners"][2]["horse_id"]


def _draw_too_high(card):
    card["meetings"][0]["races"][1]["runners"][0]["draw"] = 77


def _bad_off_time(card):
    card["meetings"][0]["races"][0]["off_time"] = "2025-02-06T14:30:00"


def _implausible(card):
    card["meetings"][0]["races"][0]["runners"][0]["odds"] = {"final": 2000.0}
    card["meetings"][0]["races"][1]["off_time"] = "2025-03-06T14:30:00+08:00"


def _both(card):
    _missing_horse(card)
    card["meetings"][0]["races"][1]["runners"][0]["rating"] = 500.0


def _rows(frame: pd.DataFrame) -> set[tuple]:
    """Each record's own problems (a request lists those; ``race_quarantined`` rows only
    say that a sibling record took the race down)."""
    own = frame[frame["reason"] != "race_quarantined"]
    return {
        tuple(None if pd.isna(v) else str(v) for v in row)
        for row in own[list(QUARANTINE_COLUMNS)].itertuples(index=False)
    }


@pytest.mark.parametrize(
    "mutate", [_missing_horse, _draw_too_high, _bad_off_time, _implausible, _both]
)
def test_cheap_report_is_the_batch_quarantine(mutate):
    card = racecard()
    mutate(card)
    text = json.dumps(card)
    found = racecard_problems(text, FILE)
    assert found, "a bad racecard must be reported"
    parsed = parse_racecards({FILE.removesuffix(".json"): lambda: text}, {"source": "racecards"})
    _, _, quarantine, _ = validate_and_split(*parsed, {"source": "racecards", "months": None})
    assert _rows(pd.DataFrame(found)) == _rows(quarantine)


def test_clean_text_is_left_to_the_fast_path():
    assert racecard_problems(json.dumps(racecard()), FILE) is None


@pytest.mark.parametrize(
    "text", ["not json", json.dumps({"format": "other"}), json.dumps([1]), "[" * 5000 + "]" * 5000]
)
def test_a_text_that_is_no_racecard_is_rejected_as_ingestion_rejects_the_file(text, caplog):
    (row,) = racecard_problems(text, FILE)
    parsed = parse_racecards({FILE.removesuffix(".json"): lambda: text}, {"source": "racecards"})
    assert row["reason"] == "file_rejected"
    assert row["detail"] == parsed[3]["files_rejected"][0]["error"]
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(RacecardError, match=FILE):
        racecard_entity_rows(text, FILE)
    assert not caplog.records  # a rejected request is not logged by ingestion
