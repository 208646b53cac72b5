"""Builders of racecard/results files and the accounting assertion shared by the tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pandas as pd

from racecast.data.schema import QUARANTINE_COLUMNS, RACE_COLUMNS, RUNNER_COLUMNS
from racecast.ingestion.racecards import parse_racecards
from racecast.ingestion.validate import count_quarantined, validate_and_split

PARAMS = {"source": "racecards", "strict": False, "months": None}


def runner(horse_id: str, draw: int, **fields: Any) -> dict:
    """A valid runner object."""
    return {
        "horse_id": horse_id,
        "cloth_number": draw,
        "draw": draw,
        "jockey_id": f"J{draw}",
        "trainer_id": f"T{draw}",
        "odds": {"morning": 3.0 + draw, "final": 2.5 + draw},
        **fields,
    }


def race(
    race_id: str, off_time: str, n: int = 3, runners: list | None = None, **fields: Any
) -> dict:
    """A valid race object with ``n`` runners H1..Hn."""
    field = runners if runners is not None else [runner(f"H{i}", i) for i in range(1, n + 1)]
    return {
        "race_id": race_id,
        "off_time": off_time,
        "race_type": "flat",
        "surface": "turf",
        "distance_m": 1200,
        "runners": field,
        **fields,
    }


def meeting(date: str, races: list, course: str = "ST", country: str = "HK") -> dict:
    """A meeting object."""
    return {"date": date, "course": course, "country": country, "races": races}


def racecard(*meetings: dict) -> str:
    """A racecard file's text."""
    return json.dumps({"format": "racecast.racecard/1", "meetings": list(meetings)}, indent=1)


def finisher(horse_id: str, position: int | None, outcome: str = "finished", **fields: Any) -> dict:
    """A finisher object."""
    return {"horse_id": horse_id, "position": position, "outcome": outcome, **fields}


def result(race_id: str, finishers: list | None = None, status: str = "official") -> dict:
    """A result object (default: H1 wins, H2 second, H3 third)."""
    if finishers is None:
        finishers = [finisher(f"H{i}", i, finish_time_s=70.0 + i) for i in (1, 2, 3)]
    return {"race_id": race_id, "status": status, "finishers": finishers}


def results(*items: dict) -> str:
    """A results file's text."""
    return json.dumps({"format": "racecast.results/1", "results": list(items)}, indent=1)


def files(texts: dict[str, str]) -> dict[str, Callable[[], str]]:
    """Partitions ``{partition_id: load_fn}`` as a ``PartitionedDataset`` gives them."""
    return {partition_id: (lambda t=text: t) for partition_id, text in texts.items()}


def good_batch() -> dict[str, str]:
    """A good meeting (G1 official, G2 pending) used next to bad input."""
    return {
        "good.racecard": racecard(
            meeting(
                "2004-03-14",
                [
                    race("G1", "2004-03-14T13:00:00+08:00"),
                    race("G2", "2004-03-14T13:30:00+08:00"),
                ],
            )
        ),
        "good.results": results(result("G1")),
    }


def ingest(raw: dict[str, Callable[[], str]], params: dict | None = None) -> tuple[tuple, tuple]:
    """Parse and validate, asserting that every count adds up."""
    params = params or PARAMS
    parsed = parse_racecards(raw, params)
    out = validate_and_split(*parsed, params)
    assert_accounted(parsed, out)
    return parsed, out


def assert_accounted(parsed: tuple, out: tuple) -> None:
    """Every record seen is primary or quarantined, and every count says so."""
    parsed_races, parsed_runners, parsed_quarantine, summary = parsed
    races, runners, quarantine, report = out
    for frame, columns in (
        (races, RACE_COLUMNS),
        (runners, RUNNER_COLUMNS),
        (quarantine, QUARANTINE_COLUMNS),
        (parsed_races, RACE_COLUMNS),
        (parsed_runners, RUNNER_COLUMNS),
        (parsed_quarantine, QUARANTINE_COLUMNS),
    ):
        assert list(frame.columns) == list(columns)
        assert {c: str(t) for c, t in frame.dtypes.items()} == columns
    q_races, q_runners = count_quarantined(parsed_quarantine)
    assert summary["races_in"] == len(parsed_races) + q_races
    assert summary["runners_in"] == len(parsed_runners) + q_runners
    for table, frame, index in (("races", races, 0), ("runners", runners, 1)):
        counts = report[table]
        assert counts["in"] == counts["primary"] + counts["quarantined"]
        assert counts["primary"] == len(frame)
        assert counts["quarantined"] == count_quarantined(quarantine)[index]
    assert sum(report["quarantine_reasons"].values()) == len(quarantine)
    assert report["files"]["read"] == summary["files_read"]
    assert report["files"]["rejected"] == summary["files_rejected"]
    assert set(runners["race_id"]) <= set(races["race_id"])
    assert not set(races["race_id"]) & set(quarantine["race_id"].dropna())
    assert quarantine["reason"].notna().all() and quarantine["detail"].notna().all()
    assert quarantine["field"].notna().all()
    json.dumps(report)


def reasons(quarantine: pd.DataFrame, race_id: str | None = None) -> set[str]:
    """Reasons of the quarantine rows (of one race)."""
    rows = quarantine if race_id is None else quarantine[quarantine["race_id"] == race_id]
    return set(rows["reason"])
