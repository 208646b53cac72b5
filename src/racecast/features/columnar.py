"""Array helpers of the shared transform (:mod:`racecast.features.transform`).

The transform takes its input frames apart into numpy arrays once, computes every
feature on arrays and builds its output frame once. These helpers keep both of its
callers fast: one race at serving time (a dozen rows, where pandas' fixed cost per call
would dominate) and the training set (80k rows and more, vectorised); the output frame
is built by :func:`racecast.data.frames.frame_from_columns`. Where the two
need different algorithms (:data:`SMALL`), both give bit-identical numbers: group sums
add the rows in row order like ``np.bincount``, ranks count the better rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.frames import float64_values
from racecast.data.races import race_codes
from racecast.features.columns import as_float

#: Inputs up to this many rows (a race or two, the serving case) take the small paths.
SMALL = 64


def float_column(values: pd.Series) -> np.ndarray:
    """``values`` as a float64 array, nulls and non-numbers as NaN (like ``as_float``)."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiub":
        return values.to_numpy(dtype=np.float64)
    try:
        return values.array.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):  # text that is not all numbers: pandas' coercion
        return as_float(values).to_numpy(dtype=np.float64)


def float_values(values: Any) -> np.ndarray:
    """A column's values (:func:`racecast.data.frames.column_arrays`) as a new float64
    array: :func:`float_column`'s numbers, without a Series for numeric columns."""
    out = float64_values(values)
    if out is None:
        return float_column(pd.Series(values, copy=False))
    return out


class ColumnMatrix(Mapping):
    """Named rows of one float64 matrix (a feature per row, a runner per column): a
    read-only mapping of feature name -> its values, whose rows the transform gathers in
    one index (:meth:`take`) instead of one array per name.

    Args:
        matrix: (features, runners) float64 values.
        row: Feature name -> its row of ``matrix`` (kept, not copied: the reader makes
            it once).
    """

    def __init__(self, matrix: np.ndarray, row: Mapping[str, int]) -> None:
        if matrix.ndim != 2 or len(row) != matrix.shape[0]:
            raise ValueError(f"matrix of {len(row)} rows expected, got shape {matrix.shape}")
        self.matrix = matrix
        self.row = row

    def __getitem__(self, name: str) -> np.ndarray:
        return self.matrix[self.row[name]]

    def __contains__(self, name: object) -> bool:
        return name in self.row

    def __iter__(self) -> Iterator[str]:
        return iter(self.row)

    def __len__(self) -> int:
        return len(self.row)

    def take(self, names: Sequence[str], out: np.ndarray) -> None:
        """Write the rows of ``names`` into ``out`` (len(names) x runners).

        Raises:
            KeyError: If a name is missing.
        """
        row = self.row
        positions = np.fromiter(
            (row[name] for name in names), dtype=np.intp, count=len(names)
        )
        np.take(self.matrix, positions, axis=0, out=out)


def float_arrays(frame: pd.DataFrame, columns: list[str]) -> dict[str, np.ndarray]:
    """Column name -> float64 array for each of ``columns`` of a frame.

    One conversion of the whole block when every value is a number or null (the usual
    case, and the fast one for many columns); column by column otherwise. The columns
    are taken by position (``iloc``: a third of the cost of ``frame[columns]``).
    """
    positions = frame.columns.get_indexer(columns)
    try:
        if (positions < 0).any():
            raise KeyError(columns)  # duplicated or missing names: pandas' own lookup
        block = frame.iloc[:, positions]
    except KeyError:
        block = frame[columns]
    try:
        matrix = block.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        return {col: float_column(frame[col]) for col in columns}
    return {col: matrix[:, i] for i, col in enumerate(columns)}


def object_column(values: Any) -> np.ndarray:
    """A Series' (or array's) values as a 1-D object array (nulls as pandas gives them)."""
    if isinstance(values, pd.Series):
        values = values.array
    return np.asarray(values, dtype=object)


def is_null(value: Any) -> bool:
    """``pd.isna`` of one scalar, without its cost for text (never null)."""
    return not isinstance(value, str) and bool(pd.isna(value))


