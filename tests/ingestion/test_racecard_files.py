"""parse_racecards reads each file once, racecards before results, and reports rejections in file order."""

from __future__ import annotations

import json

from racecast.ingestion.racecards import parse_racecards
from tests.serving.serving_fakes import racecard

PARAMS = {"source": "racecards", "months": None}


def test_each_file_is_loaded_once_racecards_first_and_rejections_keep_file_order():
    loads: list[str] = []

    def load(name: str, text: str):
        def read() -> str:
            loads.append(name)
            return text

        return read

    files = {
        "a.results": load("a.results", "{not json"),
        "b-unknown": load("b-unknown", "{}"),
        "c.racecard": load("c.racecard", "[]"),
        "d.racecard": load("d.racecard", json.dumps(racecard())),
    }
    races, runners, _, summary = parse_racecards(files, PARAMS)
    assert len(races) > 0 and len(runners) > 0  # the good racecard was read
    assert loads == ["c.racecard", "d.racecard", "a.results"]  # once each; a file of unknown kind is never read
    assert [r["file"] for r in summary["files_rejected"]] == ["a.results.json", "b-unknown.json", "c.racecard.json"]
