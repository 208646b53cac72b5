"""Acceptance checks of the feature store on the Hong Kong data (skipped without it).

* truncating the data at a day leaves every feature of the earlier races unchanged;
* ``racecast features online`` for the first race of the last day, after materializing
  only earlier days, equals that race's rows of the training set built through Feast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from racecast.cli import cli
from racecast.features import entities, state, store, transform
from racecast.ingestion.export import racecard_json
from racecast.ingestion.hkjc import adapt_hkjc
from racecast.ingestion.validate import validate_and_split
from racecast.project import load_parameters

from .conftest import apply_world

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = [ROOT / "data" / "01_raw" / "hkjc", ROOT.parent / "shared" / "data" / "hkracing"]
HK_DIR = next((d for d in CANDIDATES if (d / "runs.csv").is_file() and (d / "races.csv").is_file()), None)

pytestmark = [
    pytest.mark.hkjc,
    pytest.mark.skipif(
        HK_DIR is None,
        reason=f"Hong Kong data not found in {' or '.join(map(str, CANDIDATES))}: run `make hkjc-data`",
    ),
]


@pytest.fixture(scope="module")
def hk_tables():
    params = load_parameters("hkjc", ROOT)["ingestion"]  # the env's own rules (tote minimum 1.0)
    parsed = adapt_hkjc(pd.read_csv(HK_DIR / "races.csv"), pd.read_csv(HK_DIR / "runs.csv"), params)
    races, runners, _, report = validate_and_split(*parsed, {**params, "months": None})
    assert report["runners"]["primary"] == 79_447
    return races, runners


def _features(races, runners):
    context = entities.entity_frame(races, runners)
    joined = transform.point_in_time_join(context, state.build_state_tables(races, runners))
    return transform.build_features(context, joined)


def test_truncated_run_gives_identical_features_for_earlier_races(hk_tables):
    races, runners = hk_tables
    days = races["off_time"].dt.floor("D").drop_duplicates().sort_values().reset_index(drop=True)
    cut = days.iloc[int(len(days) * 0.6)]
    full = _features(races, runners)
    kept = races["off_time"] < cut
    truncated = _features(races[kept], runners[runners["race_id"].isin(races.loc[kept, "race_id"])])
    expected = full[full["off_time"] < cut].reset_index(drop=True)
    assert len(truncated) == len(expected) > 40_000
    pd.testing.assert_frame_equal(truncated.reset_index(drop=True), expected, check_exact=True)


def test_online_cli_after_partial_materialization_equals_training_rows(hk_tables, tmp_path, monkeypatch):
    races, runners = hk_tables
    shutil.copytree(ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("data", "local"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    apply_world(tmp_path, races, runners, monkeypatch)
    fs = store.get_store("feature_repo")

    entity_rows = entities.entity_frame(races, runners)
    last_day = entity_rows["off_time"].dt.floor("D").max()
    race_id = entity_rows.loc[entity_rows["off_time"] >= last_day].sort_values("off_time")["race_id"].iloc[0]
    labelled = entity_rows[entity_rows["won"].notna()].reset_index(drop=True)
    training = transform.build_features(labelled, store.historical_state(fs, labelled, "combined_v1"))
    expected = training[training["race_id"] == race_id].reset_index(drop=True)

    store.materialize(fs, last_day)  # only results of days before the last one
    card = tmp_path / "last_day.racecard.json"
    card.write_text(
        racecard_json(races[races["race_id"] == race_id], runners[runners["race_id"] == race_id]),
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["features", "online", str(card), "--env", "hkjc"])
    assert result.exit_code == 0, result.output
    online = pd.DataFrame(json.loads(result.output))
    assert len(online) == len(expected) >= 4
    assert list(online.columns) == list(expected.columns)
    online["off_time"] = pd.to_datetime(online["off_time"], utc=True)
    for col in expected.columns:
        left, right = online[col], expected[col]
        if pd.api.types.is_numeric_dtype(right):
            pd.testing.assert_series_equal(left.astype("float64"), right.astype("float64"), check_names=False, rtol=1e-12)
        else:
            assert left.astype(str).tolist() == right.astype(str).tolist(), col
