"""No look-ahead: a race's features never depend on its own result or anything later."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.features.specs import FUNDAMENTAL_FEATURES
from tests.features.conftest import compute_features, make_world


def _scramble_results(races: pd.DataFrame, runners: pd.DataFrame, race_ids: pd.Series, seed: int):
    """Copies of the tables with every post-race result of ``race_ids`` replaced at random."""
    rng = np.random.default_rng(seed)
    races, runners = races.copy(), runners.copy()
    hit = runners["race_id"].isin(race_ids).to_numpy()
    sub = runners.loc[hit]
    n = int(hit.sum())
    position = (
        pd.Series(rng.random(n), index=sub.index).groupby(sub["race_id"]).rank(method="first")
    )
    runners.loc[hit, "post_position"] = position.astype("Int64")
    runners.loc[hit, "post_won"] = (position == 1).astype("boolean")
    runners.loc[hit, "post_dead_heat"] = False
    runners.loc[hit, "post_outcome"] = "finished"
    runners.loc[hit, "post_finish_time_s"] = rng.uniform(50, 200, n)
    runners.loc[hit, "post_lengths_behind"] = rng.uniform(0, 20, n)
    runners.loc[hit, "post_in_running_positions"] = pd.Series(
        rng.integers(1, 12, n), index=sub.index
    ).map("[{}, 3]".format)
    race_hit = races["race_id"].isin(race_ids).to_numpy()
    races.loc[race_hit, "post_winning_time_s"] = rng.uniform(50, 200, int(race_hit.sum()))
    return races, runners


def _rows_before(features: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    return features.loc[features["off_time"] < cutoff].reset_index(drop=True)


@pytest.fixture(scope="module")
def world_and_features():
    races, runners = make_world(seed=3)
    return races, runners, compute_features(races, runners)


@pytest.mark.parametrize("k", [10, 25, 45])
def test_changing_results_from_race_k_on_leaves_earlier_features_unchanged(world_and_features, k):
    races, runners, base = world_and_features
    order = races.sort_values("off_time")
    cutoff = order["off_time"].iloc[k]
    later = order.loc[order["off_time"] >= cutoff, "race_id"]
    changed = compute_features(*_scramble_results(races, runners, later, seed=k))
    before = _rows_before(base, cutoff)
    assert before["h_runs"].notna().sum() > 0  # earlier races do carry state
    pd.testing.assert_frame_equal(_rows_before(changed, cutoff), before, check_exact=True)
    # the scramble really does change the features of later races
    after = base["off_time"] > cutoff
    assert not changed.loc[after, FUNDAMENTAL_FEATURES].equals(
        base.loc[after, FUNDAMENTAL_FEATURES]
    )


@pytest.mark.parametrize("k", [10, 25, 45])
def test_deleting_races_from_k_on_leaves_earlier_features_unchanged(world_and_features, k):
    races, runners, base = world_and_features
    cutoff = races.sort_values("off_time")["off_time"].iloc[k]
    keep = races["off_time"] < cutoff
    kept_races = races.loc[keep].reset_index(drop=True)
    kept_runners = runners.loc[runners["race_id"].isin(kept_races["race_id"])].reset_index(
        drop=True
    )
    truncated = compute_features(kept_races, kept_runners)
    pd.testing.assert_frame_equal(
        truncated.reset_index(drop=True), _rows_before(base, cutoff), check_exact=True
    )


@pytest.mark.parametrize("k", [12, 30])
def test_a_race_never_sees_its_own_result(world_and_features, k):
    races, runners, base = world_and_features
    race_id = races.sort_values("off_time")["race_id"].iloc[k]
    changed = compute_features(
        *_scramble_results(races, runners, pd.Series([race_id]), seed=100 + k)
    )
    mine = (base["race_id"] == race_id).to_numpy()
    pd.testing.assert_frame_equal(changed.loc[mine], base.loc[mine], check_exact=True)
    assert not changed.loc[~mine].equals(base.loc[~mine])  # later races do see it


@pytest.mark.parametrize("day", [5, 12])
def test_truncating_at_a_day_gives_identical_features_before_it(day):
    races, runners = make_world(seed=11)
    full = compute_features(races, runners)
    cutoff = races["off_time"].min().normalize() + pd.Timedelta(days=day)
    kept_races = races.loc[races["off_time"] < cutoff]
    kept_runners = runners.loc[runners["race_id"].isin(kept_races["race_id"])]
    truncated = compute_features(kept_races, kept_runners)
    assert len(truncated) > 0
    pd.testing.assert_frame_equal(
        truncated.reset_index(drop=True), _rows_before(full, cutoff), check_exact=True
    )
