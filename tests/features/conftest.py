"""Fixtures for the feature tests: hand-built tables and a small random race world."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from racecast.data.schema import RACE_COLUMNS, RUNNER_COLUMNS, conform
from racecast.features import store
from racecast.features.entities import entity_frame
from racecast.features.state import build_state_tables
from racecast.features.transform import build_features, point_in_time_join

BASE = pd.Timestamp("2024-01-01 12:00", tz="UTC")
#: The project's Feast repo (its definitions; the tests copy it without its data).
FEATURE_REPO = Path(__file__).resolve().parents[2] / "feature_repo"

RACE_DEFAULTS: dict[str, Any] = {
    "source": "synthetic",
    "course": "ST",
    "country": "HK",
    "race_type": "flat",
    "surface": "turf",
    "going": "good",
    "distance_m": 1200,
    "race_class": 4,
    "status": "official",
}
RUNNER_DEFAULTS: dict[str, Any] = {
    "jockey_id": "J1",
    "trainer_id": "T1",
    "age": 4,
    "sex": "gelding",
    "weight_carried_kg": 55.0,
    "body_weight_kg": 480.0,
    "rating": 60.0,
    "gear": "--",
    "odds_final": 5.0,
    "non_runner": False,
}


def tables_from_rows(races: list[dict], runners: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical races/runners from minimal rows.

    Races need ``race_id`` and ``day`` (days after ``BASE``, float allowed); runners need
    ``race_id``, ``horse_id`` and usually ``post_position``. ``draw`` defaults to the
    runner's order in its race, ``post_won`` to ``post_position == 1`` and the
    ``post_*`` columns stay null for races that are not official.
    """
    race_df = pd.DataFrame([{**RACE_DEFAULTS, **r} for r in races])
    race_df["off_time"] = BASE + pd.to_timedelta(race_df.pop("day"), unit="D")
    run_df = pd.DataFrame([{**RUNNER_DEFAULTS, **r} for r in runners])
    run_df = run_df.merge(race_df[["race_id", "off_time", "status"]], on="race_id", how="left")
    if "draw" not in run_df:
        run_df["draw"] = run_df.groupby("race_id").cumcount() + 1
    run_df["draw"] = run_df["draw"].fillna(run_df.groupby("race_id").cumcount() + 1)
    if "post_position" not in run_df:
        run_df["post_position"] = np.nan
    if "post_won" not in run_df:
        run_df["post_won"] = pd.Series(run_df["post_position"] == 1, dtype="boolean").where(
            run_df["post_position"].notna()
        )
    official = run_df.pop("status").eq("official")
    for col in [c for c in run_df.columns if c.startswith("post_")]:
        run_df[col] = run_df[col].where(official)
    return conform(race_df, RACE_COLUMNS), conform(run_df, RUNNER_COLUMNS)


