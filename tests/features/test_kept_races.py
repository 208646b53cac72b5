"""Kept races: a race asked for again with new prices only reuses its fundamental rows.

The frames must be bit-identical to the uncached path's for the same request; a kept race
is never used once the SQLite online store changed (the point-in-time guard then refuses
it again), nor for a racecard differing in any field but the prices; the store holds at
most its size. Real Feast projects (a random world's state tables, the SQLite online
store), as ``tests/features/test_feast.py`` builds them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.features import entities, state, store, transform
from racecast.features.kept_races import KeptRaces
from racecast.features.online import kept_race_columns, online_features
from racecast.features.online_read import OnlineReader
from racecast.features.specs import CONTEXT_COLUMNS, VIEWS
from racecast.inference.guard import LookAheadError, check_point_in_time

from .conftest import apply_world, make_world

SERVICE = "combined_v1"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A temp project materialized up to the last day: that day's races are upcoming."""
    races, runners = make_world(seed=5, n_races=70, n_days=22)
    apply_world(tmp_path, races, runners, monkeypatch)
    rows = entities.entity_frame(races, runners)
    rows = rows[rows["won"].notna()].reset_index(drop=True)
    last_day = rows["off_time"].dt.floor("D").max()
    fs = store.get_store("feature_repo")
    store.materialize(fs, last_day)
    upcoming = rows[rows["off_time"] >= last_day].reset_index(drop=True)
    assert upcoming["race_id"].nunique() >= 3
    return {"store": fs, "rows": rows, "upcoming": upcoming, "end": rows["off_time"].max()}


class _Guard:
    """The point-in-time guard, recording the races it was asked about (a miss reads)."""

    def __init__(self) -> None:
        self.races: list[list[str]] = []

    def __call__(self, rows: pd.DataFrame, times: pd.DataFrame) -> None:
        self.races.append(list(dict.fromkeys(rows["race_id"].astype(str).tolist())))
        check_point_in_time(rows, times)


def _race(rows: pd.DataFrame, i: int) -> pd.DataFrame:
    race_id = rows["race_id"].unique()[i]
    return rows[rows["race_id"] == race_id].reset_index(drop=True)


def _repriced(rows: pd.DataFrame, factor: float) -> pd.DataFrame:
    """The same runners at other prices (every runner's decimal odds moved)."""
    odds = rows["odds_final"].to_numpy(dtype=float)
    moved = np.round(1.0 + (odds - 1.0) * factor * (1 + 0.01 * np.arange(len(rows))), 2)
    return rows.assign(odds_final=np.where(np.isnan(odds), 4.5, moved))


def _serve(reader, rows, kept=None, guard=None):
    return online_features(
        rows, SERVICE, reader=reader, guard=guard or check_point_in_time, kept=kept
    )


def _uncached(fs, rows):
    """The same request through a fresh reader, nothing kept."""
    return _serve(OnlineReader(fs, SERVICE), rows)


def test_a_repriced_race_reuses_its_fundamentals_and_equals_the_uncached_frame(project):
    fs, upcoming = project["store"], project["upcoming"]
    reader, kept, guard = OnlineReader(fs, SERVICE), KeptRaces(8), _Guard()
    race = _race(upcoming, 0)
    first = _serve(reader, race, kept, guard)
    pd.testing.assert_frame_equal(first, _uncached(fs, race), check_exact=True)
    assert guard.races == [[race["race_id"][0]]] and len(kept) == 1
    for factor in (1.0, 0.8, 1.37):
        repriced = _repriced(race, factor)
        served = _serve(reader, repriced, kept, guard)
        expected = _uncached(fs, repriced)
        pd.testing.assert_frame_equal(served, expected, check_exact=True)
        assert served.dtypes.equals(expected.dtypes)
        assert list(served.columns) == list(expected.columns)
    assert len(guard.races) == 1  # every repriced request was a hit: no read, no guard
    # the market features follow the new prices (the fundamentals do not move)
    moved = _serve(reader, _repriced(race, 0.8), kept, guard)
    assert not np.array_equal(moved["mkt_norm_odds"], first["mkt_norm_odds"], equal_nan=True)
    assert np.array_equal(moved["h_win_rate"], first["h_win_rate"], equal_nan=True)


