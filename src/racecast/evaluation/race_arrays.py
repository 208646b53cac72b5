"""Validated per-race arrays of a runner-level frame: the bookkeeping under the metrics.

Race codes in order of first appearance, ``won`` and probability arrays checked
(0/1; probabilities in [0, 1] summing to 1 per race within :data:`PROB_SUM_ATOL`),
ranks within a race (ties by row order) and ``_Races``, the arrays of a frame whose
races each have exactly one winner. The input convention is that of
``racecast.evaluation.metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from racecast.data.races import race_codes

PROB_SUM_ATOL = 1e-6
"""Tolerance on ``|sum of probabilities in a race - 1|``."""


def _require_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    """Raise ``KeyError`` naming the first missing column."""
    for col in columns:
        if col not in frame.columns:
            raise KeyError(f"column '{col}' is missing from the frame")


def _race_codes(frame: pd.DataFrame, race_col: str) -> tuple[np.ndarray, pd.Index]:
    """0-based race codes in order of first appearance, and the race ids they index."""
    _require_columns(frame, [race_col])
    codes, races = race_codes(frame[race_col], f"column '{race_col}'")
    return codes, races.rename(race_col)


def _won_array(frame: pd.DataFrame, won_col: str) -> np.ndarray:
    """``won`` as a 0/1 integer array, validated."""
    _require_columns(frame, [won_col])
    won = frame[won_col].to_numpy(dtype=float, na_value=np.nan)
    if not np.isin(won, (0.0, 1.0)).all():
        raise ValueError(f"column '{won_col}' must hold only 0/1 (no missing values)")
    return won.astype(np.int64)


def _probability_array(
    frame: pd.DataFrame, prob_col: str, codes: np.ndarray, n_races: int
) -> np.ndarray:
    """Probabilities as a float array, checked to lie in [0, 1] and sum to 1 per race."""
    _require_columns(frame, [prob_col])
    p = frame[prob_col].to_numpy(dtype=float, na_value=np.nan)
    if not np.isfinite(p).all():
        raise ValueError(f"column '{prob_col}' has {int((~np.isfinite(p)).sum())} missing values")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"column '{prob_col}' has probabilities outside [0, 1]")
    sums = np.bincount(codes, weights=p, minlength=n_races)
    off = np.abs(sums - 1.0) > PROB_SUM_ATOL
    if off.any():
        raise ValueError(
            f"column '{prob_col}' does not sum to 1 within {int(off.sum())} races "
            f"(worst sum {sums[np.argmax(np.abs(sums - 1.0))]:.6f}); use normalise_per_race"
        )
    return p


def _ranks(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """1-based rank of each row within its race by ``values`` descending, ties by row order."""
    n = len(values)
    order = np.lexsort((np.arange(n), -values, codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    lengths = np.diff(np.r_[starts, n])
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - np.repeat(starts, lengths) + 1
    return ranks


@dataclass(frozen=True)
class _Races:
    """Validated arrays of a frame whose races each have exactly one winner."""

    codes: np.ndarray
    race_ids: pd.Index
    p: np.ndarray
    won: np.ndarray

    @property
    def n_races(self) -> int:
        return len(self.race_ids)

    @property
    def field_sizes(self) -> np.ndarray:
        return np.bincount(self.codes, minlength=self.n_races)

    @property
    def winner_p(self) -> np.ndarray:
        return self.p[self.won == 1]


def _check_single_winner(
    codes: np.ndarray, race_ids: pd.Index, won: np.ndarray, won_col: str
) -> None:
    """Raise ``ValueError`` unless every race has exactly one winner."""
    if len(race_ids) == 0:
        raise ValueError("no races in the frame")
    winners = np.bincount(codes, weights=won, minlength=len(race_ids))
    bad = np.flatnonzero(winners != 1)
    if len(bad):
        raise ValueError(
            f"column '{won_col}': {len(bad)} races do not have exactly one winner "
            f"(e.g. {race_ids[bad[:5]].tolist()}); filter with single_winner_races()"
        )


def _single_winner(frame: pd.DataFrame, prob_col: str, race_col: str, won_col: str) -> _Races:
    """Validate ``frame`` (one winner per race, probabilities normalised) into arrays."""
    codes, race_ids = _race_codes(frame, race_col)
    if len(race_ids) == 0:
        raise ValueError(f"no races in the frame (column '{race_col}' is empty)")
    won = _won_array(frame, won_col)
    _check_single_winner(codes, race_ids, won, won_col)
    p = _probability_array(frame, prob_col, codes, len(race_ids))
    return _Races(codes=codes, race_ids=race_ids, p=p, won=won)