def make_world(
    seed: int = 0,
    n_races: int = 60,
    n_days: int = 20,
    n_horses: int = 40,
    n_jockeys: int = 12,
    n_trainers: int = 6,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A random canonical world: horses running repeatedly, with results.

    Includes non-runners, non-finishers, a dead heat, missing finish times, missing odds,
    one void race and a pending last race.
    """
    rng = np.random.default_rng(seed)
    day = np.sort(rng.integers(0, n_days, n_races))
    race_no = pd.Series(day).groupby(day).cumcount().to_numpy() + 1
    off = BASE + pd.to_timedelta(day, unit="D") + pd.to_timedelta(race_no * 30, unit="min")
    field = rng.integers(5, 11, n_races)
    surface = rng.choice(["turf", "dirt"], n_races, p=[0.8, 0.2])
    distance = rng.choice([1000, 1200, 1400, 1600, 1800, 2000, 2200, 2400], n_races)
    status = np.full(n_races, "official", dtype=object)
    status[n_races // 3] = "void"
    status[-1] = "pending"
    race_ids = np.array([f"R{i:05d}" for i in range(n_races)])
    races = pd.DataFrame(
        {
            "race_id": race_ids,
            "source": "synthetic",
            "course": rng.choice(["ST", "HV"], n_races),
            "race_no": race_no,
            "off_time": off,
            "race_type": "flat",
            "surface": surface,
            "going": rng.choice(
                ["good", "good to firm", "yielding", "good to yielding", "fast", "wet slow"],
                n_races,
            ),
            "distance_m": distance,
            "race_class": rng.integers(1, 6, n_races),
            "status": status,
        }
    )

    race_idx = np.repeat(np.arange(n_races), field)
    slot = pd.Series(race_idx).groupby(race_idx).cumcount().to_numpy()
    steps = [s for s in (7, 11, 13, 17, 19, 23, 29) if np.gcd(s, n_horses) == 1]
    horse = (rng.integers(0, n_horses, n_races)[race_idx] + slot * steps[0]) % n_horses
    jockey = (rng.integers(0, n_jockeys, n_races)[race_idx] + slot) % n_jockeys
    n = len(race_idx)
    ability = rng.normal(0, 1, n_horses)[horse]
    non_runner = rng.random(n) < 0.07
    perf = ability + rng.normal(0, 1, n)
    dnf = (rng.random(n) < 0.04) & ~non_runner
    score = pd.Series(np.where(non_runner | dnf, np.nan, perf))
    position = score.groupby(race_idx).rank(ascending=False, method="first").to_numpy()
    dead_heat_race = 5
    position[(race_idx == dead_heat_race) & (position == 2)] = 1
    official = status[race_idx] == "official"
    position = np.where(official, position, np.nan)
    base_tpm = (
        np.where(surface == "dirt", 0.061, 0.059)[race_idx]
        * (1 + rng.normal(0, 0.01, n_races))[race_idx]
    )
    lengths = np.where(position == 1, 0.0, (position - 1) * rng.uniform(0.5, 2.0, n))
    finish = distance[race_idx] * base_tpm + lengths * 0.2
    finish = np.where(rng.random(n) < 0.1, np.nan, finish)
    strength = pd.Series(np.exp(np.where(non_runner, np.nan, ability)))
    prob = strength / strength.groupby(race_idx).transform("sum")
    odds = np.round(np.maximum(1.2 / prob.to_numpy(), 1.05), 1)
    odds = np.where(rng.random(n) < 0.03, np.nan, odds)
    first_call = np.clip(position + rng.integers(-3, 4, n), 1, field[race_idx])
    running = pd.Series(
        "["
        + pd.Series(first_call).astype("Int64").astype(str)
        + ", "
        + pd.Series(position).astype("Int64").astype(str)
        + "]"
    ).where(~np.isnan(position))
    runners = pd.DataFrame(
        {
            "race_id": race_ids[race_idx],
            "horse_id": np.char.add("H", horse.astype(str)),
            "off_time": off[race_idx],
            "cloth_number": slot + 1,
            "draw": pd.Series(rng.random(n)).groupby(race_idx).rank(method="first").to_numpy(),
            "age": rng.integers(3, 8, n),
            "sex": rng.choice(["gelding", "mare", "horse", "Brown"], n),
            "weight_carried_kg": rng.uniform(50, 60, n).round(1),
            "body_weight_kg": rng.uniform(420, 520, n).round(0),
            "rating": rng.integers(40, 100, n).astype(float),
            "gear": rng.choice(["--", "B", "TT", "B/TT", "V"], n),
            "jockey_id": np.char.add("J", jockey.astype(str)),
            "trainer_id": np.char.add("T", (horse % n_trainers).astype(str)),
            "odds_final": odds,
            "non_runner": non_runner,
            "post_position": position,
            "post_outcome": np.where(
                official & ~non_runner, np.where(dnf, "pulled_up", "finished"), None
            ),
            "post_won": pd.Series(position == 1, dtype="boolean").where(official & ~non_runner),
            "post_dead_heat": pd.Series(
                (race_idx == dead_heat_race) & (position == 1), dtype="boolean"
            ).where(official),
            "post_lengths_behind": lengths,
            "post_finish_time_s": finish,
            "post_in_running_positions": running,
        }
    )
    return conform(races, RACE_COLUMNS), conform(runners, RUNNER_COLUMNS)


def compute_features(
    races: pd.DataFrame, runners: pd.DataFrame, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Features of every active runner via state tables + point_in_time_join + transform."""
    context = entity_frame(races, runners)
    tables = build_state_tables(races, runners, params)
    joined = point_in_time_join(context, tables)
    return build_features(context, joined, params)


@pytest.fixture
def tables() -> Callable[[list[dict], list[dict]], tuple[pd.DataFrame, pd.DataFrame]]:
    """Factory for hand-built canonical tables (see ``tables_from_rows``)."""
    return tables_from_rows


@pytest.fixture
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The default random world: ~60 races over 20 days."""
    return make_world()


@pytest.fixture
def features() -> Callable[..., pd.DataFrame]:
    """``compute_features`` as a fixture."""
    return compute_features


def apply_world(
    root: Path, races: pd.DataFrame, runners: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """A temporary Feast project at ``root``: a copy of ``feature_repo/`` (without its
    data), the world's state tables under ``data/04_feature``, the working directory there
    and the repo applied.

    Returns:
        The state tables and ``store.apply_repo``'s summary.
    """
    shutil.copytree(FEATURE_REPO, root / "feature_repo", ignore=shutil.ignore_patterns("data"))
    out = root / "data" / "04_feature"
    out.mkdir(parents=True)
    tables = build_state_tables(races, runners)
    for name, table in tables.items():
        table.to_parquet(out / f"{name}.parquet")
    monkeypatch.chdir(root)
    return tables, store.apply_repo("feature_repo")
