"""Plausibility rules: values the contract's types allow but no real race has.

One definition for every path that takes racecards in: batch ingestion quarantines the
records that break a rule (:func:`racecast.ingestion.validate.validate_and_split`), the
request path (:mod:`racecast.ingestion.request`, :func:`racecast.features.online.racecard_entity_rows`)
rejects them with the same message. The rules:

* odds (``odds_final``, ``odds_morning``) within ``[odds_min, odds_max]``;
* ``rating`` within ``[rating_min, rating_max]``;
* ``off_time`` on the meeting's date, give or take ``off_time_meeting_days`` (the date is
  local, the off time UTC: a day covers every time zone);
* ``off_time`` at most ``off_time_ahead_days`` after the reference time and at most
  ``off_time_behind_days`` before it. The reference is the request's ``as_of`` when
  given, else the current time.

Weights, ages and draws keep their ranges in the canonical schemas
(:mod:`racecast.data.schema`), which both paths already enforce.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Plausibility", "Violation", "implausible"]

#: Reason code of a quarantine row or request error that breaks a plausibility rule.
REASON = "implausible_value"


class Plausibility(BaseModel):
    """Plausible ranges (ingestion parameter ``ingestion.plausibility``, serving setting
    ``plausibility``; both default to these values)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    odds_min: float = Field(
        1.01, ge=1.0, description="Lowest decimal odds (a tote minimum dividend is 1.0)."
    )
    odds_max: float = Field(1000.0, gt=1.0, description="Highest decimal odds.")
    rating_min: float = Field(0.0, description="Lowest official rating.")
    rating_max: float = Field(200.0, description="Highest official rating.")
    off_time_meeting_days: float = Field(
        1.0, ge=0, description="Days an off time may lie from its meeting's date."
    )
    off_time_ahead_days: float = Field(
        400.0, gt=0, description="Days an off time may lie after the reference time."
    )
    off_time_behind_days: float = Field(
        36_525.0, gt=0, description="Days an off time may lie before the reference time."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Plausibility:
        if self.odds_min > self.odds_max:
            raise ValueError(f"odds_min {self.odds_min} is above odds_max {self.odds_max}")
        if self.rating_min > self.rating_max:
            raise ValueError(f"rating_min {self.rating_min} is above rating_max {self.rating_max}")
        return self


@dataclass(frozen=True)
class Violation:
    """One record that breaks a rule: ``table`` (races/runners), its row, field and why."""

    table: str
    row: int
    field: str
    detail: str


Columns = Mapping[str, Sequence[Any]] | pd.DataFrame
_NAT = int(np.iinfo(np.int64).min)


def _floats(table: Columns, name: str) -> np.ndarray:
    """A column as floats (null -> NaN): a DataFrame's column, or plain values."""
    if name not in table:
        return np.empty(0)
    column = table[name]
    if isinstance(column, pd.Series):
        return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.array(
        [np.nan if v is None or v is pd.NA else v for v in column], dtype=float, ndmin=1
    )


def _nanoseconds(table: Columns, name: str, date: bool = False) -> np.ndarray:
    """A column of aware times (or ``YYYY-MM-DD`` dates) as UTC nanoseconds (null -> NaT)."""
    if name not in table:
        return np.empty(0, dtype="datetime64[ns]")
    column = table[name]
    if isinstance(column, pd.Series):
        options = {"format": "%Y-%m-%d"} if date else {}
        stamps = pd.to_datetime(column, utc=True, errors="coerce", **options)
        return stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return np.array([_nanosecond(v, date) for v in column], dtype=np.int64).view("datetime64[ns]")


def _nanosecond(value: Any, date: bool) -> int:
    """One time (or date) as UTC nanoseconds; NaT's integer when null or unreadable."""
    if value is None or value is pd.NA or value is pd.NaT:
        return _NAT
    try:
        if date:
            return int(np.datetime64(dt.date.fromisoformat(value), "ns").astype(np.int64))
        return pd.Timestamp(value).value
    except (TypeError, ValueError):
        return _NAT


def _outside(
    values: np.ndarray, low: float, high: float, table: str, field: str
) -> list[Violation]:
    outside = (values < low) | (values > high)  # NaN (null) compares False: never outside
    if not outside.any():
        return []
    bad = np.flatnonzero(outside)
    return [
        Violation(
            table,
            int(i),
            field,
            f"{field} = {values[i]:g} is outside the plausible range [{low:g}, {high:g}]",
        )
        for i in bad
    ]


def _off_time_violations(races: Columns, rules: Plausibility, now: pd.Timestamp) -> list[Violation]:
    off = _nanoseconds(races, "off_time")
    if not off.size:
        return []
    dates = _nanoseconds(races, "meeting_date", date=True)
    if not dates.size:
        dates = np.full(off.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    day = np.timedelta64(86_400_000_000_000, "ns")
    meeting = np.timedelta64(int(rules.off_time_meeting_days * 86_400e9), "ns")
    utc_now = np.datetime64(now.value, "ns")  # an aware Timestamp's value: UTC nanoseconds
    latest = utc_now + np.timedelta64(int(rules.off_time_ahead_days * 86_400e9), "ns")
    earliest = utc_now - np.timedelta64(int(rules.off_time_behind_days * 86_400e9), "ns")
    known = ~np.isnat(off)
    away = known & ~np.isnat(dates) & ~((off >= dates - meeting) & (off < dates + day + meeting))
    ahead = known & ~away & (off > latest)
    behind = known & ~away & ~ahead & (off < earliest)
    out: list[Violation] = []
    for i in np.flatnonzero(away | ahead | behind):
        at = pd.Timestamp(off[i], tz="UTC").isoformat()
        if away[i]:
            detail = (
                f"off_time {at} is more than {rules.off_time_meeting_days:g} day(s) from the "
                f"meeting date {str(dates[i])[:10]}"
            )
        else:
            days = rules.off_time_ahead_days if ahead[i] else rules.off_time_behind_days
            side = "after" if ahead[i] else "before"
            detail = f"off_time {at} is more than {days:g} days {side} the reference time {now.isoformat()}"
        out.append(Violation("races", int(i), "off_time", detail))
    return out


def reference_time(as_of: Any = None) -> pd.Timestamp:
    """The rules' reference time: ``as_of`` (aware, as UTC) or the current time."""
    if as_of is None:
        return pd.Timestamp(dt.datetime.now(dt.UTC))
    stamp = pd.Timestamp(as_of)
    if stamp.tzinfo is None:
        raise ValueError(f"as_of {as_of!r} has no UTC offset")
    return stamp.tz_convert("UTC")


def implausible(
    races: Columns,
    runners: Columns,
    rules: Plausibility | None = None,
    as_of: Any = None,
) -> list[Violation]:
    """Every race and runner value that breaks a plausibility rule.

    Args:
        races: Race columns (a DataFrame or name -> values) with ``off_time`` (aware) and
            ``meeting_date`` (``YYYY-MM-DD``).
        runners: Runner columns with ``odds_final``, ``odds_morning``, ``rating``.
        rules: The ranges (defaults when None).
        as_of: Reference time of the off-time window (None: now).

    Returns:
        The violations, races first; rows are positions (0-based) in ``races`` / ``runners``.
    """
    rules = rules or Plausibility()
    now = reference_time(as_of)
    out = _off_time_violations(races, rules, now)
    for field in ("odds_final", "odds_morning"):
        out += _outside(_floats(runners, field), rules.odds_min, rules.odds_max, "runners", field)
    out += _outside(
        _floats(runners, "rating"), rules.rating_min, rules.rating_max, "runners", "rating"
    )
    return out
