"""The ingestion pipeline end to end, in memory."""

from __future__ import annotations

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from racecast.ingestion.validate import IngestionStrictError
from racecast.pipelines.ingestion import create_pipeline

from .builders import PARAMS, files, finisher, good_batch, meeting, race, racecard, result, results


class KeptDataset(MemoryDataset):
    """A ``MemoryDataset`` the runner cannot release, to inspect intermediate outputs."""

    def _release(self) -> None:
        """Keep the data after its last consumer ran."""


OUTPUTS = (
    "parsed_races",
    "parsed_runners",
    "parsed_quarantine",
    "parse_summary",
    "races",
    "runners",
    "quarantine",
    "ingestion_report",
)


def _batch() -> dict:
    """Good races G1 and G2, and a race B whose result names an unknown horse."""
    return files(
        {
            **good_batch(),
            "late/b.racecard": racecard(
                meeting("2004-03-15", [race("B", "2004-03-15T19:00:00+08:00")], course="HV")
            ),
            "late/b.results": results(result("B", [finisher("H1", 1), finisher("ZZ", 2)])),
        }
    )


def _run(source: str, params: dict, raceday: dict | None = None) -> DataCatalog:
    catalog = DataCatalog(
        {
            "raw_racecards": MemoryDataset(_batch()),
            "raw_raceday": MemoryDataset(raceday or {}),
            "params:ingestion": MemoryDataset(params),
            **{name: KeptDataset() for name in OUTPUTS},
        }
    )
    SequentialRunner().run(create_pipeline(source=source), catalog)
    return catalog


def test_racecards_pipeline_end_to_end():
    catalog = _run("racecards", PARAMS)
    races, runners = catalog.load("races"), catalog.load("runners")
    quarantine, report = catalog.load("quarantine"), catalog.load("ingestion_report")
    assert list(races["race_id"]) == ["G1", "G2"] and set(races["source"]) == {"racecards"}
    assert len(runners) == 6 and runners["post_won"].sum() == 1
    assert set(quarantine["race_id"]) == {"B"} and "result_unknown_horse" in set(
        quarantine["reason"]
    )
    assert report["races"] == {"in": 3, "primary": 2, "quarantined": 1, "void": 0}
    assert report["runners"] == {"in": 9, "primary": 6, "quarantined": 3, "non_runners": 0}
    assert catalog.load("parse_summary")["files_read"] == 4
    assert len(catalog.load("parsed_races")) == 2


def test_a_race_day_push_replaces_the_feeds_version_of_a_race_and_counts_still_add_up():
    """Race B's feed result names an unknown horse; a corrected push of B replaces it."""
    fixed = files({
        "B.racecard": racecard(
            meeting("2004-03-15", [race("B", "2004-03-15T19:00:00+08:00")], course="HV")
        ),
        "B.results": results(result("B", [finisher("H1", 1), finisher("H2", 2), finisher("H3", 3)])),
    })
    catalog = _run("racecards", PARAMS, raceday=fixed)
    races, report = catalog.load("races"), catalog.load("ingestion_report")
    assert list(races["race_id"]) == ["G1", "G2", "B"]
    assert "B" not in set(catalog.load("quarantine")["race_id"].dropna())
    assert report["races"] == {"in": 3, "primary": 3, "quarantined": 0, "void": 0}
    assert report["runners"]["in"] == report["runners"]["primary"] == 9
    assert catalog.load("parse_summary")["files_read"] == 6


def test_synthetic_source_writes_synthetic_in_races():
    catalog = _run("synthetic", {**PARAMS, "source": "synthetic"})
    assert set(catalog.load("races")["source"]) == {"synthetic"}
    assert catalog.load("ingestion_report")["source"] == "synthetic"


def test_strict_pipeline_fails_after_saving_quarantine_and_report():
    catalog = DataCatalog(
        {
            "raw_racecards": MemoryDataset(_batch()),
            "raw_raceday": MemoryDataset({}),
            "params:ingestion": MemoryDataset({**PARAMS, "strict": True}),
            **{name: KeptDataset() for name in OUTPUTS},
        }
    )
    with pytest.raises(
        IngestionStrictError, match=r"^ingestion\.strict: 1 races / 3 runners quarantined"
    ):
        SequentialRunner().run(create_pipeline(source="racecards"), catalog)
    assert catalog.load("ingestion_report")["races"]["quarantined"] == 1
    assert set(catalog.load("quarantine")["race_id"]) == {"B"}


def test_hkjc_pipeline_structure():
    pipeline = create_pipeline(source="hkjc")
    assert pipeline.inputs() == {"hkjc_races", "hkjc_runs", "raw_raceday", "params:ingestion"}
    assert pipeline.outputs() == {"races", "runners", "quarantine"}
    assert [n.name for n in pipeline.nodes] == [
        "ingestion.adapt_hkjc_node",
        "ingestion.parse_raceday_node",
        "ingestion.merge_raceday_node",
        "ingestion.validate_and_split_node",
        "ingestion.enforce_strict_node",
    ]
    [merge] = [n for n in pipeline.nodes if n.name == "ingestion.merge_raceday_node"]
    assert merge.outputs == [
        "parsed_races",
        "parsed_runners",
        "parsed_quarantine",
        "parse_summary",
    ]


@pytest.mark.parametrize("source", ["synthetic", "racecards"])
def test_json_sources_read_raw_racecards(source):
    pipeline = create_pipeline(source=source)
    assert pipeline.inputs() == {"raw_racecards", "raw_raceday", "params:ingestion"}
    [validate] = [n for n in pipeline.nodes if n.name == "ingestion.validate_and_split_node"]
    assert validate.outputs == ["races", "runners", "quarantine", "ingestion_report"]


def test_default_source_is_the_synthetic_world():
    assert create_pipeline().inputs() == create_pipeline(source="synthetic").inputs()
    assert "hkjc_runs" not in create_pipeline().inputs()


def test_unknown_source_is_refused():
    with pytest.raises(ValueError, match="unknown source 'csv'"):
        create_pipeline(source="csv")
