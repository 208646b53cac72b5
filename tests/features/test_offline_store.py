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
