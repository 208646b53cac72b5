"""Walk-forward splits: the holdout cut at a whole race day and expanding-window folds.

Implements the "Split" section of ``docs/evaluation-protocol.md``:

* races (with at least one runner) are sorted by ``off_time``; the holdout starts with
  the race day of the race at 0-based index ``floor(0.8 * n_races)``, that whole day
  included, and everything before that day is training;
* inside training, out-of-fold predictions come from expanding-window folds in time
  order: each fold validates on a block of later race days and trains on every race
  day strictly before the block.

A *race day* is a calendar date. By default it is the date of ``off_time`` in UTC;
pass ``tz`` to take the local date of another time zone, or ``day_column`` to use a
date column already in the frame (e.g. ``meeting_date``). Hong Kong meetings run
12:30-23:00 local time (04:30-15:00 UTC), so the UTC date and the local date agree.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["TIME_ORDER", "Split", "holdout_split", "compute_race_days", "time_folds"]

#: Row order of every prediction frame, in training and scoring (stable sort; ties keep
#: their input order).
TIME_ORDER = ["off_time", "race_id", "horse_id"]


def _race_mask(frame: pd.DataFrame, race_col: str, race_ids: pd.Index) -> pd.Series:
    """Boolean mask of the rows of ``frame`` whose ``race_col`` is in ``race_ids``."""
    if race_col not in frame.columns:
        raise KeyError(f"column '{race_col}' (race id) is missing from the frame")
    return frame[race_col].isin(race_ids)


@dataclass(frozen=True)
class Split:
    """Race ids of the training and holdout sets.

    Attributes:
        train_race_ids: Training race ids, in time order.
        holdout_race_ids: Holdout race ids, in time order.
        holdout_start: The first race day of the holdout (a calendar date).
    """

    train_race_ids: pd.Index
    holdout_race_ids: pd.Index
    holdout_start: pd.Timestamp

    def holdout_mask(self, frame: pd.DataFrame, race_col: str = "race_id") -> pd.Series:
        """Boolean mask of the rows of ``frame`` that belong to holdout races.

        Args:
            frame: Any frame with a race id column.
            race_col: Name of the race id column.

        Returns:
            A boolean Series aligned to ``frame.index``.

        Raises:
            KeyError: If ``race_col`` is not a column of ``frame``.
        """
        return _race_mask(frame, race_col, self.holdout_race_ids)

    def train_mask(self, frame: pd.DataFrame, race_col: str = "race_id") -> pd.Series:
        """Boolean mask of the rows of ``frame`` that belong to training races.

        Args:
            frame: Any frame with a race id column.
            race_col: Name of the race id column.

        Returns:
            A boolean Series aligned to ``frame.index``.

        Raises:
            KeyError: If ``race_col`` is not a column of ``frame``.
        """
        return _race_mask(frame, race_col, self.train_race_ids)


def _as_utc(times: pd.Series, time_col: str) -> pd.Series:
    """Return ``times`` as tz-aware UTC datetimes (naive values are read as UTC)."""
    if not pd.api.types.is_datetime64_any_dtype(times):
        raise TypeError(f"column '{time_col}' must be a datetime column, got dtype {times.dtype}")
    if times.isna().any():
        raise ValueError(f"column '{time_col}' has {int(times.isna().sum())} missing values")
    if times.dt.tz is None:
        return times.dt.tz_localize("UTC")
    return times.dt.tz_convert("UTC")


def compute_race_days(
    frame: pd.DataFrame,
    *,
    time_col: str = "off_time",
    day_column: str | None = None,
    tz: str = "UTC",
) -> pd.Series:
    """Race day (calendar date, as a midnight Timestamp without time zone) of every row.

    Args:
        frame: Runner- or race-level frame.
        time_col: Off-time column (UTC; naive values are read as UTC).
        day_column: Optional column already holding the race day; it wins over ``tz``.
        tz: Time zone whose local date defines the race day when ``day_column`` is None.

    Returns:
        A ``datetime64[ns]`` Series of normalised dates aligned to ``frame.index``.

    Raises:
        KeyError: If a needed column is missing.
        ValueError: If a day or off-time value is missing.
    """
    if day_column is not None:
        if day_column not in frame.columns:
            raise KeyError(f"column '{day_column}' (race day) is missing from the frame")
        days = pd.to_datetime(frame[day_column])
        if days.isna().any():
            raise ValueError(f"column '{day_column}' has {int(days.isna().sum())} missing values")
        if days.dt.tz is not None:
            days = days.dt.tz_localize(None)
        return days.dt.normalize().rename("race_day")
    if time_col not in frame.columns:
        raise KeyError(f"column '{time_col}' (off time) is missing from the frame")
    local = _as_utc(frame[time_col], time_col).dt.tz_convert(tz)
    return local.dt.tz_localize(None).dt.normalize().rename("race_day")


def _race_table(
    frame: pd.DataFrame, race_col: str, time_col: str, day_column: str | None, tz: str
) -> pd.DataFrame:
    """One row per race: off time and race day, sorted by (off time, race id)."""
    for col in (race_col, time_col):
        if col not in frame.columns:
            raise KeyError(f"column '{col}' is missing from the frame")
    if frame[race_col].isna().any():
        raise ValueError(f"column '{race_col}' has missing race ids")
    runners = pd.DataFrame(
        {
            "race_id": frame[race_col].to_numpy(),
            "off_time": _as_utc(frame[time_col], time_col).to_numpy(),
            "race_day": compute_race_days(
                frame, time_col=time_col, day_column=day_column, tz=tz
            ).to_numpy(),
        }
    )
    grouped = runners.groupby("race_id", sort=False)
    inconsistent = grouped[["off_time", "race_day"]].nunique().gt(1).any(axis=1)
    if inconsistent.any():
        bad = inconsistent[inconsistent].index[:5].tolist()
        raise ValueError(
            f"columns '{time_col}'/race day are not constant within a race (e.g. races {bad})"
        )
    races = grouped[["off_time", "race_day"]].first().reset_index()
    races = races.sort_values(["off_time", "race_id"], kind="mergesort").reset_index(drop=True)
    if not races["race_day"].is_monotonic_increasing:
        raise ValueError(
            "race days are not in off-time order: check the day column or the time zone"
        )
    return races


def holdout_split(
    frame: pd.DataFrame,
    holdout_fraction: float = 0.2,
    *,
    race_col: str = "race_id",
    time_col: str = "off_time",
    day_column: str | None = None,
    tz: str = "UTC",
) -> Split:
    """Split races into training and a holdout that starts on a whole race day.

    Races (every race id present in the runner-level ``frame``, i.e. with at least one
    runner) are sorted by ``(off_time, race_id)``. With ``n`` races the cut index is
    ``k = floor((1 - holdout_fraction) * n)``; the holdout is every race on or after the
    race day of race ``k`` (that whole day included), training is everything before.

    Args:
        frame: Runner-level frame.
        holdout_fraction: Nominal share of races in the holdout, in (0, 1).
        race_col: Race id column.
        time_col: Off-time column (UTC).
        day_column: Optional race-day column (see :func:`compute_race_days`).
        tz: Time zone of the race day when ``day_column`` is None.

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: If the fraction is out of range, the frame is empty, or the cut
            leaves training or the holdout empty.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    races = _race_table(frame, race_col, time_col, day_column, tz)
    n_races = len(races)
    if n_races == 0:
        raise ValueError(f"no races in the frame (column '{race_col}' is empty)")
    # round() guards floor() against float noise such as 0.8 * 5 = 3.9999999999999996.
    cut = math.floor(round((1.0 - holdout_fraction) * n_races, 9))
    if cut >= n_races:
        raise ValueError(f"holdout_fraction {holdout_fraction} leaves no holdout race of {n_races}")
    holdout_start = races["race_day"].iloc[cut]
    in_holdout = races["race_day"] >= holdout_start
    if in_holdout.all():
        raise ValueError(
            f"the holdout starts on the first race day ({holdout_start.date()}): no training races"
        )
    split = Split(
        train_race_ids=pd.Index(races.loc[~in_holdout, "race_id"], name=race_col),
        holdout_race_ids=pd.Index(races.loc[in_holdout, "race_id"], name=race_col),
        holdout_start=holdout_start,
    )
    logger.info(
        "holdout from %s: %d of %d races (training %d)",
        holdout_start.date(),
        len(split.holdout_race_ids),
        n_races,
        len(split.train_race_ids),
    )
    return split