def test_a_card_of_kept_and_new_races_reads_only_the_new_ones(project):
    fs, upcoming = project["store"], project["upcoming"]
    reader, kept, guard = OnlineReader(fs, SERVICE), KeptRaces(8), _Guard()
    ids = list(upcoming["race_id"].unique()[:3])
    _serve(reader, _race(upcoming, 1), kept, guard)  # the middle race is kept
    card = _repriced(upcoming[upcoming["race_id"].isin(ids)].reset_index(drop=True), 1.1)
    served = _serve(reader, card, kept, guard)
    pd.testing.assert_frame_equal(served, _uncached(fs, card), check_exact=True)
    assert guard.races[-1] == [ids[0], ids[2]]  # the kept race was neither read nor guarded
    # the same card again at new prices: every race kept
    again = _repriced(card, 0.9)
    pd.testing.assert_frame_equal(
        _serve(reader, again, kept, guard), _uncached(fs, again), check_exact=True
    )
    assert len(guard.races) == 2 and len(kept) == 3
    # races whose rows are not one after another (a runner of the first race last)
    mixed = pd.concat([card.iloc[1:], card.iloc[:1]], ignore_index=True)
    for kept_races in (KeptRaces(8), kept):  # every race missing, then every race kept
        pd.testing.assert_frame_equal(
            _serve(reader, mixed, kept_races, guard), _uncached(fs, mixed), check_exact=True
        )


def test_any_other_racecard_field_is_a_miss_never_the_kept_rows(project):
    fs, upcoming = project["store"], project["upcoming"]
    reader, kept, guard = OnlineReader(fs, SERVICE), KeptRaces(64), _Guard()
    race = _race(upcoming, 0)
    _serve(reader, race, kept, guard)
    other_jockey = race.assign(jockey_id=race["jockey_id"].astype("string"))
    other_jockey.loc[0, "jockey_id"] = str(upcoming["jockey_id"].iloc[-1])
    assert other_jockey.loc[0, "jockey_id"] != race.loc[0, "jockey_id"]
    heavier = race.assign(
        weight_carried_kg=race["weight_carried_kg"] + np.r_[0.5, np.zeros(len(race) - 1)]
    )
    later = race.assign(off_time=race["off_time"] + pd.Timedelta(minutes=10))
    scratched = race.iloc[1:].reset_index(drop=True)
    changed = {"jockey": other_jockey, "weight": heavier, "off time": later, "scratched": scratched}
    # every context column the fundamental transform reads counts, text, numbers and times
    for column in transform.FUNDAMENTAL_CONTEXT:
        if column in ("race_id", "off_time"):
            continue
        values = race[column].copy()
        if pd.api.types.is_numeric_dtype(values):
            values = values.astype("float64") + 1.0
        else:
            values = values.astype("string") + "x"
        changed[column] = race.assign(**{column: values})
    for name, request in changed.items():
        before = len(guard.races)
        served = _serve(reader, request, kept, guard)
        assert len(guard.races) == before + 1, f"{name}: served from the kept race"
        pd.testing.assert_frame_equal(served, _uncached(fs, request), check_exact=True, obj=name)


def test_a_materialized_result_drops_every_kept_race_and_the_guard_refuses_it(project):
    fs, upcoming = project["store"], project["upcoming"]
    reader, kept, guard = OnlineReader(fs, SERVICE), KeptRaces(8), _Guard()
    race = _race(upcoming, 0)
    _serve(reader, race, kept, guard)
    _serve(reader, _repriced(race, 0.9), kept, guard)
    version = reader.store_version()
    assert len(guard.races) == 1 and version is not None
    # the day's results reach the online store (another connection commits)
    store.materialize(fs, project["end"] + pd.Timedelta(hours=1))
    assert reader.store_version() != version
    with pytest.raises(LookAheadError, match=f"race {race['race_id'][0]} "):
        _serve(reader, _repriced(race, 0.8), kept, guard)
    assert len(guard.races) == 2 and len(kept) == 0


def test_with_odds_the_frame_ends_with_the_racecards_odds_on_both_paths(project):
    fs, upcoming = project["store"], project["upcoming"]
    reader, kept = OnlineReader(fs, SERVICE), KeptRaces(8)
    card = upcoming[upcoming["race_id"].isin(upcoming["race_id"].unique()[:2])]
    card = _repriced(card.reset_index(drop=True), 1.2)
    plain = _uncached(fs, card)
    expected = plain.assign(odds_final=card["odds_final"].to_numpy(dtype=np.float64))
    for kept_races in (None, kept, kept):  # uncached, a miss, a hit
        served = online_features(
            card, SERVICE, reader=reader, guard=check_point_in_time, kept=kept_races, with_odds=True
        )
        pd.testing.assert_frame_equal(served, expected, check_exact=True)
        assert served.columns[-1] == "odds_final"
    assert len(kept) == 2


