"""A real Kedro session on a copy of the project, spaceflights-style.

``bootstrap_project`` + the project's ``SESSION_CLASS`` (``RacecastSession``) +
``session.run`` on a small world, in a temporary copy of the project (the package is the
installed one). The outputs are read back from the files the catalog wrote. The env picks
the source: ``--env racecards`` runs ``racecards:ingestion``, ``--env hkjc`` runs
``hkjc:ingestion``, with the same commands.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from kedro.framework.project import settings
from kedro.framework.startup import bootstrap_project

from racecast.pipelines.simulation.nodes import simulate_world
from racecast.session import RacecastSession
from tests.user_facing.conftest import copy_project

ROOT = Path(__file__).resolve().parents[1]
HK_DATA_DIRS = (
    ROOT / "data" / "01_raw" / "hkjc",
    ROOT.parent / "shared" / "data" / "hkracing",
)
SMALL_WORLD = {"simulation": {"n_days": 6, "start_date": "2024-01-02", "show_progress": False}}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Iterator[Path]:
    """A copy of the project, bootstrapped, as the working directory."""
    root = copy_project(tmp_path / "project")
    monkeypatch.chdir(root)
    # the copy's own mlflow.yml store, not one an earlier in-process test exported
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    bootstrap_project(root)
    yield root
    # kedro-mlflow leaves the run of an in-process session active; the next session
    # (another project) must open its own
    while mlflow.active_run():
        mlflow.end_run()


def _run(root: Path, pipelines: list[str], env: str | None = None, params: dict | None = None):
    with settings.SESSION_CLASS.create(
        project_path=root, env=env, runtime_params=params or {}
    ) as session:
        return session.run(pipeline_names=pipelines)


def _report(root: Path) -> dict:
    return json.loads((root / "data" / "08_reporting" / "ingestion_report.json").read_text())


def test_simulation_and_ingestion_of_a_small_world(project: Path) -> None:
    assert settings.SESSION_CLASS is RacecastSession
    _run(project, ["simulation", "ingestion"], params=SMALL_WORLD)

    written = sorted(p.name for p in (project / "data/01_raw/racecards/synthetic").iterdir())
    assert len(written) == 2 * SMALL_WORLD["simulation"]["n_days"]  # a racecard + results a day
    races = pd.read_parquet(project / "data/03_primary/races.parquet")
    runners = pd.read_parquet(project / "data/03_primary/runners.parquet")
    report = _report(project)
    assert set(races["source"]) == {"synthetic"}
    assert len(races) == report["races"]["primary"] > 0
    assert report["races"]["in"] == report["races"]["primary"] + report["races"]["quarantined"]
    assert len(runners) == report["runners"]["primary"]
    assert set(runners["race_id"]) == set(races["race_id"])
    assert races["meeting_date"].min() == "2024-01-02"


def test_the_env_chooses_the_source(project: Path) -> None:
    racecards, *_ = simulate_world(SMALL_WORLD["simulation"])
    raw = project / "data/01_raw/racecards"  # the racecards env reads the folder's top level
    raw.mkdir(parents=True)
    for name, text in racecards.items():
        (raw / f"{name}.json").write_text(text)
    _run(project, ["ingestion"], env="racecards")
    races = pd.read_parquet(project / "data/03_primary/races.parquet")
    assert set(races["source"]) == {"racecards"}
    assert races["race_id"].nunique() == _report(project)["races"]["primary"] > 0


def test_the_hkjc_env_runs_the_hkjc_adapter(project: Path) -> None:
    found = [d for d in HK_DATA_DIRS if (d / "races.csv").is_file() and (d / "runs.csv").is_file()]
    if not found:
        pytest.skip("Hong Kong data absent (make hkjc-data)")
    raw = project / "data" / "01_raw" / "hkjc"
    raw.mkdir(parents=True)
    for name in ("races.csv", "runs.csv"):
        shutil.copy(found[0] / name, raw / name)
    # the same session call as for the synthetic world: the env decides the adapter
    _run(project, ["ingestion"], env="hkjc", params={"ingestion": {"months": ["1999-01"]}})
    races = pd.read_parquet(project / "data/03_primary/races.parquet")
    assert set(races["source"]) == {"hkjc"}
    assert set(races["race_month"]) == {"1999-01"}
    assert len(races) == _report(project)["races"]["primary"] > 0
