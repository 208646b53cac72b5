"""Feast round trips: offline (point-in-time) and online features equal the reference path.

Each test works in a temporary project (a copy of ``feature_repo/`` and its parquet sources
under ``data/04_feature``), so it runs the real Feast repo definitions end to end.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.features import entities, store, transform
from racecast.features.online import online_features
from racecast.features.online_read import OnlineReader
from racecast.features.specs import FUNDAMENTAL_FEATURES, MARKET_FEATURES

from .conftest import apply_world, make_world


@pytest.fixture
def feast_project(tmp_path, monkeypatch):
    """A temp project with the repo applied over a random world's state tables."""
    races, runners = make_world(seed=3, n_races=70, n_days=22)
    tables, summary = apply_world(tmp_path, races, runners, monkeypatch)
    entity_rows = entities.entity_frame(races, runners)
    labelled = entity_rows[entity_rows["won"].notna()].reset_index(drop=True)
    return {
        "summary": summary,
        "tables": tables,
        "entity_rows": entity_rows,
        "labelled": labelled,
        "store": store.get_store("feature_repo"),
    }


def test_apply_registers_the_contracts(feast_project):
    summary = feast_project["summary"]
    assert summary["feature_services"] == ["combined_v1", "fundamental_v1"]
    assert set(summary["feature_views"]) == set(feast_project["tables"])
    fs = feast_project["store"]
    fundamental = set(store.service_view_features(fs, "fundamental_v1"))
    served_market = {
        f.name
        for proj in fs.get_feature_service("combined_v1").feature_view_projections
        if proj.name == "market_odds"
        for f in proj.features
    }
    assert served_market == set(MARKET_FEATURES)
    assert not fundamental & set(MARKET_FEATURES)
    assert "market_odds" not in {
        p.name for p in fs.get_feature_service("fundamental_v1").feature_view_projections
    }


def test_historical_features_equal_reference_join_one_row_per_runner(feast_project):
    labelled = feast_project["labelled"]
    served = store.historical_state(feast_project["store"], labelled, "combined_v1")
    assert len(served) == len(labelled)
    via_feast = transform.build_features(labelled, served)
    reference = transform.build_features(
        labelled, transform.point_in_time_join(labelled, feast_project["tables"])
    )
    pd.testing.assert_frame_equal(via_feast, reference, check_dtype=False)
    # debutants (no earlier horse state) are kept, flagged, with missing form
    debut = via_feast["is_debut"] == 1
    assert debut.any() and (~debut).any()
    assert via_feast.loc[debut, "h_runs"].isna().all()
    # the market view served by Feast's on-demand view equals the shared function
    market = transform.market_features(labelled)
    for name in MARKET_FEATURES:
        pd.testing.assert_series_equal(
            served[name].astype("float64").reset_index(drop=True),
            market[name].astype("float64").reset_index(drop=True),
            check_names=False,
        )


def test_online_features_of_a_held_out_race_equal_its_training_rows(feast_project):
    fs = feast_project["store"]
    labelled = feast_project["labelled"]
    last_day = labelled["off_time"].dt.floor("D").max()
    race_id = labelled.loc[labelled["off_time"] >= last_day, "race_id"].iloc[-1]
    # materialize everything first, then rewind to the race's day: later results must go
    store.materialize(fs, labelled["off_time"].max() + pd.Timedelta(hours=1))
    window = store.materialize(fs, last_day)
    assert window["mode"] == "rewind"
    fs = store.get_store("feature_repo")

    served = store.historical_state(fs, labelled, "combined_v1")
    training = transform.build_features(labelled, served)
    expected = training[training["race_id"] == race_id].reset_index(drop=True)

    one_race = labelled[labelled["race_id"] == race_id].reset_index(drop=True)
    # the serving path (lean reader) and Feast's own get_online_features agree
    online = online_features(one_race, "combined_v1", feature_store=fs)
    via_feast = transform.build_features(one_race, store.online_state(fs, one_race, "combined_v1"))
    pd.testing.assert_frame_equal(online, expected, check_dtype=False)
    pd.testing.assert_frame_equal(via_feast, expected, check_dtype=False)
    assert list(online.columns[: len(expected.columns)]) == list(expected.columns)
    assert set(FUNDAMENTAL_FEATURES) <= set(online.columns)


