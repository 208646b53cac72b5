"""Per-race grouping: the one mapping of rows to their race.

Every per-race computation (normalisation, sums, ranks, race-level metrics, the models'
contiguous race layout) starts from :func:`race_codes`: a 0-based code per row, races
numbered in order of first appearance, so already-grouped input keeps its order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["race_code_array", "race_codes"]


def race_codes(race_ids: Any, what: str = "race ids") -> tuple[np.ndarray, pd.Index]:
    """Code each row by its race.

    Args:
        race_ids: The race of each row (Series, Index or array).
        what: How the error names ``race_ids`` (e.g. ``"column 'race_id'"``).

    Returns:
        ``(codes, races)``: an int64 code per row (0 .. n_races - 1, in order of first
        appearance) and the race ids the codes index.

    Raises:
        ValueError: If a race id is missing.
    """
    codes, races = _coded(race_ids, what)
    return codes, pd.Index(races)


def race_code_array(race_ids: Any, what: str = "race ids") -> np.ndarray:
    """The codes of :func:`race_codes` alone, for callers that never read the races
    (building their ``pd.Index`` costs ~15 us, as much as coding a request's races)."""
    return _coded(race_ids, what)[0]


def _coded(race_ids: Any, what: str) -> tuple[np.ndarray, Any]:
    """``race_codes``' int64 codes and the distinct race ids as an array."""
    if (
        type(race_ids) is np.ndarray
        and race_ids.dtype == object
        and race_ids.ndim == 1
        and race_ids.shape[0] <= _SMALL_ROWS
    ):
        small = _small_race_codes(race_ids.tolist())
        if small is not None:
            return small
    codes, uniques = pd.factorize(race_ids, sort=False, use_na_sentinel=True)
    missing = int((codes < 0).sum())
    if missing:
        raise ValueError(f"{what} has {missing} missing race ids")
    return codes.astype(np.int64, copy=False), uniques


#: Rows up to which an object array of race ids (a request's races) is coded in Python.
_SMALL_ROWS = 256


def _small_race_codes(values: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """``race_codes`` of a few ``str`` race ids by a dict (pandas' factorize costs ~30 us
    a call); None when any id is not a ``str`` (missing values included)."""
    seen: dict[str, int] = {}
    codes = []
    for value in values:
        if type(value) is not str:
            return None
        codes.append(seen.setdefault(value, len(seen)))
    return np.array(codes, dtype=np.int64), np.array(list(seen), dtype=object)
