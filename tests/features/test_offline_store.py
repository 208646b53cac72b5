"""The ASOF point-in-time join returns exactly what Feast's own (quadratic) join returns."""

from __future__ import annotations

from datetime import timedelta

import ibis
import numpy as np
import pandas as pd
import pytest
from feast.infra.offline_stores import ibis as feast_ibis

from racecast.features.offline_store import asof_point_in_time_join


def _tables(seed: int):
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2024-01-01", tz="UTC")
    state = pd.DataFrame(
        {
            "jockey_id": rng.choice(["a", "b", "c"], 60),
            "event_timestamp": base + pd.to_timedelta(rng.choice(400, 60, replace=False), unit="h"),
            "rides": rng.integers(0, 50, 60).astype("int64"),
            "rate": rng.random(60),
        }
    ).drop_duplicates(["jockey_id", "event_timestamp"])
    entities = pd.DataFrame(
        {
            "jockey_id": rng.choice(["a", "b", "c", "new"], 40),
            "event_timestamp": base + pd.to_timedelta(rng.integers(-20, 450, 40), unit="h"),
            "race_id": [f"R{i}" for i in range(40)],
        }
    )
    return entities, state


@pytest.mark.parametrize("ttl", [None, timedelta(days=3)])
@pytest.mark.parametrize("seed", [0, 1])
def test_asof_join_equals_feast_join(seed, ttl):
    entities, state = _tables(seed)
    con = ibis.duckdb.connect()
    spec = [(ibis.memtable(state), "event_timestamp", None, {"jockey_id": "jockey_id"}, ["rides", "rate"], ttl)]
    ours = con.execute(asof_point_in_time_join(ibis.memtable(entities), spec))
    theirs = con.execute(feast_ibis.point_in_time_join(ibis.memtable(entities), spec))
    key = ["race_id"]
    ours = ours.sort_values(key).reset_index(drop=True)
    theirs = theirs.sort_values(key).reset_index(drop=True)[ours.columns]
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)
    assert len(ours) == len(entities)  # every entity row kept, matched or not
    assert ours.loc[ours["jockey_id"] == "new", "rides"].isna().all()


def test_asof_join_of_several_views_equals_feast_join():
    """Two views (one keyed by a pair), shared (key, time) probes, null keys, one TTL: Feast's values."""
    rng = np.random.default_rng(7)
    base = pd.Timestamp("2024-01-01", tz="UTC")
    _, jockeys = _tables(3)
    pairs = pd.DataFrame(
        {
            "jockey_id": rng.choice(["a", "b"], 50),
            "trainer_id": rng.choice(["x", "y"], 50),
            "event_timestamp": base + pd.to_timedelta(rng.choice(400, 50, replace=False), unit="h"),
            "pair_runs": rng.integers(0, 9, 50).astype("int64"),
        }
    ).drop_duplicates(["jockey_id", "trainer_id", "event_timestamp"])
    times = base + pd.to_timedelta(rng.integers(-20, 450, 15), unit="h")
    entities = pd.DataFrame(  # four runners per race time, jockeys repeat: (jockey, time) probes are shared
        {
            "jockey_id": np.tile(["a", "a", "b", "c"], 15),
            "trainer_id": np.tile(["x", "y", "x", "y"], 15),
            "event_timestamp": np.repeat(times, 4),
            "race_id": [f"R{i}" for i in range(60)],
        }
    )
    con = ibis.duckdb.connect()
    spec = [
        (ibis.memtable(jockeys), "event_timestamp", None, {"jockey_id": "jockey_id"}, ["rides", "rate"], None),
        (
            ibis.memtable(pairs), "event_timestamp", None,
            {"jockey_id": "jockey_id", "trainer_id": "trainer_id"}, ["pair_runs"], timedelta(days=5),
        ),
    ]
    ours = con.execute(asof_point_in_time_join(ibis.memtable(entities), spec))
    theirs = con.execute(feast_ibis.point_in_time_join(ibis.memtable(entities), spec))
    assert list(ours.columns) == list(theirs.columns)
    ours = ours.sort_values("race_id").reset_index(drop=True)
    theirs = theirs.sort_values("race_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)
    assert len(ours) == len(entities)
    assert ours["rides"].notna().any() and ours["pair_runs"].notna().any()  # the joins found something


def test_asof_join_leaves_rows_with_a_null_key_unmatched_in_that_view_only():
    _, jockeys = _tables(4)
    entities = pd.DataFrame(
        {
            "jockey_id": pd.array(["a", None, "b"], dtype="string"),
            "trainer_id": pd.array(["x", "x", None], dtype="string"),
            "event_timestamp": pd.Timestamp("2024-03-01", tz="UTC"),
            "race_id": ["R0", "R1", "R2"],
        }
    )
    trainers = jockeys.rename(columns={"jockey_id": "trainer_id"}).replace({"trainer_id": {"a": "x"}})
    spec = [
        (ibis.memtable(jockeys), "event_timestamp", None, {"jockey_id": "jockey_id"}, ["rides"], None),
        (ibis.memtable(trainers), "event_timestamp", None, {"trainer_id": "trainer_id"}, ["rate"], None),
    ]
    out = ibis.duckdb.connect().execute(asof_point_in_time_join(ibis.memtable(entities), spec))
    out = out.set_index("race_id").sort_index()
    assert out["rides"].notna().tolist() == [True, False, True]
    assert out["rate"].notna().tolist() == [True, True, False]


@pytest.mark.parametrize("ttl", [None, timedelta(days=2)])
def test_asof_join_of_a_late_window_equals_feast_join(ttl):
    """Entity rows late in the state's span (a chunk of a long history): state rows outside
    what they can use are left out of the join, and nothing changes."""
    entities, state = _tables(5)
    entities["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        np.linspace(250, 330, len(entities)).round(), unit="h"
    )
    con = ibis.duckdb.connect()
    spec = [(ibis.memtable(state), "event_timestamp", None, {"jockey_id": "jockey_id"}, ["rides", "rate"], ttl)]
    ours = con.execute(asof_point_in_time_join(ibis.memtable(entities), spec)).sort_values("race_id")
    theirs = con.execute(feast_ibis.point_in_time_join(ibis.memtable(entities), spec)).sort_values("race_id")
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs[ours.columns].reset_index(drop=True), check_dtype=False)
    assert ours["rides"].notna().any()
    if ttl:  # some rows found state only older than the TTL: null, as in Feast
        assert ours.loc[ours["jockey_id"] != "new", "rides"].isna().any()
