"""Frame <-> array hand-offs without pandas' per-call costs: the one home of pandas internals.

Serving one race spends more in pandas' fixed cost per call than in arithmetic. The
hand-offs therefore read or build a frame's blocks directly: :func:`float64_matrix`
(feature frame -> the bundle's input matrix), :func:`column_arrays` and
:func:`float64_values` (a racecard frame's columns -> the transform's arrays) and
:func:`frame_from_columns` (the transform's arrays -> its output frame), and the
racecard parser's typed columns and entity frame (:func:`string_array`, :func:`utc_array`,
:func:`frame_from_arrays`), and a column's exact hashable image (:func:`values_keys`: a kept
race's key). They use pandas 2.x internals (the ``BlockManager``,
``make_block``, ``BlockPlacement``, the masked arrays' data and mask), so they live here
and only here, gated by :func:`internals_supported`: under another pandas release than
:data:`PANDAS_INTERNALS` they take pandas' public path, which gives the same frame and
matrix, only slower. ``tests/inference/test_frames.py`` and
``tests/features/test_columnar.py`` compare both paths with pandas' own construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "PANDAS_INTERNALS",
    "FrameLayout",
    "column_arrays",
    "float64_matrix",
    "float64_values",
    "frame_from_arrays",
    "frame_from_columns",
    "internals_supported",
    "string_array",
    "utc_array",
    "values_keys",
]

#: The pandas release (major.minor) whose internals this module was written and tested for
#: (pinned in constraints.txt).
PANDAS_INTERNALS = "2.3"

#: numpy dtype kinds read directly: float, signed and unsigned int, bool.
_NUMERIC_KINDS = frozenset("fiub")
_UTC = pd.DatetimeTZDtype("ns", "UTC")
_STRING = pd.StringDtype("python")
#: 1-D extension array types whose block is an ``ExtensionBlock`` of the array itself.
_ONE_D_ARRAYS = frozenset(
    {pd.arrays.IntegerArray, pd.arrays.BooleanArray, pd.arrays.FloatingArray, pd.arrays.StringArray}
)


def internals_supported(version: str | None = None) -> bool:
    """Whether ``version`` (default: the installed pandas) is :data:`PANDAS_INTERNALS`."""
    found = (version or pd.__version__).split(".")
    return ".".join(found[:2]) == PANDAS_INTERNALS


def float64_matrix(frame: pd.DataFrame, columns: list[str] | pd.Index) -> np.ndarray | None:
    """``frame[columns].to_numpy(np.float64)`` read straight from the frame's numpy blocks.

    ``frame[columns]`` builds a new frame (an indexer, a take of every block, a new
    manager: ~0.4 ms for a request's ~100 columns) only to be turned into a matrix. When
    every asked column is a plain numpy column of numbers or bools (float, int, uint,
    bool: pandas' ``to_numpy`` casts them with numpy as well), the matrix is gathered from
    the blocks that hold them, one fancy index and cast per block: the same values, bit
    for bit.

    Args:
        frame: Any DataFrame.
        columns: Column names, in the matrix's order (an object ``pd.Index`` of them is
            used as it is: a caller asking for the same columns keeps one).

    Returns:
        An (n_rows, len(columns)) C-ordered float64 array, or None when a column is
        missing, a name is not unique, a column is anything else (a nullable, string,
        time or object column) or pandas is not :data:`PANDAS_INTERNALS`: the caller then
        takes pandas' own path, with its own conversions, checks and errors.
    """
    if len(columns) == 0 or not frame.columns.is_unique or not internals_supported():
        return None
    wanted = columns if isinstance(columns, pd.Index) else pd.Index(columns, dtype=object)
    positions = frame.columns.get_indexer(wanted)
    if (positions < 0).any():
        return None
    manager = frame._mgr  # pandas' BlockManager: blknos / blklocs map a column to its block
    block_of = manager.blknos[positions]
    row_in_block = manager.blklocs[positions]
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for number in np.unique(block_of).tolist():
        values = manager.blocks[number].values
        if not isinstance(values, np.ndarray) or values.dtype.kind not in _NUMERIC_KINDS:
            return None
        at = np.flatnonzero(block_of == number)
        out[:, at] = values[row_in_block[at]].T
    return out


def column_arrays(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """Each column's values without a Series per column: a 1-D numpy array for a numpy
    column (a read-only use: it may be a view of the frame's block), the extension array
    otherwise (``frame[c].array``).

    ``frame[c]`` builds (and caches) a Series per column (~4 us each: more than the
    arithmetic on a race's column); the block manager hands out the same arrays directly.

    Args:
        frame: Any DataFrame.
        columns: Column names (each present once).

    Returns:
        Column name -> its values, as described.

    Raises:
        KeyError: If a column is missing.
    """
    position = {name: i for i, name in enumerate(frame.columns.tolist())}
    if len(position) != frame.shape[1] or not internals_supported():
        position = {}  # duplicated names (or another pandas): pandas' own lookup
    if any(col not in position for col in columns):
        out = {}
        for col in columns:
            series = frame[col]
            out[col] = series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array
        return out
    manager = frame._mgr  # pandas' BlockManager: a column is row blkloc of block blkno
    blocks, blknos, blklocs = manager.blocks, manager.blknos.tolist(), manager.blklocs.tolist()
    out = {}
    for col in columns:
        i = position[col]
        values = blocks[blknos[i]].values
        out[col] = values[blklocs[i]] if values.ndim == 2 else values
    return out


def values_keys(columns: Sequence[Any], at: np.ndarray | None = None) -> tuple:
    """An exact, hashable image of columns' values (those at positions ``at``): equal
    images mean equal values and dtypes, column by column.

    Numbers and times are compared by their bytes (nullable arrays by data and mask, the
    data under the mask zeroed), text and anything else as Python values (a null that is
    not a singleton, such as a float NaN in an object column, never equals another: the
    images then differ, never the other way round; ``pd.NA`` is held as a marker, so
    images compare without error). A string or nullable column's image
    is read from its arrays (a fifth of the public conversion's cost) under
    :data:`PANDAS_INTERNALS`, through ``tolist`` otherwise.

    Args:
        columns: Columns' values (:func:`column_arrays`).
        at: Row positions to take (None: every row).

    Returns:
        One ``(dtype name, ...)`` per column: bytes for numbers and times, a tuple of
        values otherwise.
    """
    internals = internals_supported()
    if internals:
        from pandas.core.arrays.masked import BaseMaskedArray
    out = []
    for values in columns:
        dtype = str(values.dtype)
        if isinstance(values, pd.arrays.DatetimeArray):
            values = values.asi8
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiubmM":
            out.append((dtype, (values if at is None else values[at]).tobytes()))
        elif internals and isinstance(values, BaseMaskedArray):
            data, mask = values._data, values._mask
            if at is not None:
                data, mask = data[at], mask[at]
            out.append((dtype, np.where(mask, 0, data).tobytes(), mask.tobytes()))
        elif internals and isinstance(values, pd.arrays.StringArray):
            data = values._ndarray if at is None else values._ndarray[at]
            out.append((dtype, tuple(v if v.__class__ is str else _NA_IMAGE for v in data.tolist())))
        else:
            data = np.asarray(values, dtype=object)
            data = (data if at is None else data[at]).tolist()
            out.append((dtype, tuple(_NA_IMAGE if v is pd.NA else v for v in data)))
    return tuple(out)


#: ``pd.NA`` in a :func:`values_keys` image (``pd.NA == x`` is NA, which has no truth value:
#: an image holding it could not be compared with another).
_NA_IMAGE = ("pandas.NA",)


def float64_values(values: Any) -> np.ndarray | None:
    """A new float64 array of a numeric column's values (nulls as NaN), or None.

    A numpy column of numbers or bools is cast with numpy; pandas' nullable ``Int64``,
    ``Float64`` and ``boolean`` arrays are read from their data and mask (what their
    ``to_numpy(np.float64, na_value=np.nan)`` does, at a fifth of its cost for a race).

    Args:
        values: A column's values (:func:`column_arrays`).

    Returns:
        The float64 values, or None for anything else (text, times, objects) or under a
        pandas other than :data:`PANDAS_INTERNALS`: the caller then converts with pandas.
    """
    if isinstance(values, np.ndarray):
        return values.astype(np.float64) if values.dtype.kind in _NUMERIC_KINDS else None
    if not internals_supported():
        return None
    from pandas.core.arrays.masked import BaseMaskedArray

    if not isinstance(values, BaseMaskedArray) or values._data.dtype.kind not in _NUMERIC_KINDS:
        return None
    out = values._data.astype(np.float64)
    out[values._mask] = np.nan
    return out


@dataclass(frozen=True)
class FrameLayout:
    """Where :func:`frame_from_columns` puts each column (built once per column list).

    The placements are pandas' ``BlockPlacement`` of each block (None when
    :func:`internals_supported` is false: the public path needs only the names).
    """

    columns: pd.Index
    keys: tuple[str, ...]
    floats: tuple[str, ...]
    flag: str
    float_positions: Any
    flag_position: Any
    key_positions: dict[str, Any] | None

    @classmethod
    def of(cls, keys: Sequence[str], floats: Sequence[str], flag: str, order: Sequence[str]):
        """The layout of ``order`` (every name once) with these key, float and flag columns."""
        names = dict(columns=pd.Index(list(order)), keys=tuple(keys), floats=tuple(floats), flag=flag)
        if not internals_supported():  # the public path needs only the names
            return cls(**names, float_positions=None, flag_position=None, key_positions=None)
        from pandas._libs.internals import BlockPlacement

        position = {name: i for i, name in enumerate(order)}

        def place(columns: Sequence[str]) -> Any:
            return BlockPlacement(np.asarray([position[c] for c in columns], dtype=np.intp))

        return cls(
            **names,
            float_positions=place(floats),
            flag_position=place([flag]),
            key_positions={c: place([c]) for c in keys},
        )


def frame_from_columns(
    layout: FrameLayout,
    index: pd.Index,
    keys: dict[str, Any],
    values: dict[str, np.ndarray] | np.ndarray,
    flag: np.ndarray,
) -> pd.DataFrame:
    """One frame from key columns (any arrays), float64 columns and one int64 column.

    The float columns are one 2-D block and every block is placed directly (pandas'
    pseudo-public ``pandas.core.internals.api.make_block``, then a ``BlockManager`` and
    ``DataFrame._from_mgr``): building the frame column by column or by concatenating
    frames costs several times the transform of one race. Under another pandas release
    the frame is built with pandas' public constructors (:func:`_public_frame`).

    Args:
        layout: Where each column goes (:meth:`FrameLayout.of`).
        index: The frame's index.
        keys: Key column -> array (copied).
        values: Float column -> 1-D array (every one of ``layout.floats``), or one
            C-ordered float64 matrix with a row per float column in ``layout.floats``'
            order (taken as the frame's block: the caller hands it over).
        flag: The int64 column's values.

    Returns:
        The frame, consolidated: one float block, one int block, one block per key.
    """
    if layout.key_positions is None or not internals_supported():
        return _public_frame(layout, index, keys, values, flag)
    from pandas.core.internals import BlockManager
    from pandas.core.internals.blocks import new_block_2d

    matrix = _float_block(layout, index, values)
    flag_values = np.asarray(flag, dtype=np.int64).reshape(1, -1)
    blocks = [
        new_block_2d(matrix, placement=layout.float_positions),
        new_block_2d(flag_values, placement=layout.flag_position),
    ]
    blocks += [_block(keys[c].copy(), at) for c, at in layout.key_positions.items()]
    manager = BlockManager(tuple(blocks), [layout.columns.view(), index])
    return pd.DataFrame._from_mgr(manager, axes=manager.axes)


def _float_block(
    layout: FrameLayout, index: pd.Index, values: dict[str, np.ndarray] | np.ndarray
) -> np.ndarray:
    """The float columns as one (columns x rows) matrix."""
    if isinstance(values, np.ndarray):
        if values.shape != (len(layout.floats), len(index)) or values.dtype != np.float64:
            raise ValueError(
                f"values: a float64 matrix of {len(layout.floats)} x {len(index)} expected, "
                f"got {values.dtype} {values.shape}"
            )
        return values
    matrix = np.empty((len(layout.floats), len(index)), dtype=np.float64)
    for j, name in enumerate(layout.floats):
        matrix[j] = values[name]
    return matrix


def _public_frame(
    layout: FrameLayout,
    index: pd.Index,
    keys: dict[str, Any],
    values: dict[str, np.ndarray],
    flag: np.ndarray,
) -> pd.DataFrame:
    """:func:`frame_from_columns` with pandas' public constructors only."""
    matrix = _float_block(layout, index, values).T
    parts = [
        pd.DataFrame({c: pd.Series(keys[c].copy(), index=index) for c in layout.keys}, index=index),
        pd.DataFrame(matrix, columns=list(layout.floats), index=index),
        pd.DataFrame({layout.flag: np.asarray(flag, dtype=np.int64)}, index=index),
    ]
    frame = pd.concat(parts, axis=1)[list(layout.columns)]
    frame.columns = layout.columns.copy()
    return frame


def utc_array(ticks: np.ndarray) -> Any:
    """A ``datetime64[ns, UTC]`` array of int64 nanoseconds since the epoch (NaT's int: NaT).

    ``pd.array(ticks.view("datetime64[ns]")).tz_localize("UTC")`` (the public path, taken
    under another pandas release) costs ~30 us; the array is wrapped directly
    (``DatetimeArray._simple_new``): the same values and dtype.
    """
    values = np.asarray(ticks, dtype=np.int64).view("datetime64[ns]")
    if not internals_supported():
        return pd.array(values).tz_localize("UTC")
    from pandas.core.arrays import DatetimeArray

    return DatetimeArray._simple_new(values, dtype=_UTC)


def frame_from_arrays(columns: pd.Index, arrays: Sequence[Any], index: pd.Index) -> pd.DataFrame:
    """``pd.DataFrame(dict(zip(columns, arrays)), index=index, copy=False)``, built directly.

    One block per column (as that constructor lays them out), each wrapped in place:
    pandas' constructor sanitizes, infers and groups every array (~0.3 ms for an entity
    frame's 26 columns), which arrays of the right dtypes and length do not need. Under
    another pandas release it is that constructor.

    Args:
        columns: Column names (unique), in order.
        arrays: One 1-D numpy or extension array per column, each ``len(index)`` long
            (held, not copied).
        index: The frame's index.
    """
    if not internals_supported():
        return pd.DataFrame(dict(zip(columns, arrays, strict=True)), index=index, copy=False)
    from pandas._libs.internals import BlockPlacement
    from pandas.core.internals import BlockManager

    blocks = [_block(array, BlockPlacement(slice(i, i + 1))) for i, array in enumerate(arrays)]
    manager = BlockManager(tuple(blocks), [columns, index], verify_integrity=False)
    return pd.DataFrame._from_mgr(manager, axes=manager.axes)


def _block(array: Any, placement: Any) -> Any:
    """The block pandas makes of one column's 1-D array at ``placement``, without its
    dispatch (``make_block`` costs three times as much)."""
    from pandas.core.construction import extract_array
    from pandas.core.internals.blocks import ExtensionBlock, ensure_block_shape, new_block_2d

    if type(array) in _ONE_D_ARRAYS:
        return ExtensionBlock(array, ndim=2, placement=placement)
    values = ensure_block_shape(extract_array(array, extract_numpy=True), 2)
    return new_block_2d(values, placement=placement)


def string_array(values: Sequence[str | None]) -> Any:
    """``pd.array(values, dtype="string")`` of ``str`` values and None (missing: NA).

    ``pd.array`` (~15 us) and ``StringArray._from_sequence`` (~6 us) check and convert
    every value; values known to be ``str`` or None are wrapped directly (None becomes
    NA, as they make it). Under another pandas release it is ``pd.array``.
    """
    if not internals_supported():
        return pd.array(list(values), dtype=_STRING)
    from pandas._libs.arrays import NDArrayBacked
    from pandas.core.arrays.string_ import StringArray

    data = np.array([pd.NA if v is None else v for v in values], dtype=object)
    array = StringArray.__new__(StringArray)
    NDArrayBacked.__init__(array, data, _STRING)
    return array
