"""frame_from_arrays, string_array and utc_array equal pandas' own constructors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.data import frames
from racecast.data.frames import frame_from_arrays, string_array, utc_array


def _arrays() -> dict[str, object]:
    """One array of every kind an entity frame holds, and a few more."""
    return {
        "race_id": pd.array(["R1", None, "R2"], dtype="string"),
        "distance_m": pd.array([1200, None, 1650], dtype="Int64"),
        "odds_capped": pd.array([True, None, False], dtype="boolean"),
        "share": pd.array([0.5, None, 1.5], dtype="Float64"),
        "rating": np.array([50.0, np.nan, 70.0]),
        "n_runners": np.array([3, 3, 3], dtype=np.int64),
        "flag": np.array([True, False, True]),
        "wrapped": pd.array(np.array([1.0, 2.0, 3.0])),  # NumpyExtensionArray: unwrapped
        "off_time": pd.array(pd.to_datetime(["2025-02-06T06:30Z", None, "2025-02-07T01:00Z"])),
        "naive": np.array(["2025-02-06", "NaT", "2025-02-07"], dtype="datetime64[ns]"),
        "category": pd.Categorical(["a", "b", "a"]),
        "objects": np.array(["x", None, 3], dtype=object),
    }


@pytest.mark.parametrize("release", ["2.3", "9.9"], ids=["internals", "public"])
def test_frame_from_arrays_is_pandas_dict_constructor(release, monkeypatch) -> None:
    monkeypatch.setattr(frames, "PANDAS_INTERNALS", release)
    arrays = _arrays()
    index = pd.RangeIndex(3)
    expected = pd.DataFrame(arrays, index=index, copy=False)
    got = frame_from_arrays(pd.Index(list(arrays)), list(arrays.values()), index)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert list(got.dtypes) == list(expected.dtypes)
    # the frame works like any other: a column set, a row taken, a copy changed alone
    got["extra"] = 1.0
    copy = got.copy()
    copy.loc[0, "rating"] = -1.0
    assert got.loc[0, "rating"] == 50.0
    pd.testing.assert_frame_equal(got.iloc[[2, 0]], expected.assign(extra=1.0).iloc[[2, 0]])


def test_string_array_is_pd_array() -> None:
    for values in (["a", None, "b"], [], [None], ["é", "", " x "]):
        expected = pd.array(values, dtype="string")
        got = string_array(values)
        pd.testing.assert_extension_array_equal(got, expected)
        assert type(got) is type(expected) and got.dtype == expected.dtype


def test_utc_array_is_pandas_utc_times() -> None:
    stamps = [pd.Timestamp("2025-02-06T14:30:00+08:00"), None, pd.Timestamp("1900-01-01T00:00:00Z")]
    ticks = np.array(
        [np.iinfo(np.int64).min if s is None else s.value for s in stamps], dtype=np.int64
    )
    expected = pd.to_datetime(pd.Series(stamps, dtype=object), utc=True).array
    pd.testing.assert_extension_array_equal(utc_array(ticks), expected)


def test_utc_array_and_string_array_under_another_release(monkeypatch) -> None:
    monkeypatch.setattr(frames, "PANDAS_INTERNALS", "9.9")
    pd.testing.assert_extension_array_equal(
        string_array(["a", None]), pd.array(["a", None], dtype="string")
    )
    ticks = np.array([0, np.iinfo(np.int64).min], dtype=np.int64)
    expected = pd.array(ticks.view("datetime64[ns]")).tz_localize("UTC")
    pd.testing.assert_extension_array_equal(utc_array(ticks), expected)