def time_folds(
    race_days: pd.Series, n_folds: int, min_train_days: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds by race day, in time order.

    The distinct days after the first ``min_train_days`` are cut into ``n_folds``
    contiguous blocks (as equal as possible, earlier blocks one day longer when the
    days do not divide evenly). Fold ``j`` validates on the rows of block ``j`` and
    trains on every row whose day is strictly earlier than the block's first day.

    Args:
        race_days: Race day of every row (runner- or race-level), any sortable dtype.
        n_folds: Number of folds (>= 1).
        min_train_days: Distinct days always in training, before the first block (>= 1).

    Returns:
        ``[(train_idx, valid_idx), ...]``: 0-based positions into ``race_days``, folds in
        time order.

    Raises:
        ValueError: If an argument is out of range, a day is missing, or there are
            fewer than ``min_train_days + n_folds`` distinct days.
        AssertionError: If a fold would train on a day not strictly before its
            validation days (cannot happen for sortable days; checked regardless).
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    if min_train_days < 1:
        raise ValueError(f"min_train_days must be >= 1, got {min_train_days}")
    if race_days.isna().any():
        raise ValueError(f"race_days has {int(race_days.isna().sum())} missing values")
    codes, uniques = pd.factorize(race_days, sort=True)
    n_days = len(uniques)
    if n_days < min_train_days + n_folds:
        raise ValueError(
            f"race_days has {n_days} distinct days: need at least "
            f"min_train_days + n_folds = {min_train_days + n_folds}"
        )
    blocks = np.array_split(np.arange(min_train_days, n_days), n_folds)
    folds = []
    for block in blocks:
        train_idx = np.flatnonzero(codes < block[0])
        valid_idx = np.flatnonzero((codes >= block[0]) & (codes <= block[-1]))
        if codes[train_idx].max() >= codes[valid_idx].min():
            raise AssertionError("a fold trains on a day that is not before its validation days")
        folds.append((train_idx, valid_idx))
    return folds
