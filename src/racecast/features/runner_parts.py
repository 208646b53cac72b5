"""Per-runner pieces of the fundamental features: arrays in, arrays out.

What :mod:`racecast.features.transform` reads from a runner's racecard text and state text
(the record at this course, the gear, the sex), the slots of this race's conditions
(distance band, going, surface, draw range) and the shrunk win rates. Each works on numpy
arrays: a scalar path for a few runners (serving), a vectorised one for many (training),
both giving the same numbers (``tests/features/test_transform_paths.py``).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np
import pandas as pd

from racecast.features.columnar import SMALL, classify, is_null, object_column
from racecast.features.columns import category_codes, going_group, surface_slot
from racecast.features.specs import DISTANCE_BAND_EDGES_M, GOING_GROUPS, SURFACE_SLOTS

__all__ = [
    "distance_slot",
    "draw_slot",
    "gear_features",
    "going_slot_code",
    "normalised_gear",
    "record_at_course",
    "record_at_course_small",
    "sex_flag_pair",
    "shrunk",
    "slot_codes",
    "surface_slot_code",
]

FEMALE_SEXES = frozenset({"mare", "filly", "m", "f"})
ENTIRE_SEXES = frozenset({"horse", "colt", "rig", "stallion", "entire", "h", "c", "r"})
KNOWN_SEXES = FEMALE_SEXES | ENTIRE_SEXES | {"gelding", "g"}
NO_GEAR = frozenset({"", "-", "--", "none", "nil", "no"})



def record_at_course(record: Any, course: Any) -> tuple[np.ndarray, np.ndarray]:
    """Runs and wins at this course from ``h_course_record`` text (NaN if no record).

    The record is ``"ST=5/1;HV=3/0"``; the entry of this course is found with numpy's
    element-wise string partition (no row loop). A known record without this course, or
    a malformed entry, counts 0 runs and 0 wins. ``record`` and ``course``: Series or
    object arrays.
    """
    if len(record) <= SMALL:
        return record_at_course_small(record, course)
    record = pd.Series(object_column(record), dtype=object)
    course = pd.Series(object_column(course), dtype=object)
    known = record.notna().to_numpy(bool)
    here = course.astype("string").str.strip()
    course_known = here.notna().to_numpy(bool)
    text = np.char.add(";", record.astype("string").fillna("").to_numpy(dtype=str))
    key = np.char.add(np.char.add(";", here.fillna("").to_numpy(dtype=str)), "=")
    entry = np.char.partition(np.char.partition(text, key)[:, 2], ";")[:, 0]
    parts = np.char.partition(entry, "/")
    runs = pd.to_numeric(pd.Series(parts[:, 0]), errors="coerce").to_numpy(np.float64)
    wins = pd.to_numeric(pd.Series(parts[:, 2]), errors="coerce").to_numpy(np.float64)
    valid = ~np.isnan(runs) & ~np.isnan(wins) & course_known
    runs = np.where(valid, runs, 0.0)
    wins = np.where(valid, wins, 0.0)
    return np.where(known, runs, np.nan), np.where(known, wins, np.nan)


def record_at_course_small(record: Any, course: Any) -> tuple[np.ndarray, np.ndarray]:
    """``record_at_course`` for a few runners: the same partitions with ``str`` methods."""
    runs: list[float] = []
    wins: list[float] = []
    for text, here in zip(
        object_column(record).tolist(), object_column(course).tolist(), strict=True
    ):
        if is_null(text):
            runs.append(np.nan)
            wins.append(np.nan)
            continue
        number_runs = number_wins = np.nan
        if not is_null(here):
            tail = f";{text}".partition(f";{str(here).strip()}=")[2]
            entry_runs, _, entry_wins = tail.partition(";")[0].partition("/")
            number_runs, number_wins = _to_number(entry_runs), _to_number(entry_wins)
        valid = number_runs == number_runs and number_wins == number_wins  # neither NaN
        runs.append(number_runs if valid else 0.0)
        wins.append(number_wins if valid else 0.0)
    return np.asarray(runs, dtype=np.float64), np.asarray(wins, dtype=np.float64)


def _to_number(text: str) -> float:
    """``float(text)``, NaN when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return np.nan