def codes_by_race(race_id: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """Integer code per row of its race, in order of first appearance, and the race count.

    ``racecast.data.races.race_codes`` (``pd.factorize``), with the common serving case
    (a few rows of one race) answered without it.
    """
    if 0 < len(race_id) <= SMALL:
        first = race_id[0]
        if not is_null(first) and all(r == first for r in race_id.tolist()):
            return np.zeros(len(race_id), dtype=np.int64), 1
    codes, races = race_codes(race_id, what)
    return codes, len(races)


def group_means(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Per row and column of ``values`` (rows x columns): the mean over the row's group,
    NaN skipped (NaN for an all-NaN group).

    The sums add the rows in row order from 0.0 (as ``np.bincount`` does; ``cumsum`` adds
    in row order too, and ``+ 0.0`` makes a sum of negative zeros +0.0 as bincount's
    start does), so a race alone and the same race inside a bulk build get the same bits.
    """
    known = ~np.isnan(values)
    filled = np.where(known, values, 0.0)
    if len(values) <= SMALL:
        sums = np.zeros((n_groups, values.shape[1]))
        counts = np.zeros((n_groups, values.shape[1]))
        for group in range(n_groups):
            rows = codes == group if n_groups > 1 else slice(None)
            if n_groups == 1 or rows.any():
                sums[group] = filled[rows].cumsum(axis=0)[-1] + 0.0
                counts[group] = known[rows].sum(axis=0)
    else:
        columns = range(values.shape[1])
        sums = np.column_stack(
            [np.bincount(codes, weights=filled[:, j], minlength=n_groups) for j in columns]
        )
        counts = np.column_stack(
            [np.bincount(codes, weights=known[:, j] * 1.0, minlength=n_groups) for j in columns]
        )
    means = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=means, where=counts > 0)
    return means[codes]


def group_ranks(values: np.ndarray, codes: np.ndarray, *, ascending: bool) -> np.ndarray:
    """Per column of ``values`` (rows x columns): the rank within the row's group, ties
    share the lowest rank (``method="min"``), NaN unranked.

    A few rows: 1 + the number of rows of the group that rank strictly better (one
    broadcast comparison for every column); many: a sort per column.
    """
    if len(values) <= SMALL:
        other, this = values[None, :, :], values[:, None, :]
        better = other < this if ascending else other > this
        better &= (codes[None, :] == codes[:, None])[:, :, None]
        ranks = better.sum(axis=1).astype(np.float64) + 1.0
        ranks[np.isnan(values)] = np.nan
        return ranks
    return np.column_stack(
        [_rank_sorted(values[:, j], codes, ascending) for j in range(values.shape[1])]
    )


def _rank_sorted(values: np.ndarray, codes: np.ndarray, ascending: bool) -> np.ndarray:
    """:func:`group_ranks` of one column by sorting (group, value)."""
    ranks = np.full(len(values), np.nan)
    rows = np.flatnonzero(~np.isnan(values))
    if rows.size == 0:
        return ranks
    key = values[rows] if ascending else -values[rows]
    group = codes[rows]
    order = np.lexsort((key, group))
    g, k = group[order], key[order]
    position = np.arange(order.size)
    new_group = np.ones(order.size, dtype=bool)
    new_group[1:] = g[1:] != g[:-1]
    new_tie = new_group.copy()
    new_tie[1:] |= k[1:] != k[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, position, 0))
    tie_start = np.maximum.accumulate(np.where(new_tie, position, 0))
    ranks[rows[order]] = (tie_start - group_start + 1).astype(np.float64)
    return ranks


def classify(values: np.ndarray, classifier: Callable[[Any], Any]) -> np.ndarray:
    """Apply a scalar classifier to each DISTINCT value once (null -> ``classifier(None)``).

    Args:
        values: Object array (nulls as None, NaN or ``pd.NA``).
        classifier: Cached function of one value.

    Returns:
        An object array of the classifier's answers.
    """
    if len(values) <= SMALL:
        # a race or two (serving): the cached classifier per value beats factorizing
        return np.asarray(
            [classifier(None if is_null(v) else v) for v in values.tolist()] + [None],
            dtype=object,
        )[:-1]
    codes, uniques = pd.factorize(values, sort=False, use_na_sentinel=True)
    table = [classifier(u) for u in uniques]
    table.append(classifier(None))
    return np.asarray(table, dtype=object)[codes]
