"""Run the simulation pipeline with Kedro's runner on a small world."""

from __future__ import annotations

import json
import re

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from racecast.pipelines.simulation import create_pipeline
from tests.catalog_files import catalog_file

OUTPUTS = [
    "raw_racecards",
    "oracle_win_probabilities",
    "raw_upcoming_racecards",
    "raw_upcoming_results",
    "raw_raceday",
]
SMALL = {"seed": 11, "n_days": 5, "show_progress": False}


def test_pipeline_shape():
    pipeline = create_pipeline()
    assert [n.name for n in pipeline.nodes] == ["simulation.simulate_world"]
    assert pipeline.inputs() == {"params:simulation"}
    assert pipeline.outputs() == set(OUTPUTS)


def test_pipeline_runs_in_memory():
    catalog = DataCatalog(
        {"params:simulation": MemoryDataset(SMALL), **{name: MemoryDataset() for name in OUTPUTS}}
    )
    SequentialRunner().run(create_pipeline(), catalog)

    racecards = catalog.load("raw_racecards")
    oracle = catalog.load("oracle_win_probabilities")
    upcoming = catalog.load("raw_upcoming_racecards")
    assert len(racecards) == 2 * SMALL["n_days"]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}\.(racecard|results)", pid) for pid in racecards)
    assert all(json.loads(text)["format"].startswith("racecast.") for text in racecards.values())
    assert isinstance(oracle, pd.DataFrame) and not oracle.empty
    assert list(oracle.columns) == ["race_id", "horse_id", "p_true"]
    assert oracle.groupby("race_id")["p_true"].sum().round(9).eq(1.0).all()
    (day,) = upcoming
    assert day > max(pid.split(".")[0] for pid in racecards)
    assert json.loads(upcoming[day])["format"] == "racecast.racecard/1"


def test_pipeline_writes_the_files_the_catalog_promises(tmp_path):
    # The project's own catalog entries, redirected to a temporary folder.
    raw = catalog_file("01_raw")
    primary = catalog_file("03_primary")
    config = {
        "raw_racecards": {**raw["raw_racecards"], "path": str(tmp_path / "racecards")},
        "raw_upcoming_racecards": {
            **raw["raw_upcoming_racecards"],
            "path": str(tmp_path / "upcoming"),
        },
        "oracle_win_probabilities": {
            **primary["oracle_win_probabilities"],
            "filepath": str(tmp_path / "oracle.parquet"),
        },
    }
    catalog = DataCatalog.from_config(config)
    catalog["params:simulation"] = MemoryDataset(SMALL)
    SequentialRunner().run(create_pipeline(), catalog)

    names = sorted(p.name for p in (tmp_path / "racecards").iterdir())
    assert len(names) == 2 * SMALL["n_days"]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}\.(racecard|results)\.json", n) for n in names)
    first_day = names[0].split(".")[0]
    assert f"{first_day}.racecard.json" in names and f"{first_day}.results.json" in names
    upcoming = list((tmp_path / "upcoming").iterdir())
    assert len(upcoming) == 1 and re.fullmatch(
        r"\d{4}-\d{2}-\d{2}\.racecard\.json", upcoming[0].name
    )
    card = json.loads(upcoming[0].read_text())
    assert card["format"] == "racecast.racecard/1" and card["meetings"]

    oracle = pd.read_parquet(tmp_path / "oracle.parquet")
    assert list(oracle.columns) == ["race_id", "horse_id", "p_true"]
    results = [
        json.loads((tmp_path / "racecards" / n).read_text()) for n in names if ".results." in n
    ]
    race_ids = {r["race_id"] for doc in results for r in doc["results"]}
    assert set(oracle["race_id"]) == race_ids
