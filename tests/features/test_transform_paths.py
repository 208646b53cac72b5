"""The transform gives the same numbers for one race (serving) as inside a bulk build.

``build_features`` takes scalar paths for a few runners (cached per-value classifiers,
``str`` partitions of the course record) and vectorised ones for many; a race scored
alone must equal its rows in the training build, course records and gear included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.features import entities, runner_parts, state, transform
from racecast.features.specs import VIEWS

from .conftest import make_world


def test_each_race_alone_equals_its_rows_in_the_bulk_build():
    races, runners = make_world(seed=11, n_races=90, n_days=30)
    tables = state.build_state_tables(races, runners)
    context = entities.entity_frame(races, runners)
    assert len(context) > transform._SMALL, "the bulk build must take the vectorised path"
    joined = transform.point_in_time_join(context, tables)
    features = [c for spec in VIEWS.values() for c in spec.features]
    served = joined[features]
    bulk = transform.build_features(context, served)
    # the course record is the trickiest field: some runners must have one here
    assert (bulk["course_runs"] > 0).any() and bulk["first_time_gear"].notna().any()
    for race_id in context["race_id"].unique():
        rows = (context["race_id"] == race_id).to_numpy()
        alone = transform.build_features(context[rows], served[rows])
        pd.testing.assert_frame_equal(alone, bulk[rows], rtol=1e-12, atol=1e-12)


def test_record_at_course_paths_agree_on_awkward_records():
    record = pd.Series(
        ["ST=5/1;HV=3/0", "HV=2/2", "", None, "ST=x/1", "STX=4/4;ST=1/1", "ST=2/0", "ST=7/3"],
        dtype="string",
    )
    course = pd.Series(["HV", "ST", "ST", "ST", "ST", "ST", None, " ST "], dtype="string")
    small = runner_parts.record_at_course_small(record, course)
    big_record = pd.concat([record] * 20, ignore_index=True)
    big_course = pd.concat([course] * 20, ignore_index=True)
    bulk = runner_parts.record_at_course(big_record, big_course)
    expected_runs = [3, 0, 0, np.nan, 0, 1, 0, 7]
    expected_wins = [0, 0, 0, np.nan, 0, 1, 0, 3]
    np.testing.assert_array_equal(small[0], expected_runs)
    np.testing.assert_array_equal(small[1], expected_wins)
    np.testing.assert_array_equal(bulk[0], np.tile(expected_runs, 20))
    np.testing.assert_array_equal(bulk[1], np.tile(expected_wins, 20))


def test_state_as_columns_gives_build_features_numbers_in_bulk_and_per_race():
    """``build_features_from_state`` (what serving calls with the online reader's arrays:
    float64 columns, object text with None) equals ``build_features`` of the state frame
    (``string`` text with NA) on every feature, in bulk (the vectorised paths) and for
    every race alone (the scalar paths)."""
    races, runners = make_world(seed=5, n_races=60, n_days=20)
    tables = state.build_state_tables(races, runners)
    context = entities.entity_frame(races, runners)
    joined = transform.point_in_time_join(context, tables)
    served = joined[[c for spec in VIEWS.values() for c in spec.features]]
    strings = ["h_course_record", "h_last_gear"]
    assert all(served[c].dtype == "string" for c in strings) and served[strings].isna().any().all()

    def columns(rows: np.ndarray) -> tuple[dict, dict]:
        part = served[rows]
        numeric = {c: part[c].to_numpy(dtype=float) for c in part.columns if c not in strings}
        text = {
            c: np.asarray([None if pd.isna(v) else v for v in part[c]], object) for c in strings
        }
        return numeric, text

    everything = np.ones(len(context), dtype=bool)
    bulk = transform.build_features(context, served)
    pd.testing.assert_frame_equal(
        transform.build_features_from_state(context, *columns(everything)), bulk
    )
    for race_id in context["race_id"].unique():
        rows = (context["race_id"] == race_id).to_numpy()
        pd.testing.assert_frame_equal(
            transform.build_features_from_state(context[rows], *columns(rows)),
            transform.build_features(context[rows], served[rows]),
        )


def test_state_as_columns_refuses_missing_or_misaligned_columns():
    races, runners = make_world(seed=5, n_races=4, n_days=2)
    context = entities.entity_frame(races, runners)
    served = transform.point_in_time_join(context, state.build_state_tables(races, runners))
    numeric = {c: served[c].to_numpy(dtype=float) for c in transform._NUMERIC_STATE}
    text = {c: served[c] for c in ("h_course_record", "h_last_gear")}
    with pytest.raises(KeyError, match="h_runs"):
        transform.build_features_from_state(
            context, {k: v for k, v in numeric.items() if k != "h_runs"}, text
        )
    with pytest.raises(ValueError, match="one value per context row"):
        transform.build_features_from_state(
            context, {**numeric, "h_runs": numeric["h_runs"][:-1]}, text
        )