@functools.lru_cache(maxsize=4096)
def normalised_gear(gear: str | None) -> str | None:
    """Upper-case gear without spaces; every 'no gear' spelling becomes ''."""
    if gear is None or gear is pd.NA or (isinstance(gear, float) and np.isnan(gear)):
        return None
    norm = re.sub(r"\s+", "", str(gear).upper())
    return "" if norm.lower() in NO_GEAR else norm


def gear_features(
    gear_now: np.ndarray, gear_last: np.ndarray, debut: np.ndarray
) -> dict[str, np.ndarray]:
    """``first_time_gear`` (gear now, none last run) and ``gear_changed`` (0/1, NaN if unknown)."""
    now = classify(gear_now, normalised_gear)
    last = classify(gear_last, normalised_gear)
    now_known = np.not_equal(now, None)
    last_known = np.not_equal(last, None)
    known = now_known & last_known & ~debut
    first = (np.not_equal(now, "") & np.equal(last, "")).astype(np.float64)
    changed = np.not_equal(now, last).astype(np.float64)
    return {
        "first_time_gear": np.where(known, first, np.nan),
        "gear_changed": np.where(known, changed, np.nan),
    }


@functools.lru_cache(maxsize=256)
def sex_flag_pair(sex: str | None) -> tuple[float, float]:
    """``(female, entire)`` flags of one sex description (NaN, NaN when unknown)."""
    if sex is None or sex is pd.NA or (isinstance(sex, float) and np.isnan(sex)):
        return (np.nan, np.nan)
    norm = str(sex).lower().strip()
    if norm not in KNOWN_SEXES:
        return (np.nan, np.nan)
    return (float(norm in FEMALE_SEXES), float(norm in ENTIRE_SEXES))


@functools.lru_cache(maxsize=1024)
def going_slot_code(going: str | None) -> int:
    """Slot of a going description in ``GOING_GROUPS`` (-1 for null or unrecognised)."""
    group = going_group(pd.Series([going], dtype="string"))
    return int(category_codes(group, GOING_GROUPS)[0])


@functools.lru_cache(maxsize=256)
def surface_slot_code(surface: str | None) -> int:
    """Slot of a surface in ``SURFACE_SLOTS`` (-1 for null or unknown)."""
    slot = surface_slot(pd.Series([surface], dtype="string"))
    return int(category_codes(slot, SURFACE_SLOTS)[0])


def slot_codes(values: np.ndarray, classifier: Any) -> np.ndarray:
    """Integer slots of a categorical context column, classified once per distinct value."""
    return classify(values, classifier).astype(np.int64)


def distance_slot(distance_m: np.ndarray) -> np.ndarray:
    """Slot in ``DISTANCE_BANDS`` (bands closed on the right, like ``distance_band``)."""
    edges = np.asarray(DISTANCE_BAND_EDGES_M, dtype=np.float64)
    slot = np.searchsorted(edges, distance_m, side="left")
    return np.where(np.isnan(distance_m), -1, slot)


def draw_slot(draw: np.ndarray, n_runners: np.ndarray) -> np.ndarray:
    """Slot in ``DRAW_RANGES``: ``clip(ceil(3 * draw / field_size), 1, 3) - 1`` (the
    caller ignores invalid and divide warnings)."""
    third = np.ceil(3.0 * draw / np.where(n_runners > 0, n_runners, np.nan))
    third = np.minimum(np.maximum(third, 1.0), 3.0)  # np.clip, without its overhead
    return np.where(np.isnan(third), -1, third - 1)


def shrunk(wins: np.ndarray, runs: np.ndarray, k: float, prior: float) -> np.ndarray:
    """``(wins + k * prior) / (runs + k)``; NaN where either input is NaN."""
    return (wins + k * prior) / (runs + k)
