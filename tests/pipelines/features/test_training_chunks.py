"""The training set built in chunks of whole races equals the one built at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.features import entities
from racecast.pipelines.features.nodes import build_training_set, race_chunks

from ...features.conftest import apply_world, make_world


@pytest.fixture
def entity_rows(tmp_path, monkeypatch):
    """Entity rows of a random world whose state tables are applied in a temporary Feast repo."""
    races, runners = make_world(seed=5, n_races=80, n_days=25)
    apply_world(tmp_path, races, runners, monkeypatch)
    return entities.entity_frame(races, runners)


def _params(chunk: int | None) -> dict:
    return {
        "repo_path": "feature_repo",
        "training_service": "combined_v1",
        "training_chunk_runners": chunk,
    }


def test_race_chunks_keep_races_whole_and_cover_every_row_once():
    race = pd.Series(["a", "a", "b", "c", "c", "c", "b", "d", "e", "e"])
    chunks = race_chunks(race, 3)
    assert len(chunks) > 1
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(race)))
    seen: set[str] = set()
    for rows in chunks:
        names = set(race.iloc[rows])
        assert not names & seen  # no race in two chunks
        seen |= names
    assert [len(c) for c in race_chunks(race, None)] == [len(race)]
    assert [len(c) for c in race_chunks(race, 100)] == [len(race)]


@pytest.mark.parametrize("shuffle", [False, True])
def test_chunked_training_set_equals_the_unchunked_one(entity_rows, shuffle):
    if shuffle:  # races not contiguous: rows must still come back in entity_rows' order
        entity_rows = entity_rows.sample(frac=1.0, random_state=1).reset_index(drop=True)
    whole = build_training_set(entity_rows, {}, _params(None))
    n_labelled = int(entity_rows["won"].notna().sum())
    assert len(race_chunks(entity_rows.loc[entity_rows["won"].notna(), "race_id"], 60)) >= 5
    chunked = build_training_set(entity_rows, {}, _params(60))
    assert len(whole) == n_labelled
    pd.testing.assert_frame_equal(chunked, whole)  # every value, dtype and the row order
    assert whole["h_runs"].notna().any() and whole["mkt_log_prob"].notna().any()
