"""float64_matrix (the bundle's frame -> matrix fast path) equals pandas' own selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.data import frames
from racecast.data.frames import float64_matrix, internals_supported
from racecast.inference.bundle import _numeric_matrix


def _mixed_frame(seed: int) -> pd.DataFrame:
    """Numeric columns over several blocks (float64/32, int64, uint64, bool), and others."""
    rng = np.random.default_rng(seed)
    n = 14
    frame = pd.DataFrame(
        {
            "race_id": pd.array([f"r{i // 7}" for i in range(n)], dtype="string"),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
        }
    )
    frame["off_time"] = pd.Timestamp("2026-01-01", tz="UTC")
    frame["count"] = pd.array(rng.integers(0, 5, n), dtype="Int64")
    frame["flag"] = rng.random(n) > 0.5
    for name in ("c", "d", "e"):  # one block each (inserted after construction)
        values = rng.normal(size=n)
        values[rng.random(n) < 0.3] = np.nan
        frame[name] = values
    frame["e"] = frame["e"].where(frame["e"] > 0, -0.0)
    frame["obj"] = frame["a"].astype(object)
    frame.loc[3, "c"] = np.inf
    frame.loc[5, "d"] = -np.inf
    frame["g"] = rng.normal(size=n).astype(np.float32)
    frame["n"] = rng.integers(-(2**62), 2**62, n)  # int64 values float64 rounds
    frame["u"] = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    return frame


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("consolidate", [False, True])
def test_float_columns_in_any_order_give_pandas_bits(seed: int, consolidate: bool) -> None:
    frame = _mixed_frame(seed)
    if consolidate:
        frame = frame.copy()  # one float64 block
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d", "e", "g", "n", "u", "flag"]
    columns = [names[i] for i in rng.permutation(len(names))] + ["a"]  # a repeated name too
    expected = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    got = float64_matrix(frame, columns)
    assert got is not None and got.flags.c_contiguous
    assert got.tobytes() == expected.tobytes()
    assert _numeric_matrix(frame, columns).tobytes() == expected.tobytes()
    # a row subset (a view's blocks) and a reordered frame
    part = frame.iloc[[5, 1, 9]]
    assert float64_matrix(part, columns).tobytes() == part[columns].to_numpy(np.float64).tobytes()


@pytest.mark.parametrize("other", ["count", "off_time", "race_id", "missing"])
def test_any_other_column_defers_to_pandas(other: str) -> None:
    frame = _mixed_frame(0)
    assert float64_matrix(frame, ["a", other]) is None
    assert float64_matrix(frame, []) is None
    assert float64_matrix(frame, ["obj"]) is None


def test_duplicate_names_defer_and_pandas_path_still_converts_text() -> None:
    frame = _mixed_frame(1)
    duplicated = pd.concat([frame[["a"]], frame[["a", "b"]]], axis=1)
    assert float64_matrix(duplicated, ["b"]) is None
    frame["text"] = [str(x) for x in range(len(frame))]
    got = _numeric_matrix(frame, ["a", "text", "count"])
    expected = np.column_stack([frame["a"], np.arange(len(frame)), frame["count"].astype(float)])
    assert got.tobytes() == expected.tobytes()
    frame["text"] = "x"
    with pytest.raises(ValueError, match="'text' is not numeric"):
        _numeric_matrix(frame, ["a", "text"])


def test_another_pandas_release_takes_the_public_path(monkeypatch) -> None:
    assert internals_supported("2.3.3") and not internals_supported("3.0.0")
    assert not internals_supported("2.30.1")
    frame = _mixed_frame(2)
    columns = ["a", "b", "c", "n", "flag"]
    expected = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    monkeypatch.setattr(frames, "PANDAS_INTERNALS", "9.9")
    assert float64_matrix(frame, columns) is None  # no block is read under another release
    assert _numeric_matrix(frame, columns).tobytes() == expected.tobytes()


@pytest.mark.parametrize("pandas_release", ["installed", "another"])
def test_column_arrays_and_float64_values_give_pandas_values(pandas_release, monkeypatch) -> None:
    """Both paths (the block manager's arrays, pandas' own lookup) hand out the values
    ``frame[c]`` holds, and the float conversion equals pandas' ``to_numpy`` bit for bit."""
    if pandas_release == "another":
        monkeypatch.setattr(frames, "PANDAS_INTERNALS", "9.9")
    frame = _mixed_frame(3)
    frame["ratio"] = pd.array([0.5, None] * 7, dtype="Float64")
    frame["yes"] = pd.array([True, None, False] * 4 + [True, True], dtype="boolean")
    columns = ["off_time", "a", "count", "race_id", "flag", "n", "u", "obj", "ratio", "yes", "g"]
    got = frames.column_arrays(frame, columns)
    assert list(got) == columns
    for name in columns:
        series = frame[name]
        want = series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array
        assert type(got[name]) is type(want) and got[name].dtype == want.dtype, name
        pd.testing.assert_extension_array_equal(pd.array(got[name]), pd.array(want))
        floats = frames.float64_values(got[name])
        if name in ("off_time", "race_id", "obj"):
            assert floats is None, name  # not numbers: the caller converts with pandas
        elif pandas_release == "another" and not isinstance(want, np.ndarray):
            assert floats is None, name  # masked arrays are read by pandas then
        else:
            expected = series.to_numpy(dtype=np.float64, na_value=np.nan)
            assert floats.dtype == np.float64 and floats.tobytes() == expected.tobytes(), name
            floats[:] = 7.0  # a new array: the frame is untouched
            assert frame[name].to_numpy(dtype=np.float64, na_value=np.nan).tobytes() == (
                expected.tobytes()
            )
    with pytest.raises(KeyError):
        frames.column_arrays(frame, ["a", "absent"])
    duplicated = pd.concat([frame[["a"]], frame[["a", "b"]]], axis=1)
    assert frames.column_arrays(duplicated, ["b"])["b"].tobytes() == frame["b"].to_numpy().tobytes()


def test_frame_from_a_float_matrix_takes_it_as_its_block() -> None:
    layout = frames.FrameLayout.of(["k"], ["f1", "f2"], "flag", ["f2", "k", "flag", "f1"])
    index = pd.RangeIndex(3)
    keys = {"k": pd.array(["a", "b", None], dtype="string")}
    matrix = np.array([[1.0, np.nan, 3.0], [0.5, -0.0, 2.0]])
    by_name = {"f1": matrix[0].copy(), "f2": matrix[1].copy()}
    flag = np.array([1, 0, 1])
    want = frames.frame_from_columns(layout, index, keys, by_name, flag)
    pd.testing.assert_frame_equal(
        frames.frame_from_columns(layout, index, keys, matrix, flag), want, check_exact=True
    )
    with pytest.raises(ValueError, match="float64 matrix of 2 x 3"):
        frames.frame_from_columns(layout, index, keys, matrix[:, :2], flag)
    with pytest.raises(ValueError, match="float64 matrix of 2 x 3"):
        frames.frame_from_columns(layout, index, keys, matrix.astype(np.float32), flag)
