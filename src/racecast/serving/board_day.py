"""What the race-day board shows, read from the race-day folders (no HTTP, no scoring).

The day's racecards are the env's upcoming folder (``RaceDayPaths.upcoming``), files named
``YYYY-MM-DD<anything>.racecard.json``; without a chosen day the board shows the latest
date present (the scoring pipeline's rule, docs/racecard_format.md "File names"). A
race's result is the document ``POST /api/v1/results`` kept in the race-day folder
(``RaceDayPaths.raceday / <race_id>.results.json``).

Every probability the board shows is the service's answer
(:class:`racecast.inference.service.InferenceService`); this module only reads the
racecards (names, cloth numbers, off times) and the results (finishing order), and
computes a race's log-loss contribution from the probabilities the service gave.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "CardRace",
    "DayCard",
    "day_files",
    "day_signature",
    "finishing_order",
    "log_loss_contribution",
    "pick_day",
    "race_result",
    "race_state",
    "read_day",
]

_DAY_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})")
_CARD_SUFFIX = ".racecard.json"


@dataclass(frozen=True)
class CardRace:
    """One race of the day's racecards, as printed (not as scored).

    Attributes:
        race_id: Race key.
        off_time: Aware off time (UTC).
        course: Meeting course.
        country: Meeting country (None when absent).
        number: Race number within its meeting, in off-time order (1-based).
        header: The race's racecard fields other than its runners.
        runners: horse_id -> the runner's racecard record (non-runners included).
        source: File the race came from.
    """

    race_id: str
    off_time: pd.Timestamp
    course: str
    country: str | None
    number: int
    header: dict[str, Any]
    runners: dict[str, dict[str, Any]]
    source: str


@dataclass(frozen=True)
class DayCard:
    """The racecards of one day.

    Attributes:
        day: ``YYYY-MM-DD``.
        files: Racecard files of the day, sorted.
        texts: File name -> JSON text (what the service parses).
        races: Races in off-time order (then race id).
        problems: Files that are not readable racecards: ``(file, message)``.
    """

    day: str
    files: tuple[Path, ...]
    texts: dict[str, str]
    races: tuple[CardRace, ...]
    problems: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def day_files(folders: Iterable[Path]) -> dict[str, list[Path]]:
    """Racecard files of the upcoming folders by race day (``YYYY-MM-DD`` name prefix)."""
    days: dict[str, list[Path]] = {}
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for path in Path(folder).glob(f"*{_CARD_SUFFIX}"):
            match = _DAY_PREFIX.match(path.name)
            if match:
                days.setdefault(match.group(1), []).append(path)
    return {day: sorted(paths) for day, paths in sorted(days.items())}


def pick_day(days: Sequence[str], requested: str | None = None) -> str | None:
    """The requested day when there are racecards for it, else the latest day (None: none).

    Raises:
        ValueError: If ``requested`` is not a ``YYYY-MM-DD`` date (names ``day``).
    """
    if requested:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", requested):
            raise ValueError(f"day: {requested!r} is not a date YYYY-MM-DD")
        return requested if requested in days else None
    return max(days) if days else None


def _races_of(document: Any, source: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(meeting header, race) pairs of a racecard document."""
    if not isinstance(document, dict) or not isinstance(document.get("meetings"), list):
        raise ValueError("not a racecard document (no meetings list)")
    pairs = []
    for meeting in document["meetings"]:
        if not isinstance(meeting, dict) or not isinstance(meeting.get("races"), list):
            raise ValueError("a meeting without a races list")
        header = {k: v for k, v in meeting.items() if k != "races"}
        pairs.extend((header, race) for race in meeting["races"] if isinstance(race, dict))
    return pairs


def read_day(day: str, files: Sequence[Path]) -> DayCard:
    """Read a day's racecard files (a broken file is listed in ``problems``, not raised)."""
    texts: dict[str, str] = {}
    found: list[tuple[pd.Timestamp, str, dict, dict, str]] = []
    problems: list[tuple[str, str]] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
            pairs = _races_of(json.loads(text), path.name)
            rows = [
                (pd.Timestamp(str(race["off_time"])).tz_convert("UTC"), str(race["race_id"]), meeting, race)
                for meeting, race in pairs
            ]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            problems.append((path.name, f"{type(exc).__name__}: {exc}"))
            continue
        texts[path.name] = text
        found.extend((off, race_id, meeting, race, path.name) for off, race_id, meeting, race in rows)
    found.sort(key=lambda r: (r[0], r[1]))
    numbers: dict[tuple[str, str], int] = {}
    races = []
    for off, race_id, meeting, race, source in found:
        key = (str(meeting.get("date")), str(meeting.get("course")))
        numbers[key] = numbers.get(key, 0) + 1
        runners = {
            str(r["horse_id"]): r for r in race.get("runners") or [] if isinstance(r, dict) and "horse_id" in r
        }
        races.append(
            CardRace(
                race_id=race_id,
                off_time=off,
                course=str(meeting.get("course")),
                country=meeting.get("country"),
                number=numbers[key],
                header={k: v for k, v in race.items() if k != "runners"},
                runners=runners,
                source=source,
            )
        )
    return DayCard(day, tuple(files), texts, tuple(races), tuple(problems))


def race_result(raceday: Path | None, race_id: str) -> dict[str, Any] | None:
    """The race's pushed result (``racecast.results/1`` record), None when not pushed."""
    if raceday is None:
        return None
    path = Path(raceday) / f"{race_id}.results.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for result in document.get("results") or []:
        if isinstance(result, dict) and str(result.get("race_id")) == race_id:
            return result
    return None


def day_signature(card: DayCard, raceday: Path | None) -> str:
    """Changes when a racecard file of the day or a result of one of its races changes."""
    parts = []
    paths = list(card.files)
    if raceday is not None:
        paths += [Path(raceday) / f"{race.race_id}.results.json" for race in card.races]
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            parts.append(f"{path.name}:-")
            continue
        parts.append(f"{path.name}:{stat.st_mtime_ns}:{stat.st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def race_state(off_time: pd.Timestamp, result: Mapping[str, Any] | None, now: pd.Timestamp) -> str:
    """``result in`` once a result is pushed, else ``off`` from the off time, else ``upcoming``."""
    if result is not None:
        return "result in"
    return "off" if now >= off_time else "upcoming"


def finishing_order(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Finishers by position (ties share one; non-finishers last, with their outcome)."""
    finishers = [f for f in result.get("finishers") or [] if isinstance(f, dict)]
    return sorted(
        finishers,
        key=lambda f: (f.get("position") is None, f.get("position") or 0, str(f.get("horse_id"))),
    )


def log_loss_contribution(
    runners: Sequence[Mapping[str, Any]], result: Mapping[str, Any], key: str = "p_win"
) -> float | None:
    """The race's log loss under the probabilities ``key`` of the runners: ``-log p`` of the
    winner (a dead heat: the mean over the winners). None for a void race, a race without
    a winner, or a winner without that probability."""
    if result.get("status") == "void":
        return None
    winners = [f.get("horse_id") for f in result.get("finishers") or [] if f.get("position") == 1]
    by_horse = {r["horse_id"]: r.get(key) for r in runners}
    probabilities = [by_horse.get(w) for w in winners]
    if not probabilities or any(p is None or not p > 0 for p in probabilities):
        return None
    return -sum(math.log(p) for p in probabilities) / len(probabilities)