def test_unknown_horse_online_is_a_debutant_not_an_error(feast_project):
    fs = feast_project["store"]
    labelled = feast_project["labelled"]
    store.materialize(fs, labelled["off_time"].max() + pd.Timedelta(hours=1))
    race = labelled[labelled["race_id"] == labelled["race_id"].iloc[-1]].reset_index(drop=True)
    race = race.assign(
        horse_id=race["horse_id"].astype("string").where(race.index != 0, "NEVER-SEEN")
    )
    online = online_features(race, "fundamental_v1", feature_store=fs)
    assert online.loc[0, "is_debut"] == 1
    assert online.loc[0, "h_runs"] != online.loc[0, "h_runs"]  # NaN, not 0
    assert len(online) == len(race)


def test_lean_online_reader_returns_exactly_what_get_online_features_returns(feast_project):
    fs = feast_project["store"]
    labelled = feast_project["labelled"]
    store.materialize(fs, labelled["off_time"].max() + pd.Timedelta(hours=1))
    # several races at once, one unknown horse and one runner without a trainer
    rows = labelled.tail(30).reset_index(drop=True)
    rows["horse_id"] = rows["horse_id"].astype("string")
    rows.loc[0, "horse_id"] = "NEVER-SEEN"
    rows["trainer_id"] = rows["trainer_id"].astype("string")
    rows.loc[1, "trainer_id"] = pd.NA
    reader = OnlineReader(fs, "combined_v1")
    lean = reader.read(rows)
    pd.testing.assert_frame_equal(reader.read(rows), lean)  # again, from its kept keys
    # Feast 0.49's get_online_features raises on a null join key; the reader skips the view
    feast = store.online_state(fs, rows.drop(index=1), "combined_v1").reindex(rows.index)
    assert list(lean.columns) == store.service_view_features(fs, "combined_v1")
    assert lean.notna().any().all(), "every served feature has a value for someone"
    for column in lean.columns:
        expected = feast[column].drop(index=1)
        if lean[column].dtype == "string":
            pd.testing.assert_series_equal(
                lean[column].drop(index=1), expected.astype("string"), check_names=False
            )
        else:
            pd.testing.assert_series_equal(
                lean[column].drop(index=1),
                pd.to_numeric(expected).astype("float64"),
                check_names=False,
            )
    assert lean.loc[0].filter(like="h_").isna().all()
    assert lean.loc[1, ["jt_runs", "t_win_rate"]].isna().all()
    assert lean.loc[1, "h_runs"] == feast_single(fs, rows.loc[[1]].assign(trainer_id="x"))


def feast_single(fs, row):
    """``h_runs`` of one runner through Feast's own online read."""
    return float(store.online_state(fs, row, "combined_v1")["h_runs"].iloc[0])


def test_stored_values_decode_like_protobuf():
    from feast.protos.feast.types.Value_pb2 import Value

    from racecast.features.online_read import _decode_numbers, proto_value, stored_value

    values = [
        *(Value(double_val=x) for x in (0.0, -0.0, 1.5, -2.25e-300, 1e308, float("inf"))),
        *(Value(int64_val=x) for x in (0, 1, 127, 128, 300, -1, -300, 2**63 - 1, -(2**63))),
        Value(string_val="ST|turf|1200"),
        Value(string_val=""),
        Value(int32_val=-7),
        Value(bool_val=True),
        Value(),
    ]
    blobs = [v.SerializeToString() for v in values]
    # two fields in one message (the last one wins) and a varint with a redundant byte
    blobs += [blobs[7] + blobs[2], bytes([0x20, 0x85, 0x00]), bytes([0x20, 0x80])]
    for blob in blobs:
        try:
            expected = proto_value(Value.FromString(blob))
        except Exception:  # noqa: BLE001 - a truncated message must fail the same way
            with pytest.raises(Exception):  # noqa: B017
                stored_value(blob)
            continue
        got = stored_value(blob)
        assert type(got) is type(expected) and (got == expected or got != got), blob.hex()
    nan = stored_value(Value(double_val=float("nan")).SerializeToString())
    assert nan != nan
    # the reader's numpy decoder reads exactly the numbers stored_value reads that way
    decoded, numbers = _decode_numbers(blobs)
    for blob, done, number in zip(blobs, decoded, numbers, strict=True):
        if done:
            expected = stored_value(blob)
            assert isinstance(expected, int | float) and not isinstance(expected, bool)
            assert number == float(expected) or (number != number and expected != expected)
    assert decoded.sum() >= 15, "the double and int64 encodings take the numpy path"


