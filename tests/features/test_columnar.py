"""The transform's array helpers: the small paths (one race at serving time) give the bulk
paths' bits, and the output frame built from blocks equals pandas' own construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.data import frames
from racecast.features import columnar


def _awkward(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Values with ties, NaN, negative zeros and magnitudes that round differently."""
    values = rng.choice([1.0, 2.0, 2.0, -0.0, 0.1, 0.2, 0.3, 1e16, -1e16, 3.5, np.nan], (n, k))
    return values * rng.choice([1.0, 1.0 + 1e-15, 7.0], (n, k))


@pytest.mark.parametrize("groups", [1, 2, 5])
def test_small_group_means_and_ranks_equal_the_bulk_paths_bit_for_bit(groups):
    rng = np.random.default_rng(groups)
    n, k = 14, 6
    copies = columnar.SMALL // n + 2  # tiled past SMALL: the bulk paths
    for _ in range(20):
        values = _awkward(rng, n, k)
        codes = np.sort(rng.integers(0, groups, n))
        codes = np.unique(codes, return_inverse=True)[1].astype(np.int64)  # every group used
        n_groups = int(codes.max()) + 1
        big = np.tile(values, (copies, 1))
        big_codes = np.concatenate([codes + c * n_groups for c in range(copies)])
        assert len(big) > columnar.SMALL
        small_means = columnar.group_means(values, codes, n_groups)
        bulk_means = columnar.group_means(big, big_codes, n_groups * copies)
        for c in range(copies):
            np.testing.assert_array_equal(
                bulk_means[c * n : (c + 1) * n].view(np.int64), small_means.view(np.int64)
            )
        for ascending in (True, False):
            small_ranks = columnar.group_ranks(values, codes, ascending=ascending)
            bulk_ranks = columnar.group_ranks(big, big_codes, ascending=ascending)
            np.testing.assert_array_equal(bulk_ranks[:n], small_ranks)
            series = pd.DataFrame(values).groupby(codes)
            expected = series.rank(method="min", ascending=ascending).to_numpy()
            np.testing.assert_array_equal(small_ranks, expected)


def test_group_means_match_pandas_and_skip_nan():
    values = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, 2.0], [5.0, 4.0]])
    codes = np.array([0, 0, 1, 1])
    means = columnar.group_means(values, codes, 2)
    np.testing.assert_array_equal(means, [[2.0, np.nan], [2.0, np.nan], [5.0, 3.0], [5.0, 3.0]])


def test_codes_by_race_answers_one_race_like_factorize_and_refuses_missing_ids():
    one = np.array(["R1"] * 5, dtype=object)
    codes, n = columnar.codes_by_race(one, "race ids")
    assert n == 1 and codes.dtype == np.int64 and not codes.any()
    mixed = np.array(["R2", "R1", "R2"], dtype=object)
    codes, n = columnar.codes_by_race(mixed, "race ids")
    assert n == 2 and codes.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="missing race ids"):
        columnar.codes_by_race(np.array(["R1", None], dtype=object), "race ids")
    with pytest.raises(ValueError, match="missing race ids"):
        columnar.codes_by_race(np.array([pd.NA, pd.NA], dtype=object), "race ids")


@pytest.mark.parametrize("pandas_release", ["installed", "another"])
def test_frame_from_columns_equals_pandas_construction_for_every_key_dtype(
    pandas_release, monkeypatch
):
    """Both paths: pandas' blocks (the pinned release) and the public constructors (any other)."""
    if pandas_release == "another":
        monkeypatch.setattr(frames, "PANDAS_INTERNALS", "9.9")
    assert frames.internals_supported() is (pandas_release == "installed")
    index = pd.Index([7, 3, 9], name="row")
    keys = {
        "text": pd.array(["a", None, "c"], dtype="string"),
        "plain": pd.Series(["x", "y", None], dtype=object).array,
        "when": pd.Series(
            pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True)
        ).array,
        "number": pd.Series([1, 2, 3]).array,
        "kind": pd.Categorical(["p", "q", "p"]),
    }
    floats = {"f1": np.array([1.0, np.nan, 3.0]), "f2": np.array([0.5, 0.25, -0.0])}
    flag = np.array([True, False, True])
    order = ["text", "f1", "plain", "when", "flag", "number", "f2", "kind"]
    layout = frames.FrameLayout.of(list(keys), list(floats), "flag", order)
    frame = frames.frame_from_columns(layout, index, keys, floats, flag)
    expected = pd.DataFrame(
        {
            **{c: pd.Series(v, index=index) for c, v in keys.items()},
            **floats,
            "flag": flag.astype(np.int64),
        },
        index=index,
    )[order]
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    frame.iloc[0, 0] = "changed"  # the keys are copies
    assert keys["text"][0] == "a"
    frame.columns.name = "renamed"  # the layout's columns are not shared
    assert layout.columns.name is None


def test_column_matrix_is_a_read_only_mapping_of_its_rows():
    matrix = np.arange(12.0).reshape(3, 4)
    columns = columnar.ColumnMatrix(matrix, {"a": 0, "b": 1, "c": 2})
    assert list(columns) == ["a", "b", "c"] and len(columns) == 3
    assert "b" in columns and "z" not in columns and columns.get("z") is None
    assert columns["c"].tolist() == [8.0, 9.0, 10.0, 11.0]
    assert dict(columns.items()).keys() == {"a", "b", "c"}
    out = np.empty((2, 4))
    columns.take(["c", "a"], out=out)
    assert out.tolist() == [matrix[2].tolist(), matrix[0].tolist()]
    with pytest.raises(KeyError):
        columns.take(["a", "z"], out=out)
    with pytest.raises(ValueError, match="matrix of 2 rows"):
        columnar.ColumnMatrix(matrix, {"a": 0, "b": 1})


def test_float_values_defers_text_to_pandas_coercion():
    text = np.array(["1.5", None, "x"], dtype=object)
    assert np.array_equal(columnar.float_values(text), [1.5, np.nan, np.nan], equal_nan=True)
    numbers = pd.array([1, None, 3], dtype="Int64")
    assert np.array_equal(columnar.float_values(numbers), [1.0, np.nan, 3.0], equal_nan=True)
