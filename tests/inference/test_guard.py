"""The point-in-time guard over arrays: what it refuses and what it lets through."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.inference.guard import LookAheadError, check_point_in_time, point_in_time_violations

OFF = pd.Timestamp("2026-03-01 12:30", tz="UTC")


def _rows(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "race_id": pd.array(["R1"] * (n - 1) + ["R2"], dtype="string"),
            "horse_id": pd.array([f"h{i}" for i in range(n)], dtype="string"),
            "jockey_id": pd.array([f"j{i}" for i in range(n)], dtype="string"),
            "trainer_id": pd.array([f"t{i}" for i in range(n)], dtype="string"),
            "off_time": [OFF] * (n - 1) + [OFF + pd.Timedelta(days=1)],
        }
    )


def _times(rows: pd.DataFrame, **stamps: list[float]) -> pd.DataFrame:
    return pd.DataFrame(stamps, index=rows.index, dtype=np.float64)


def test_state_strictly_before_the_off_or_missing_passes() -> None:
    rows = _rows()
    off = OFF.timestamp()
    times = _times(
        rows,
        horse_form=[off - 1.0, np.nan, off - 86400.0, off + 3600.0],  # the last runs a day later
        jockey_form=[np.nan, off - 0.001, np.nan, off],
    )
    assert point_in_time_violations(rows, times) == []
    check_point_in_time(rows, times)  # does not raise


def test_state_at_or_after_the_off_is_refused_view_by_view_in_row_order() -> None:
    rows = _rows()
    off = OFF.timestamp()
    later = (OFF + pd.Timedelta(days=1)).timestamp()
    times = _times(
        rows,
        horse_form=[off - 1.0, off, off + 5.0, later],  # rows 1, 2 and 3 (at its own off)
        jockey_form=[off + 60.0, np.nan, off - 1.0, later - 1.0],  # row 0
    )
    found = point_in_time_violations(rows, times)
    assert [(v.view, v.race_id, v.entity) for v in found] == [
        ("horse_form", "R1", "horse_id=h1"),
        ("horse_form", "R1", "horse_id=h2"),
        ("horse_form", "R2", "horse_id=h3"),
        ("jockey_form", "R1", "jockey_id=j0"),
    ]
    assert found[0].state_time == OFF and found[0].off_time == OFF
    assert found[1].state_time == OFF + pd.Timedelta(seconds=5)
    assert found[2].off_time == OFF + pd.Timedelta(days=1)
    with pytest.raises(LookAheadError, match="race R1 .*horse_form of horse_id=h1") as error:
        check_point_in_time(rows, times)
    assert "2 race(s) affected (R1, R2" in str(error.value)
    assert len(error.value.violations) == 4


def test_off_times_as_text_or_naive_are_read_as_utc() -> None:
    rows = _rows()
    rows["off_time"] = [t.tz_localize(None).isoformat() for t in rows["off_time"]]
    off = OFF.timestamp()
    times = _times(rows, horse_form=[off - 1.0, off, np.nan, np.nan])
    assert [v.entity for v in point_in_time_violations(rows, times)] == ["horse_id=h1"]


def test_a_view_of_unknown_entities_and_empty_inputs() -> None:
    rows = _rows()
    off = OFF.timestamp()
    found = point_in_time_violations(rows, _times(rows, other=[off, np.nan, np.nan, np.nan]))
    assert [(v.view, v.entity) for v in found] == [("other", "?")]
    assert point_in_time_violations(rows, pd.DataFrame(index=rows.index)) == []
    assert point_in_time_violations(rows.iloc[:0], _times(rows.iloc[:0], horse_form=[])) == []


def test_a_null_off_time_is_an_error_not_a_pass() -> None:
    rows = _rows()
    rows["off_time"] = rows["off_time"].astype(object)
    rows.loc[2, "off_time"] = None
    times = _times(rows, horse_form=[np.nan] * 4)
    with pytest.raises(ValueError, match="null timestamp"):
        point_in_time_violations(rows, times)