def test_kept_rows_are_forgotten_when_the_online_store_changes(feast_project):
    """The reader keeps decoded rows only while the store's data_version stays the same:
    a later materialization (another connection's commit) is read, never the old rows."""
    fs = feast_project["store"]
    labelled = feast_project["labelled"]
    days = labelled["off_time"].dt.normalize().drop_duplicates().sort_values()
    store.materialize(fs, days.iloc[len(days) // 2])
    rows = labelled.tail(30).reset_index(drop=True)
    reader = OnlineReader(fs, "combined_v1")
    before = reader.read(rows)
    pd.testing.assert_frame_equal(reader.read(rows), before)  # kept rows, same answer
    store.materialize(fs, labelled["off_time"].max() + pd.Timedelta(hours=1))
    after = reader.read(rows)
    pd.testing.assert_frame_equal(after, OnlineReader(fs, "combined_v1").read(rows))
    assert not after.equals(before), "the later state is read, not the kept rows"
    reader.clear_cache()
    pd.testing.assert_frame_equal(reader.read(rows), after)


def test_kept_rows_at_any_capacity_give_what_a_fresh_reader_reads(feast_project):
    """Kept rows live in one matrix that grows and is emptied when full: whatever the
    capacity, every read (kept rows, rows read now, or both) equals a fresh reader's."""
    fs = feast_project["store"]
    labelled = feast_project["labelled"]
    store.materialize(fs, labelled["off_time"].max() + pd.Timedelta(hours=1))

    class Tiny(OnlineReader):
        ROW_CACHE_SIZE = 7

    tiny, default = Tiny(fs, "combined_v1"), OnlineReader(fs, "combined_v1")
    races = list(labelled["race_id"].unique()[-10:])
    for race_id in [*races, *races[::-1], races[0]]:
        rows = labelled[labelled["race_id"] == race_id]
        want = OnlineReader(fs, "combined_v1").read_with_times(rows)
        for reader in (tiny, default):
            got = reader.read_with_times(rows)
            pd.testing.assert_frame_equal(got[0], want[0])
            pd.testing.assert_frame_equal(got[1], want[1])
        assert 0 < tiny._kept.used <= 7
    first = len(default._kept.times)
    everything = default.read_with_times(labelled)  # more entities: the matrix grows
    assert default._kept.used > first
    pd.testing.assert_frame_equal(default.read_with_times(labelled)[0], everything[0])
    fresh = OnlineReader(fs, "combined_v1").read_with_times(labelled)
    pd.testing.assert_frame_equal(everything[0], fresh[0])
    pd.testing.assert_frame_equal(everything[1], fresh[1])


def test_serving_columns_give_the_frame_path_features_for_every_race(feast_project):
    """The serving path (the reader's columns straight into ``build_features_from_state``)
    equals ``build_features`` of the reader's state frame on every feature of every race,
    with an unknown horse and a runner without a trainer among them."""
    fs = feast_project["store"]
    labelled = feast_project["labelled"]
    store.materialize(fs, labelled["off_time"].max() + pd.Timedelta(hours=1))
    rows = labelled.copy()
    rows["horse_id"] = rows["horse_id"].astype("string")
    rows.loc[0, "horse_id"] = "NEVER-SEEN"
    rows["trainer_id"] = rows["trainer_id"].astype("string")
    rows.loc[1, "trainer_id"] = pd.NA
    reader = OnlineReader(fs, "combined_v1")
    frame = reader.read(rows)
    numeric, text, times = reader.read_state(rows)
    assert set(numeric) | set(text) == set(frame.columns)
    for name, values in numeric.items():
        np.testing.assert_array_equal(values, frame[name].to_numpy(dtype=float))
    for name, values in text.items():
        assert [None if pd.isna(v) else v for v in frame[name]] == list(values)
    pd.testing.assert_frame_equal(times, reader.read_with_times(rows)[1])
    assert rows["race_id"].nunique() > 20
    for race_id in rows["race_id"].unique():
        at = (rows["race_id"] == race_id).to_numpy()
        race = rows[at]
        numeric, text, _ = reader.read_state(race)
        served = transform.build_features_from_state(race, numeric, text)
        pd.testing.assert_frame_equal(served, transform.build_features(race, frame[at]))
        pd.testing.assert_frame_equal(served, online_features(race, "combined_v1", reader=reader))