def test_the_kept_races_never_exceed_their_size(project):
    fs, upcoming = project["store"], project["upcoming"]
    reader, kept, guard = OnlineReader(fs, SERVICE), KeptRaces(2), _Guard()
    n = upcoming["race_id"].nunique()
    for i in range(n):
        _serve(reader, _race(upcoming, i), kept, guard)
        assert len(kept) == min(i + 1, 2)
    _serve(reader, _race(upcoming, n - 1), kept, guard)  # the newest is kept
    assert len(guard.races) == n
    _serve(reader, _race(upcoming, 0), kept, guard)  # the oldest left: read again
    assert len(guard.races) == n + 1 and len(kept) == 2
    with pytest.raises(ValueError, match="at least 1"):
        KeptRaces(0)


def test_the_key_holds_every_column_the_read_and_the_fundamentals_read(project):
    reader = OnlineReader(project["store"], SERVICE)
    columns = kept_race_columns(reader)
    assert "odds_final" not in columns
    assert set(transform.FUNDAMENTAL_CONTEXT) <= set(columns)
    keys = {k for spec in VIEWS.values() for k in spec.entities}
    assert keys <= set(columns) and {"race_id", "off_time"} <= set(columns)


def test_the_fundamental_part_reads_no_context_column_outside_its_declaration():
    """Changing any context column outside ``FUNDAMENTAL_CONTEXT`` (the prices among them)
    changes no fundamental value: the declared key columns are all it reads."""
    races, runners = make_world(seed=9, n_races=40, n_days=15)
    context = entities.entity_frame(races, runners)
    joined = transform.point_in_time_join(context, state.build_state_tables(races, runners))
    numeric = {c: joined[c].to_numpy(dtype=float) for c in transform._NUMERIC_STATE}
    text = {c: joined[c] for c in ("h_course_record", "h_last_gear")}
    values, debut = transform.fundamental_features(context, numeric, text)
    outside = [c for c in context.columns if c not in transform.FUNDAMENTAL_CONTEXT]
    assert "odds_final" in outside and set(outside) & set(CONTEXT_COLUMNS)
    for column in outside:
        other = context.copy()
        if pd.api.types.is_numeric_dtype(other[column]) and not pd.api.types.is_bool_dtype(
            other[column]
        ):
            other[column] = other[column].astype("float64") * 3.0 + 1.0
        else:
            other[column] = other[column].astype("string").fillna("") + "x"
        moved, moved_debut = transform.fundamental_features(other, numeric, text)
        assert np.array_equal(moved, values, equal_nan=True), column
        assert np.array_equal(moved_debut, debut), column
    # and the full transform is the fundamental part plus the market part
    full = transform.build_features_from_state(context, numeric, text)
    pd.testing.assert_frame_equal(
        transform.features_from_fundamentals(context, values, debut), full, check_exact=True
    )


@pytest.mark.parametrize("pandas_release", ["installed", "another"])
def test_values_keys_are_equal_exactly_when_the_values_are(pandas_release, monkeypatch):
    """Both paths: pandas' arrays (the pinned release) and ``tolist`` (any other)."""
    from racecast.data import frames

    if pandas_release == "another":
        monkeypatch.setattr(frames, "PANDAS_INTERNALS", "9.9")
    when = pd.Series(pd.to_datetime(["2026-03-01 12:30", "2026-03-01 13:00"], utc=True)).array
    columns = {
        "text": pd.array(["a", None], dtype="string"),
        "int": pd.array([3, None], dtype="Int64"),
        "flag": pd.array([True, None], dtype="boolean"),
        "float": np.array([1.5, np.nan]),
        "when": when,
        "plain": np.array(["x", None], dtype=object),
    }
    image = frames.values_keys(list(columns.values()))
    assert image == frames.values_keys([v.copy() for v in columns.values()])
    hash(image)
    # the data under a nullable array's mask does not count
    hidden = pd.arrays.IntegerArray(np.array([3, 99]), np.array([False, True]))
    assert frames.values_keys([hidden]) == frames.values_keys([columns["int"]])
    changed = {
        "text": pd.array(["a", "b"], dtype="string"),
        "int": pd.array([4, None], dtype="Int64"),
        "flag": pd.array([False, None], dtype="boolean"),
        "float": np.array([1.5, 2.0]),
        "when": pd.Series(pd.to_datetime(["2026-03-01 12:31", "2026-03-01 13:00"], utc=True)).array,
        "plain": np.array(["x", "y"], dtype=object),
    }
    for name, values in changed.items():
        other = frames.values_keys([values if c == name else v for c, v in columns.items()])
        assert other != image, name
    # another dtype with the same bytes is another image; positions pick rows
    assert frames.values_keys([np.array([1, 2], dtype=np.int64)]) != frames.values_keys(
        [np.array([1, 2], dtype=np.uint64)]
    )
    assert frames.values_keys(list(columns.values()), np.array([0])) == frames.values_keys(
        [v[:1] for v in columns.values()]
    )
