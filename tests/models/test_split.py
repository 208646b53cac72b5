"""Holdout split on a hand-built calendar and expanding-window folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.models.split import compute_race_days, holdout_split, time_folds


def _calendar(races_per_day: dict[str, int], runners: int = 2) -> pd.DataFrame:
    """Runner frame: race ids d<day>r<k>, off at 13:00 + k hours UTC, rows shuffled."""
    rows = [
        (f"{day}r{k}", pd.Timestamp(f"{day} 13:00", tz="UTC") + pd.Timedelta(hours=k))
        for day, n in races_per_day.items()
        for k in range(n)
        for _ in range(runners)
    ]
    frame = pd.DataFrame(rows, columns=["race_id", "off_time"])
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


def test_holdout_starts_with_whole_day_of_race_at_floor_08n() -> None:
    # 10 races: day 1 -> sorted indices 0-2, day 2 -> 3-5, day 3 -> 6-9.
    # floor(0.8 * 10) = 8 falls on day 3, so the holdout is the whole of day 3 (4 races,
    # including races 6 and 7 that come before index 8) and training is days 1-2.
    frame = _calendar({"2024-01-01": 3, "2024-01-08": 3, "2024-01-15": 4})
    split = holdout_split(frame)
    assert split.holdout_start == pd.Timestamp("2024-01-15")
    assert split.holdout_race_ids.tolist() == [f"2024-01-15r{k}" for k in range(4)]
    assert split.train_race_ids.tolist() == [f"2024-01-01r{k}" for k in range(3)] + [
        f"2024-01-08r{k}" for k in range(3)
    ]
    assert split.holdout_mask(frame).sum() == 8  # 4 races x 2 runners
    assert (split.train_mask(frame) ^ split.holdout_mask(frame)).all()


def test_holdout_boundary_exactly_at_cut_index() -> None:
    # 5 races, one per day: floor(0.8 * 5) = 4 -> holdout is the 5th day only
    frame = _calendar({f"2024-02-0{d}": 1 for d in range(1, 6)})
    split = holdout_split(frame)
    assert split.holdout_start == pd.Timestamp("2024-02-05")
    assert len(split.holdout_race_ids) == 1 and len(split.train_race_ids) == 4
    # days of 4, 4, 2 races: index 8 is the first race of day 3 -> the cut falls exactly
    # on the day boundary; the last race of day 2 (index 7) stays in training
    split = holdout_split(_calendar({"2024-02-01": 4, "2024-02-02": 4, "2024-02-03": 2}))
    assert split.holdout_start == pd.Timestamp("2024-02-03")
    assert (len(split.train_race_ids), len(split.holdout_race_ids)) == (8, 2)
    assert split.train_race_ids[-1] == "2024-02-02r3"
    # days of 2, 7, 1 races: index 8 is the LAST race of day 2 (indices 2-8), so the
    # whole of day 2 and day 3 are held out: 8 of 10 races, not 20% of them
    split = holdout_split(_calendar({"2024-02-01": 2, "2024-02-02": 7, "2024-02-03": 1}))
    assert split.holdout_start == pd.Timestamp("2024-02-02")
    assert (len(split.train_race_ids), len(split.holdout_race_ids)) == (2, 8)


def test_cut_index_is_not_lost_to_float_rounding() -> None:
    # (1 - 0.3) * 90 = 62.99999999999999 in floating point; the cut index is 63
    frame = _calendar({str(d.date()): 1 for d in pd.date_range("2023-01-01", periods=90)})
    split = holdout_split(frame, holdout_fraction=0.3)
    assert split.holdout_start == pd.Timestamp("2023-01-01") + pd.Timedelta(days=63)
    assert len(split.train_race_ids) == 63


def test_race_day_time_zone() -> None:
    # 23:30 UTC on 1 Jan is 07:30 on 2 Jan in Hong Kong (UTC+8)
    frame = pd.DataFrame(
        {"off_time": pd.to_datetime(["2024-01-01 23:30", "2024-01-01 05:00"], utc=True)}
    )
    assert compute_race_days(frame).tolist() == [pd.Timestamp("2024-01-01")] * 2
    assert compute_race_days(frame, tz="Asia/Hong_Kong").tolist() == [
        pd.Timestamp("2024-01-02"),
        pd.Timestamp("2024-01-01"),
    ]
    days = compute_race_days(
        frame.assign(meeting_date=["2024-01-05", "2024-01-06"]), day_column="meeting_date"
    )
    assert days.tolist() == [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-06")]


def test_time_zone_moves_a_late_race_to_the_next_day() -> None:
    # 5 races; floor(0.8 * 5) = 4 -> the race "e" at 13:00 UTC on 2 Jan.
    # Race "d" at 16:30 UTC on 1 Jan is 00:30 on 2 Jan in Hong Kong (UTC+8).
    off = [
        "2024-01-01 13:00",
        "2024-01-01 14:00",
        "2024-01-01 15:00",
        "2024-01-01 16:30",
        "2024-01-02 13:00",
    ]
    frame = pd.DataFrame({"race_id": list("abcde"), "off_time": pd.to_datetime(off, utc=True)})
    utc = holdout_split(frame)
    assert utc.holdout_race_ids.tolist() == ["e"]
    hk = holdout_split(frame, tz="Asia/Hong_Kong")
    assert hk.holdout_start == pd.Timestamp("2024-01-02")
    assert hk.holdout_race_ids.tolist() == ["d", "e"]


def test_holdout_split_errors() -> None:
    frame = _calendar({"2024-01-01": 5})
    with pytest.raises(ValueError, match="no training races"):
        holdout_split(frame)
    with pytest.raises(ValueError, match="holdout_fraction"):
        holdout_split(frame, holdout_fraction=1.0)
    with pytest.raises(KeyError, match="off_time"):
        holdout_split(frame.drop(columns="off_time"))
    bad = frame.copy()
    bad.loc[bad.index[0], "off_time"] = pd.Timestamp("2030-01-01", tz="UTC")
    with pytest.raises(ValueError, match="not constant within a race"):
        holdout_split(bad)


def test_time_folds_expanding_by_day() -> None:
    # rows (out of time order) on 6 distinct days; min_train_days=2, n_folds=2
    days = pd.Series(pd.to_datetime(["d3", "d1", "d6", "d2", "d4", "d5", "d1", "d3"], format="d%d"))
    folds = time_folds(days, n_folds=2, min_train_days=2)
    # fold 1 validates days 3-4, trains on days 1-2; fold 2 validates days 5-6, trains on 1-4
    assert [train.tolist() for train, _ in folds] == [[1, 3, 6], [0, 1, 3, 4, 6, 7]]
    assert [valid.tolist() for _, valid in folds] == [[0, 4, 7], [2, 5]]


def test_time_folds_never_train_on_later_days() -> None:
    rng = np.random.default_rng(7)
    days = pd.Series(rng.integers(0, 40, size=500))
    folds = time_folds(days, n_folds=5, min_train_days=10)
    assert len(folds) == 5
    covered = np.concatenate([valid for _, valid in folds])
    assert len(np.unique(covered)) == len(covered)  # validation blocks do not overlap
    for train, valid in folds:
        assert days.iloc[train].max() < days.iloc[valid].min()
        # expanding window: trains on every row before the block
        assert set(train) == set(np.flatnonzero(days < days.iloc[valid].min()))


def test_time_folds_errors() -> None:
    days = pd.Series([1, 2, 3])
    with pytest.raises(ValueError, match="distinct days"):
        time_folds(days, n_folds=2, min_train_days=2)
    with pytest.raises(ValueError, match="missing"):
        time_folds(pd.Series([1.0, np.nan, 3.0, 4.0]), n_folds=1, min_train_days=1)
