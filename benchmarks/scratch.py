"""A scratch race-day project for the benchmarks (the project's own stores are left alone)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from racecast.features import state, store
from racecast.features.specs import VIEWS
from racecast.inference.results import RaceDayPaths
from racecast.ingestion.racecards import parse_racecards
from racecast.ingestion.validate import validate_and_split

ROOT = Path(__file__).resolve().parents[1]


def scratch_project(work: Path, files: dict[str, Callable[[], str]]) -> RaceDayPaths:
    """Ingest racecard/results ``files`` into ``work`` and build its feature store.

    The batch parser and validation, the state tables, ``feast apply`` and a
    materialization of everything, in a copy of the Feast repo; the upcoming folder is
    created empty.

    Args:
        work: Scratch folder.
        files: ``{partition_id: load_fn}`` as ``parse_racecards`` takes them.

    Returns:
        The scratch project's race-day paths.
    """
    params = {"source": "synthetic", "months": None}
    races, runners, _, _ = validate_and_split(*parse_racecards(files, params), params)
    shutil.copytree(
        ROOT / "feature_repo", work / "feature_repo", ignore=shutil.ignore_patterns("data")
    )
    paths = RaceDayPaths(
        races=work / "data" / "03_primary" / "races.parquet",
        runners=work / "data" / "03_primary" / "runners.parquet",
        state={v: work / "data" / "04_feature" / f"{v}.parquet" for v in VIEWS},
        raceday=work / "data" / "01_raw" / "raceday",
        upcoming=(work / "data" / "01_raw" / "upcoming",),
    )
    for path in (paths.races, *paths.state.values(), paths.upcoming[0] / "x"):
        path.parent.mkdir(parents=True, exist_ok=True)
    races.to_parquet(paths.races, index=False)
    runners.to_parquet(paths.runners, index=False)
    for view, table in state.build_state_tables(races, runners).items():
        table.to_parquet(paths.state[view], index=False)
    store.apply_repo(work / "feature_repo")
    store.materialize(
        store.get_store(work / "feature_repo"), pd.Timestamp.now(tz="UTC"), work / "feature_repo"
    )
    return paths
