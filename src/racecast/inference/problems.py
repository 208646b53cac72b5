"""Racecard problems as FastAPI-style error details, each with its JSON path.

The parser and validation (:func:`racecast.features.online.racecard_entity_rows`) report
problems as quarantine rows: a message that may carry the record's path
(``meetings[0].races[1].runners[2].draw: ...``) and the record's race id, horse id and
canonical field. :func:`problem_details` turns each into ``{"loc": ["body", "meetings",
0, "races", 1, "runners", 2, "draw"], "msg", "type"}``: from the path in the message when
there is one, else by finding the race and runner in the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["field_loc", "problem_details"]

_FIELD_PATH = re.compile(r"((?:meetings|results)(?:\[\d+\]|\.[A-Za-z_]\w*)*)")
_PATH_PART = re.compile(r"\[(\d+)\]|([A-Za-z_]\w*)")
_FIELD_NAME = re.compile(r"\bfield (\w+):")
#: Canonical column -> its place in a racecard record, when the names differ.
_JSON_FIELD: dict[str, tuple[str, ...]] = {
    "odds_final": ("odds", "final"),
    "odds_morning": ("odds", "morning"),
}
_MEETING_FIELDS = {"meeting_date": ("date",), "course": ("course",), "country": ("country",)}


def field_loc(message: str) -> list[str | int]:
    """``["body", "meetings", 0, "races", 1, "off_time"]`` from a parser message."""
    paths = _FIELD_PATH.findall(message)
    if paths:
        path = max(paths, key=len)
        return ["body", *(int(i) if i else name for i, name in _PATH_PART.findall(path))]
    named = _FIELD_NAME.search(message)
    return ["body", named.group(1)] if named else ["body"]


def _places(document: Any) -> tuple[dict[str, list[Any]], dict[tuple[str, str], list[Any]]]:
    """Where each race and each runner is in a racecard document."""
    races: dict[str, list[Any]] = {}
    runners: dict[tuple[str, str], list[Any]] = {}
    meetings = document.get("meetings") if isinstance(document, dict) else None
    for m, meeting in enumerate(meetings if isinstance(meetings, list) else []):
        cards = meeting.get("races") if isinstance(meeting, dict) else None
        for r, race in enumerate(cards if isinstance(cards, list) else []):
            if not isinstance(race, dict) or not isinstance(race.get("race_id"), str):
                continue
            at = ["meetings", m, "races", r]
            races.setdefault(race["race_id"], at)
            field = race.get("runners")
            for k, runner in enumerate(field if isinstance(field, list) else []):
                if isinstance(runner, dict) and isinstance(runner.get("horse_id"), str):
                    runners.setdefault((race["race_id"], runner["horse_id"]), [*at, "runners", k])
    return races, runners


def _record_loc(
    problem: Mapping[str, Any],
    races: dict[str, list[Any]],
    runners: dict[tuple[str, str], list[Any]],
) -> list[Any] | None:
    """The JSON path of a problem's record and field, None if the record is not found."""
    race_id, horse_id, field = problem.get("race_id"), problem.get("horse_id"), problem.get("field")
    if horse_id is not None:
        at = runners.get((race_id, horse_id))
    else:
        at = races.get(race_id)
        if at is not None and field in _MEETING_FIELDS:
            return ["body", *at[:2], *_MEETING_FIELDS[field]]
    if at is None:
        return None
    return ["body", *at, *(_JSON_FIELD.get(field, (field,)) if field else ())]


def problem_details(
    text: str, problems: Iterable[Mapping[str, Any]], source: str, limit: int
) -> list[dict[str, Any]]:
    """Error details of every problem (at most ``limit``, then one that counts the rest).

    Args:
        text: The racecard JSON text the problems are about.
        problems: ``RacecardError.problems`` (``race_id``, ``horse_id``, ``field``,
            ``reason``, ``detail``).
        source: Name the messages start with (removed from them).
        limit: Most details returned before the summary one.

    Returns:
        ``[{"loc", "msg", "type"}, ...]``.
    """
    problems = list(problems)
    try:
        races, runners = _places(json.loads(text))
    except (ValueError, RecursionError):
        races, runners = {}, {}
    details = []
    for problem in problems[:limit]:
        message = str(problem.get("detail") or problem.get("reason") or "invalid record")
        message = re.sub(r"^[^:]*\.json: ", "", message.removeprefix(f"{source}: "))
        loc = field_loc(message)
        if len(loc) == 1:
            loc = _record_loc(problem, races, runners) or loc
        details.append(
            {"loc": loc, "msg": message, "type": str(problem.get("reason") or "racecard_invalid")}
        )
    if len(problems) > limit:
        details.append(
            {
                "loc": ["body"],
                "msg": f"{len(problems) - limit} more problems not listed (max_error_details = {limit})",
                "type": "too_many_problems",
            }
        )
    return details
