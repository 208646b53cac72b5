"""Parse racecard and results JSON files (contract v1 and 1.1) into canonical frames.

``parse_racecards`` is the adapter of the ``racecards`` and ``synthetic`` sources. It
returns the four outputs described in ``racecast.ingestion``:

* a file that cannot be read, is not JSON, is not an object, has the wrong ``format`` or
  lacks its top-level list is *rejected* as a whole (``files_rejected``, with the file,
  the field or the line/column and the problem) and contributes nothing else;
* inside a readable file every meeting, race, runner and result is validated on its
  own (``racecast.ingestion.contract``), so one bad record never rejects its file;
* a race is primary only when the race, every one of its runner records and its result
  are valid. Otherwise the whole race is quarantined (the race record and every runner
  record), because dropping one runner would change the field of the race and a race with
  a broken result cannot be a label. Each quarantined runner record gets one
  ``race_quarantined`` row plus one row per problem of its own; a race record gets one
  row per problem of its own, or one ``race_quarantined`` row when only its runners or
  nothing of its own is wrong;
* a draw above the declared runners is kept up to ``contract.draw_limit`` (standby
  starters; ``validate_and_split`` reports it as a warning) and quarantined above it;
* a ``took_no_part`` runner keeps ``non_runner`` false (the racecard said it would run)
  and gets no label (``post_won`` null), like a non-runner;
* a result that names a race no racecard file declares is quarantined as a
  result-level row (``result_unknown_race``; ``invalid_result`` when its race id is
  unreadable): it is not a race or runner record and is not counted in ``races_in``;
* records with an unreadable id are quarantined under a placeholder id: ``?<k>`` for the
  k-th race record of its file (0-based), ``?<i>`` for the i-th runner of its race.

``races_in`` and ``runners_in`` count every race and runner record of the racecard files
that were not rejected, except those of meetings outside ``params["months"]``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import BaseModel, TypeAdapter, ValidationError

from racecast.data.schema import (
    QUARANTINE_COLUMNS,
    RACE_COLUMNS,
    RUNNER_COLUMNS,
    TOOK_NO_PART,
    conform,
)
from racecast.ingestion.contract import (
    ID_RULE,
    RACECARD_FORMATS,
    RESULTS_FORMATS,
    STANDBY_DRAWS,
    STANDBY_FIELD,
    EntityId,
    Finisher,
    MeetingHeader,
    RaceHeader,
    ResultHeader,
    RunnerCard,
    draw_limit,
)
from racecast.ingestion.validate import parse_months, safe_text, show_value

logger = logging.getLogger(__name__)

RACECARD_SOURCES = ("racecards", "synthetic")
FILE_KINDS = {"racecard": RACECARD_FORMATS, "results": RESULTS_FORMATS}
_LISTS = {"racecard": "meetings", "results": "results"}
_ID = TypeAdapter(EntityId)
_DATE = TypeAdapter(dt.date)
_MAX_CAUSES = 3


@dataclass
class _Problem:
    """One problem of one record: contract field, stable reason code, human message."""

    field: str
    reason: str
    detail: str


@dataclass
class _Runner:
    """A runner record of a racecard (valid or not)."""

    index: int
    horse_id: str
    card: RunnerCard | None
    problems: list[_Problem] = field(default_factory=list)


@dataclass
class _Result:
    """A result record of a results file, attached to the race it names."""

    source_file: str
    location: str
    header: ResultHeader | None
    finishers: list[tuple[int, Finisher]]
    problems: list[_Problem] = field(default_factory=list)


@dataclass
class _Race:
    """A race record of a racecard (valid or not) with its runners and results."""

    source_file: str
    location: str
    race_id: str
    meeting: MeetingHeader | None
    header: RaceHeader | None
    runners: list[_Runner] | None
    problems: list[_Problem] = field(default_factory=list)
    results: list[_Result] = field(default_factory=list)
    race_no: int | None = None

    @property
    def bad(self) -> bool:
        """Whether the race or any of its runner records has a problem."""
        return bool(self.problems) or any(r.problems for r in self.runners or [])


def parse_racecards(
    raw_racecards: dict[str, Callable[[], str]], params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Parse racecard and results JSON files into canonical races, runners and quarantine.

    Args:
        raw_racecards: ``{partition_id: load_fn}`` from a ``PartitionedDataset`` of text
            files; ids are paths relative to the folder without ``.json`` and must end with
            ``.racecard`` or ``.results``.
        params: ``params:ingestion``; uses ``source`` (``racecards`` or ``synthetic``,
            written to the races' ``source`` column) and ``months`` (list of ``YYYY-MM`` or
            null: meetings of other months are skipped and not counted).

    Returns:
        ``parsed_races``, ``parsed_runners`` (results merged into ``post_*`` columns),
        ``parsed_quarantine`` and ``parse_summary`` as documented in ``racecast.ingestion``.

    Raises:
        ValueError: If ``params`` names another source or ``months`` is malformed.
    """
    source = params.get("source")
    if source not in RACECARD_SOURCES:
        raise ValueError(
            f"parameter ingestion.source: parse_racecards reads the sources {RACECARD_SOURCES}, got {source!r}"
        )
    months = parse_months(params.get("months"))

    documents: dict[str, list[tuple[str, dict]]] = {"racecard": [], "results": []}
    rejected: list[dict[str, str]] = []
    for partition_id in sorted(raw_racecards):
        file = safe_text(f"{partition_id}.json")
        kind, document, error = _read_document(partition_id, file, raw_racecards[partition_id])
        if error is not None:
            logger.warning("ingestion: rejected %s", error)
            rejected.append({"file": file, "error": error})
        else:
            documents[kind].append((file, document))

    races: list[_Race] = []
    rows: list[dict[str, Any]] = []
    skipped_ids: set[str] = set()
    for file, document in documents["racecard"]:
        file_races, file_rows, file_skipped = _read_racecard(file, document, months)
        races.extend(file_races)
        rows.extend(file_rows)
        skipped_ids |= file_skipped
    _check_races(races)
    by_id: dict[str, list[_Race]] = defaultdict(list)
    for race in races:
        if not race.race_id.startswith("?"):
            by_id[race.race_id].append(race)
    for file, document in documents["results"]:
        rows.extend(_read_results(file, document, by_id, skipped_ids))
    for race in races:
        race.problems.extend(_result_problems(race))
    _number_races(races)

    race_records, runner_records = [], []
    for race in races:
        if race.bad:
            rows.extend(_quarantine_rows(race))
        else:
            race_row, runner_rows = _canonical_rows(race, source)
            race_records.append(race_row)
            runner_records.extend(runner_rows)

    summary = {
        "files_read": len(raw_racecards),
        "files_rejected": rejected,
        "races_in": len(races),
        "runners_in": sum(len(r.runners or []) for r in races),
    }
    logger.info(
        "ingestion: parsed %d files (%d rejected): %d races, %d runners, %d quarantine rows",
        summary["files_read"],
        len(rejected),
        summary["races_in"],
        summary["runners_in"],
        len(rows),
    )
    return (
        _frame(race_records, RACE_COLUMNS),
        _frame(runner_records, RUNNER_COLUMNS),
        _frame(rows, QUARANTINE_COLUMNS),
        summary,
    )


# --- files -------------------------------------------------------------------------------


def _read_document(
    partition_id: str, file: str, load: Callable[[], str]
) -> tuple[str, dict, None] | tuple[None, None, str]:
    """Load one file and check its top-level structure.

    Args:
        partition_id: Partition id (path without ``.json``).
        file: Display name of the file.
        load: The partition's load function.

    Returns:
        ``(kind, document, None)`` for a usable file, ``(None, None, error)`` otherwise.
    """
    kind = partition_id.rsplit(".", 1)[-1] if "." in partition_id else ""
    if kind not in FILE_KINDS:
        return (
            None,
            None,
            (
                f"{file}: file name: expected *.racecard.json or *.results.json, so the file's kind is unknown"
            ),
        )
    try:
        text = load()
    except Exception as exc:  # noqa: BLE001 - any read failure rejects the file, with its message
        return None, None, f"{file}: cannot be read: {type(exc).__name__}: {safe_text(str(exc))}"
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, None, f"{file}: not UTF-8 text: {exc}"
    if not isinstance(text, str):
        return None, None, f"{file}: loaded a {type(text).__name__}, expected text"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return (
            None,
            None,
            f"{file}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
        )
    except RecursionError:
        return None, None, f"{file}: not usable JSON: nested too deeply"
    expected = " or ".join(repr(f) for f in FILE_KINDS[kind])
    if not isinstance(document, dict):
        return (
            None,
            None,
            f"{file}: top level is a JSON {_json_type(document)}, expected an object with 'format'",
        )
    if "format" not in document:
        return None, None, f"{file}: field 'format' is missing, expected {expected}"
    if document["format"] not in FILE_KINDS[kind]:
        return (
            None,
            None,
            (
                f"{file}: field 'format' is {show_value(document['format'])}, expected {expected} "
                f"for a *.{kind}.json file"
            ),
        )
    key = _LISTS[kind]
    if key not in document:
        return None, None, f"{file}: field {key!r} is missing, expected a list"
    if not isinstance(document[key], list):
        return (
            None,
            None,
            f"{file}: field {key!r} is a JSON {_json_type(document[key])}, expected a list",
        )
    return kind, document, None


def _json_type(value: Any) -> str:
    """Name the JSON type of a decoded value.

    Args:
        value: A value produced by ``json.loads``.

    Returns:
        object, array, string, number, boolean or null.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --- record validation -------------------------------------------------------------------


def _validate(
    model: type[BaseModel], data: dict, where: str, prefix: str = ""
) -> tuple[BaseModel | None, list[_Problem]]:
    """Validate one JSON object against a contract model, strictly, as JSON.

    Args:
        model: The contract model.
        data: The decoded object (a dict).
        where: ``"<file>: <location>"`` used in messages.
        prefix: Prefix of the field names (e.g. ``"meeting."``).

    Returns:
        The model instance, or ``None`` with the problems found.
    """
    try:
        text = json.dumps(data, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        path = _surrogate_path(data) or "(record)"
        return None, [
            _Problem(
                f"{prefix}{path}",
                "invalid_value",
                f"{where}.{path}: text is not valid Unicode (an unpaired \\ud800-\\udfff escape)",
            )
        ]
    except (RecursionError, ValueError) as exc:
        return None, [
            _Problem(f"{prefix}(record)", "invalid_value", f"{where}: cannot be re-encoded: {exc}")
        ]
    try:
        return model.model_validate_json(text, strict=True), []
    except ValidationError as exc:
        return None, [_problem_from_error(err, where, prefix) for err in exc.errors()]


def _problem_from_error(error: dict, where: str, prefix: str) -> _Problem:
    """Turn one pydantic error into a problem with a stable reason code.

    Args:
        error: An item of ``ValidationError.errors()``.
        where: ``"<file>: <location>"`` used in the message.
        prefix: Prefix of the field name.

    Returns:
        The problem.
    """
    loc = _loc(error.get("loc", ()))
    kind = error.get("type", "")
    name = str(error["loc"][-1]) if error.get("loc") else ""
    got = show_value(error.get("input"))
    message = error.get("msg", kind)
    if kind == "missing":
        reason, message = "missing_field", "required field is missing"
    elif kind == "timezone_aware":
        reason = "timestamp_without_offset"
        message = f"{got} has no UTC offset; ISO 8601 with an offset is required (e.g. +08:00 or Z)"
    elif kind == "greater_than" and name in ("morning", "final", "starting_price"):
        reason, message = (
            "odds_not_above_1",
            f"{got} is not above 1.0 (decimal odds include the stake)",
        )
    elif kind in (
        "string_pattern_mismatch",
        "string_too_short",
        "string_too_long",
    ) and name.endswith("_id"):
        reason, message = "invalid_id", f"{got} is not a valid id: must be {ID_RULE}"
    elif kind.endswith("_type"):
        reason, message = "wrong_type", f"{message} (got {got})"
    elif kind in (
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "out_of_range",
    ):
        reason, message = "out_of_range", f"{message} (got {got})"
    else:
        reason, message = "invalid_value", f"{message} (got {got})"
    field_name = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "(record)")
    return _Problem(field_name, reason, f"{where}{'.' + loc if loc else ''}: {message}")


def _loc(parts: Iterable[Any]) -> str:
    """Format a pydantic error location as a field path.

    Args:
        parts: Location items (names and list indices).

    Returns:
        e.g. ``odds.final`` or ``in_running_positions[2]``.
    """
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _surrogate_path(value: Any, path: str = "") -> str | None:
    """Find the first string (or key) holding an unpaired surrogate.

    Args:
        value: A decoded JSON value.
        path: Path of ``value``.

    Returns:
        The field path, or ``None``.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "(value)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{safe_text(str(key))}" if path else safe_text(str(key))
            found = _surrogate_path(str(key), sub) or _surrogate_path(item, sub)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _surrogate_path(item, f"{path}[{i}]")
            if found:
                return found
    return None


def _read_id(value: Any) -> str | None:
    """Return ``value`` if it is a valid entity id.

    Args:
        value: The decoded ``race_id`` / ``horse_id``.

    Returns:
        The id or ``None``.
    """
    try:
        return _ID.validate_python(value, strict=True)
    except ValidationError:
        return None


def _without(data: dict, key: str) -> dict:
    """Return a shallow copy of ``data`` without ``key``.

    Args:
        data: An object.
        key: The key to leave out.

    Returns:
        A new dict.
    """
    return {k: v for k, v in data.items() if k != key}


# --- racecards ---------------------------------------------------------------------------


def _read_racecard(
    file: str, document: dict, months: frozenset[str] | None
) -> tuple[list[_Race], list[dict[str, Any]], set[str]]:
    """Read the meetings of one racecard file into race records.

    Args:
        file: Display name of the file.
        document: The decoded file.
        months: Months to keep, or ``None`` for all.

    Returns:
        The race records, quarantine rows of unusable meetings, and the race ids of
        meetings outside ``months`` (skipped).
    """
    races: list[_Race] = []
    rows: list[dict[str, Any]] = []
    skipped_ids: set[str] = set()
    ordinal = 0
    for m, meeting_data in enumerate(document["meetings"]):
        where = f"{file}: meetings[{m}]"
        if not isinstance(meeting_data, dict):
            rows.append(
                _row(
                    file,
                    None,
                    None,
                    "meetings",
                    "wrong_type",
                    f"{where}: is a JSON {_json_type(meeting_data)}, expected a meeting object",
                )
            )
            continue
        race_list = meeting_data.get("races")
        if not isinstance(race_list, list):
            missing = "races" not in meeting_data
            problem = (
                "required field is missing"
                if missing
                else f"is a JSON {_json_type(race_list)}, expected a list"
            )
            rows.append(
                _row(
                    file,
                    None,
                    None,
                    "meeting.races",
                    "missing_field" if missing else "wrong_type",
                    f"{where}.races: {problem}",
                )
            )
            continue
        meeting, meeting_problems = _validate(
            MeetingHeader, _without(meeting_data, "races"), where, "meeting."
        )
        month = _meeting_month(meeting, meeting_data)
        if months is not None and month is not None and month not in months:
            ids = (_read_id(r.get("race_id")) for r in race_list if isinstance(r, dict))
            skipped_ids.update(i for i in ids if i)
            ordinal += len(race_list)
            continue
        for r, race_data in enumerate(race_list):
            location = f"meetings[{m}].races[{r}]"
            races.append(_read_race(file, location, ordinal, race_data, meeting, meeting_problems))
            ordinal += 1
    return races, rows, skipped_ids


def _meeting_month(meeting: MeetingHeader | None, data: dict) -> str | None:
    """Return the meeting's ``YYYY-MM`` if its date is readable.

    Args:
        meeting: The validated meeting header, if valid.
        data: The meeting object.

    Returns:
        The month or ``None``.
    """
    if meeting is not None:
        return meeting.date.isoformat()[:7]
    try:
        return _DATE.validate_json(json.dumps(data.get("date")), strict=True).isoformat()[:7]
    except (ValidationError, RecursionError, ValueError):
        return None


def _read_race(
    file: str,
    location: str,
    ordinal: int,
    data: Any,
    meeting: MeetingHeader | None,
    meeting_problems: list[_Problem],
) -> _Race:
    """Validate one race record and its runners.

    Args:
        file: Display name of the file.
        location: JSON path of the race in the file.
        ordinal: Index of the race among the file's races (placeholder ids).
        data: The race object.
        meeting: The race's meeting header, if valid.
        meeting_problems: Problems of the meeting header, inherited by the race.

    Returns:
        The race record.
    """
    where = f"{file}: {location}"
    if not isinstance(data, dict):
        return _Race(
            file,
            location,
            f"?{ordinal}",
            meeting,
            None,
            None,
            [
                _Problem(
                    "race",
                    "wrong_type",
                    f"{where}: is a JSON {_json_type(data)}, expected a race object",
                )
            ],
        )
    race_id = _read_id(data.get("race_id"))
    header, problems = _validate(RaceHeader, _without(data, "runners"), where)
    problems = list(meeting_problems) + problems
    runners: list[_Runner] | None = None
    if "runners" not in data:
        problems.append(
            _Problem("runners", "missing_field", f"{where}.runners: required field is missing")
        )
    elif not isinstance(data["runners"], list):
        problems.append(
            _Problem(
                "runners",
                "wrong_type",
                f"{where}.runners: is a JSON {_json_type(data['runners'])}, expected a list",
            )
        )
    else:
        runners = [
            _read_runner(f"{where}.runners[{i}]", i, item) for i, item in enumerate(data["runners"])
        ]
    return _Race(file, location, race_id or f"?{ordinal}", meeting, header, runners, problems)


def _read_runner(where: str, index: int, data: Any) -> _Runner:
    """Validate one runner record.

    Args:
        where: ``"<file>: <location>"`` of the runner.
        index: Index of the runner in its race (placeholder id).
        data: The runner object.

    Returns:
        The runner record.
    """
    if not isinstance(data, dict):
        return _Runner(
            index,
            f"?{index}",
            None,
            [
                _Problem(
                    "runner",
                    "wrong_type",
                    f"{where}: is a JSON {_json_type(data)}, expected a runner object",
                )
            ],
        )
    card, problems = _validate(RunnerCard, data, where)
    return _Runner(index, _read_id(data.get("horse_id")) or f"?{index}", card, problems)


def _check_races(races: list[_Race]) -> None:
    """Add the racecard rules that span records: duplicates, empty fields, draws.

    Args:
        races: All race records of the batch; their problem lists are extended.
    """
    places: dict[str, list[_Race]] = defaultdict(list)
    for race in races:
        if not race.race_id.startswith("?"):
            places[race.race_id].append(race)
    for race_id, copies in places.items():
        if len(copies) > 1:
            where = ", ".join(f"{c.source_file} {c.location}" for c in copies)
            for race in copies:
                race.problems.append(
                    _Problem(
                        "race_id",
                        "duplicate_race",
                        f"{race.source_file}: {race.location}.race_id: {race_id!r} is declared {len(copies)} times ({where})",
                    )
                )
    for race in races:
        if race.runners is None:
            continue
        where = f"{race.source_file}: {race.location}"
        declared = len(race.runners)
        active = [r for r in race.runners if not (r.card is not None and r.card.non_runner)]
        if declared == 0:
            race.problems.append(
                _Problem(
                    "runners", "race_without_runners", f"{where}.runners: the race has no runners"
                )
            )
        elif not active:
            race.problems.append(
                _Problem(
                    "runners",
                    "race_without_runners",
                    f"{where}.runners: all {declared} declared runners are non-runners",
                )
            )
        seen: dict[str, int] = defaultdict(int)
        for runner in race.runners:
            seen[runner.horse_id] += 1
        for runner in race.runners:
            at = f"{where}.runners[{runner.index}]"
            if not runner.horse_id.startswith("?") and seen[runner.horse_id] > 1:
                runner.problems.append(
                    _Problem(
                        "horse_id",
                        "duplicate_runner",
                        f"{at}.horse_id: horse {runner.horse_id!r} is declared {seen[runner.horse_id]} times in this race",
                    )
                )
            if (
                runner.card is not None
                and runner.card.draw is not None
                and runner.card.draw > draw_limit(declared)
            ):
                runner.problems.append(
                    _Problem(
                        "draw",
                        "draw_beyond_field",
                        f"{at}.draw: draw {runner.card.draw} is larger than {draw_limit(declared)}, "
                        f"the limit for {declared} declared runners (max(declared, "
                        f"{STANDBY_FIELD}) + {STANDBY_DRAWS} standby starters)",
                    )
                )


# --- results -----------------------------------------------------------------------------


def _read_results(
    file: str,
    document: dict,
    by_id: dict[str, list[_Race]],
    skipped_ids: set[str],
) -> list[dict[str, Any]]:
    """Validate the result records of one results file and attach them to their races.

    Args:
        file: Display name of the file.
        document: The decoded file.
        by_id: Race records (internal, extended with their results) by race id.
        skipped_ids: Race ids of meetings outside the months filter (results ignored).

    Returns:
        Result-level quarantine rows (results of unknown races or without race id).
    """
    rows: list[dict[str, Any]] = []
    for j, data in enumerate(document["results"]):
        location = f"results[{j}]"
        where = f"{file}: {location}"
        if not isinstance(data, dict):
            rows.append(
                _row(
                    file,
                    None,
                    None,
                    "result",
                    "invalid_result",
                    f"{where}: is a JSON {_json_type(data)}, expected a result object",
                )
            )
            continue
        race_id = _read_id(data.get("race_id"))
        if race_id is None:
            rows.append(
                _row(
                    file,
                    None,
                    None,
                    "race_id",
                    "invalid_result",
                    f"{where}.race_id: {show_value(data.get('race_id'))} is not a valid id: must be {ID_RULE}",
                )
            )
            continue
        if race_id in skipped_ids and race_id not in by_id:
            continue
        if race_id not in by_id:
            rows.append(
                _row(
                    file,
                    race_id,
                    None,
                    "race_id",
                    "result_unknown_race",
                    f"{where}.race_id: race {race_id!r} is on no racecard of this batch",
                )
            )
            continue
        header, problems = _validate(ResultHeader, _without(data, "finishers"), where, "result.")
        finishers: list[tuple[int, Finisher]] = []
        raw = data.get("finishers", [])
        if not isinstance(raw, list):
            problems.append(
                _Problem(
                    "result.finishers",
                    "wrong_type",
                    f"{where}.finishers: is a JSON {_json_type(raw)}, expected a list",
                )
            )
            raw = []
        for i, item in enumerate(raw):
            at = f"{where}.finishers[{i}]"
            if not isinstance(item, dict):
                problems.append(
                    _Problem(
                        f"result.finishers[{i}]",
                        "wrong_type",
                        f"{at}: is a JSON {_json_type(item)}, expected a finisher object",
                    )
                )
                continue
            finisher, finisher_problems = _validate(Finisher, item, at, f"result.finishers[{i}].")
            problems.extend(finisher_problems)
            if finisher is not None:
                finishers.append((i, finisher))
        for race in by_id[race_id]:
            race.results.append(_Result(file, location, header, finishers, list(problems)))
    return rows


def _result_problems(race: _Race) -> list[_Problem]:
    """Check a race's result against its racecard.

    Args:
        race: A race record with its attached results.

    Returns:
        The problems of the result, attributed to the race.
    """
    if not race.results:
        return []
    if len(race.results) > 1:
        where = ", ".join(f"{r.source_file} {r.location}" for r in race.results)
        return [
            _Problem(
                "result",
                "duplicate_result",
                f"{race.source_file}: {race.location}: race {race.race_id!r} has {len(race.results)} results ({where})",
            )
        ]
    result = race.results[0]
    if result.problems or result.header is None:
        return list(result.problems)
    where = f"{result.source_file}: {result.location}"
    if result.header.status == "void":
        if result.finishers:
            return [
                _Problem(
                    "result.finishers",
                    "void_with_finishers",
                    f"{where}.finishers: a void race has no result, but {len(result.finishers)} finishers are listed",
                )
            ]
        return []
    runners = {r.horse_id: r for r in race.runners or [] if not r.horse_id.startswith("?")}
    n_active = sum(1 for r in race.runners or [] if not (r.card is not None and r.card.non_runner))
    problems: list[_Problem] = []
    seen: set[str] = set()
    ties: dict[int, list[tuple[int, Finisher]]] = defaultdict(list)
    for i, f in result.finishers:
        at = f"{where}.finishers[{i}]"
        runner = runners.get(f.horse_id)
        if runner is None:
            problems.append(
                _Problem(
                    f"result.finishers[{i}].horse_id",
                    "result_unknown_horse",
                    f"{at}.horse_id: horse {f.horse_id!r} is not a runner of race {race.race_id!r} "
                    f"({race.source_file} {race.location})",
                )
            )
            continue
        if f.horse_id in seen:
            problems.append(
                _Problem(
                    f"result.finishers[{i}].horse_id",
                    "duplicate_finisher",
                    f"{at}.horse_id: horse {f.horse_id!r} is listed more than once",
                )
            )
            continue
        seen.add(f.horse_id)
        if runner.card is not None and runner.card.non_runner:
            if f.outcome == TOOK_NO_PART and f.position is None:
                continue  # a non-runner that the result lists as taking no part
            if f.position is not None:
                problems.append(
                    _Problem(
                        f"result.finishers[{i}].position",
                        "non_runner_with_position",
                        f"{at}.position: horse {f.horse_id!r} is a non-runner but has position "
                        f"{f.position}",
                    )
                )
            else:
                problems.append(
                    _Problem(
                        f"result.finishers[{i}].horse_id",
                        "non_runner_in_result",
                        f"{at}.horse_id: horse {f.horse_id!r} is a non-runner but has a result "
                        f"({f.outcome})",
                    )
                )
            continue
        if f.position is None:
            if f.dead_heat:
                problems.append(
                    _Problem(
                        f"result.finishers[{i}].dead_heat",
                        "dead_heat_without_tie",
                        f"{at}.dead_heat: a dead heat without a position",
                    )
                )
            continue
        if f.outcome != "finished":
            problems.append(
                _Problem(
                    f"result.finishers[{i}].position",
                    "non_finisher_with_position",
                    f"{at}.position: outcome {f.outcome!r} must have position null, got {f.position}",
                )
            )
        if f.position > n_active:
            problems.append(
                _Problem(
                    f"result.finishers[{i}].position",
                    "position_beyond_field",
                    f"{at}.position: position {f.position} is beyond the field of {n_active} runners",
                )
            )
        ties[f.position].append((i, f))
    problems.extend(_tie_problems(where, ties))
    if not problems and 1 not in ties:
        problems.append(
            _Problem(
                "result.finishers",
                "official_without_winner",
                f"{where}.finishers: an official result without a runner at position 1",
            )
        )
    return problems


def _tie_problems(where: str, ties: dict[int, list[tuple[int, Finisher]]]) -> list[_Problem]:
    """Check that shared positions are dead heats and dead heats share a position.

    A shared position is a dead heat unless a tied finisher says ``dead_heat: false``,
    their finish times differ, or (for winners) one is beaten by some lengths.

    Args:
        where: ``"<file>: <location>"`` of the result.
        ties: Finishers by position.

    Returns:
        The problems found.
    """
    problems = []
    for position, tied in sorted(ties.items()):
        i, first = tied[0]
        if len(tied) == 1:
            if first.dead_heat:
                problems.append(
                    _Problem(
                        f"result.finishers[{i}].dead_heat",
                        "dead_heat_without_tie",
                        f"{where}.finishers[{i}].dead_heat: no other runner shares position {position}",
                    )
                )
            continue
        times = {f.finish_time_s for _, f in tied if f.finish_time_s is not None}
        denied = [j for j, f in tied if f.dead_heat is False]
        beaten = [j for j, f in tied if position == 1 and (f.lengths_behind or 0) > 0]
        if denied or len(times) > 1 or beaten:
            why = (
                f"finishers[{denied[0]}] says dead_heat false"
                if denied
                else f"their finish times differ ({sorted(times)})"
                if len(times) > 1
                else f"finishers[{beaten[0]}] is beaten by some lengths"
            )
            reason = (
                "two_winners_without_dead_heat"
                if position == 1
                else "tied_position_without_dead_heat"
            )
            problems.append(
                _Problem(
                    f"result.finishers[{i}].position",
                    reason,
                    f"{where}.finishers: {len(tied)} runners share position {position} but it is "
                    f"not a dead heat: {why}",
                )
            )
    return problems


# --- output ------------------------------------------------------------------------------


def _number_races(races: list[_Race]) -> None:
    """Set ``race_no``: the order of ``off_time`` within each meeting (date and course).

    Races whose meeting or header is invalid are left unnumbered and do not shift others.

    Args:
        races: All race records; ``race_no`` is set in place on the internal records.
    """
    valid = [(k, r) for k, r in enumerate(races) if r.meeting is not None and r.header is not None]
    if not valid:
        return
    keys = pd.DataFrame(
        {
            "k": [k for k, _ in valid],
            "date": [r.meeting.date.isoformat() for _, r in valid],
            "course": [r.meeting.course for _, r in valid],
            "off_time": [pd.Timestamp(r.header.off_time).tz_convert("UTC") for _, r in valid],
            "race_id": [r.race_id for _, r in valid],
            "file": [r.source_file for _, r in valid],
        }
    ).sort_values(["off_time", "race_id", "file"], kind="stable")
    keys["race_no"] = keys.groupby(["date", "course"], sort=False).cumcount() + 1
    for k, no in zip(keys["k"], keys["race_no"], strict=True):
        races[k].race_no = int(no)


def _canonical_rows(race: _Race, source: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Build the canonical race row and runner rows of a valid race.

    Args:
        race: A race record without problems.
        source: Value of the races' ``source`` column.

    Returns:
        The race row and its runner rows (results merged in).
    """
    header, meeting = race.header, race.meeting
    off_time = pd.Timestamp(header.off_time).tz_convert("UTC")
    meeting_date = meeting.date.isoformat()
    result = race.results[0] if race.results else None
    status = result.header.status if result is not None else "pending"
    finishers = {f.horse_id: f for _, f in result.finishers} if status == "official" else {}
    positions = pd.Series([f.position for f in finishers.values()], dtype="float64")
    winners = [f for f in finishers.values() if f.position == 1]
    runners = race.runners or []
    race_row = {
        "race_id": race.race_id,
        "source_race_id": header.source_race_id,
        "source": source,
        "source_file": race.source_file,
        "meeting_date": meeting_date,
        "race_month": meeting_date[:7],
        "course": meeting.course,
        "country": meeting.country,
        "race_no": race.race_no,
        "off_time": off_time,
        "race_type": header.race_type,
        "surface": header.surface,
        "going": header.going,
        "distance_m": header.distance_m,
        "race_class": header.race_class,
        "race_grade": header.race_grade,
        "prize": header.prize,
        "rail": header.rail,
        "rating_band": header.rating_band,
        "n_declared": len(runners),
        "n_runners": sum(1 for r in runners if not r.card.non_runner),
        "status": status,
        "post_winning_time_s": min(
            (f.finish_time_s for f in winners if f.finish_time_s is not None), default=None
        ),
        "post_dead_heat_win": len(winners) > 1 if status == "official" else None,
    }
    runner_rows = []
    for runner in runners:
        card = runner.card
        odds = card.odds
        f = finishers.get(card.horse_id)
        ran = (
            status == "official"
            and not card.non_runner
            and not (f is not None and f.outcome == TOOK_NO_PART)
        )
        position = f.position if f is not None else None
        runner_rows.append(
            {
                "race_id": race.race_id,
                "horse_id": card.horse_id,
                "off_time": off_time,
                "race_month": meeting_date[:7],
                "source_file": race.source_file,
                "horse_name": card.horse_name,
                "cloth_number": card.cloth_number,
                "draw": card.draw,
                "age": card.age,
                "sex": card.sex,
                "horse_country": card.horse_country,
                "weight_carried_kg": card.weight_carried_kg,
                "body_weight_kg": card.body_weight_kg,
                "rating": card.rating,
                "gear": card.gear,
                "jockey_id": card.jockey_id,
                "trainer_id": card.trainer_id,
                "odds_morning": odds.morning if odds is not None else None,
                "odds_final": odds.final if odds is not None else None,
                "odds_capped": odds.final_capped if odds is not None else False,
                "non_runner": card.non_runner,
                "comment": card.comment,
                "post_position": position,
                "post_outcome": f.outcome if f is not None else None,
                "post_won": (position == 1) if ran else None,
                "post_dead_heat": bool(position is not None and (positions == position).sum() > 1)
                if ran
                else None,
                "post_lengths_behind": f.lengths_behind if f is not None else None,
                "post_finish_time_s": f.finish_time_s if f is not None else None,
                "post_starting_price": f.starting_price if f is not None else None,
                "post_in_running_positions": (
                    json.dumps(f.in_running_positions)
                    if f is not None and f.in_running_positions is not None
                    else None
                ),
                "post_comment": f.comment if f is not None else None,
            }
        )
    return race_row, runner_rows


def _quarantine_rows(race: _Race) -> list[dict[str, Any]]:
    """Build the quarantine rows of a bad race: its record and every runner record.

    Args:
        race: A race record with problems (its own or its runners').

    Returns:
        Quarantine rows: one per ``(record, reason, field)``.
    """
    causes = race.problems + [p for r in race.runners or [] for p in r.problems]
    summary = "; ".join(p.detail for p in causes[:_MAX_CAUSES])
    if len(causes) > _MAX_CAUSES:
        summary += f"; and {len(causes) - _MAX_CAUSES} more"
    where = f"{race.source_file}: {race.location}"
    rows = _problem_rows(race.source_file, race.race_id, None, race.problems) or [
        _row(
            race.source_file,
            race.race_id,
            None,
            "runners",
            "race_quarantined",
            f"{where}: race {race.race_id!r} is quarantined because of its runners: {summary}",
        )
    ]
    for runner in race.runners or []:
        rows.append(
            _row(
                race.source_file,
                race.race_id,
                runner.horse_id,
                "race",
                "race_quarantined",
                f"{where}.runners[{runner.index}]: quarantined with its race {race.race_id!r}: {summary}",
            )
        )
        rows.extend(_problem_rows(race.source_file, race.race_id, runner.horse_id, runner.problems))
    return rows


def _problem_rows(
    source_file: str, race_id: str, horse_id: str | None, problems: list[_Problem]
) -> list[dict]:
    """Turn a record's problems into quarantine rows, one per ``(reason, field)``.

    Args:
        source_file: File of the record.
        race_id: Race id (or placeholder) of the record.
        horse_id: Horse id (or placeholder) for a runner record, ``None`` for a race.
        problems: The record's problems.

    Returns:
        Quarantine rows; details of problems sharing reason and field are joined.
    """
    merged: dict[tuple[str, str], list[str]] = {}
    for p in problems:
        merged.setdefault((p.reason, p.field), []).append(p.detail)
    return [
        _row(source_file, race_id, horse_id, fld, reason, " | ".join(dict.fromkeys(details)))
        for (reason, fld), details in merged.items()
    ]


def _row(
    source_file: str, race_id: str | None, horse_id: str | None, fld: str, reason: str, detail: str
) -> dict:
    """Build one quarantine row with text safe to store.

    Args:
        source_file: File of the record.
        race_id: Race id, placeholder or ``None``.
        horse_id: Horse id, placeholder or ``None``.
        fld: Contract field.
        reason: Stable reason code.
        detail: Human message naming file and field.

    Returns:
        A row in ``QUARANTINE_COLUMNS``.
    """
    return {
        "source_file": safe_text(source_file),
        "race_id": safe_text(race_id) if race_id is not None else None,
        "horse_id": safe_text(horse_id) if horse_id is not None else None,
        "field": safe_text(fld),
        "reason": reason,
        "detail": safe_text(detail),
    }


def _frame(records: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    """Build a canonical frame from row dicts.

    Args:
        records: Rows with (a subset of) the canonical columns.
        columns: Canonical columns and dtypes.

    Returns:
        A frame in exactly those columns and dtypes.
    """
    return conform(pd.DataFrame.from_records(records, columns=list(columns)), columns)


def merge_raceday(
    parsed_races: pd.DataFrame,
    parsed_runners: pd.DataFrame,
    parsed_quarantine: pd.DataFrame,
    parse_summary: dict,
    raceday_races: pd.DataFrame,
    raceday_runners: pd.DataFrame,
    raceday_quarantine: pd.DataFrame,
    raceday_summary: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Put the races pushed on race day beside (or instead of) the source's races.

    A race in both keeps the pushed version (a correction pushed after the feed); the
    source's records of it leave the counts, so ``in == primary + quarantined`` still
    holds after validation.

    Args:
        parsed_races, parsed_runners, parsed_quarantine, parse_summary: The source
            adapter's outputs.
        raceday_races, raceday_runners, raceday_quarantine, raceday_summary:
            :func:`parse_racecards` of the race-day folder.

    Returns:
        The four adapter outputs, merged.
    """
    from racecast.ingestion.validate import count_quarantined

    pushed = set(raceday_races["race_id"].dropna()) | set(
        raceday_quarantine.loc[raceday_quarantine["horse_id"].isna(), "race_id"].dropna()
    )
    gone_races = parsed_races["race_id"].isin(pushed)
    gone_runners = parsed_runners["race_id"].isin(pushed)
    gone_rows = parsed_quarantine["race_id"].isin(pushed)
    q_races, q_runners = count_quarantined(parsed_quarantine[gone_rows])
    summary = {
        "files_read": parse_summary["files_read"] + raceday_summary["files_read"],
        "files_rejected": [*parse_summary["files_rejected"], *raceday_summary["files_rejected"]],
        "races_in": parse_summary["races_in"] - int(gone_races.sum()) - q_races + raceday_summary["races_in"],
        "runners_in": parse_summary["runners_in"] - int(gone_runners.sum()) - q_runners + raceday_summary["runners_in"],
    }
    if pushed & set(parsed_races["race_id"].dropna()):
        logger.info("ingestion: %d race(s) replaced by race-day pushes", int(gone_races.sum()))

    def merged(source: pd.DataFrame, gone: pd.Series, extra: pd.DataFrame) -> pd.DataFrame:
        frames = [f for f in (source[~gone], extra) if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else source.iloc[:0]

    return (
        merged(parsed_races, gone_races, raceday_races),
        merged(parsed_runners, gone_runners, raceday_runners),
        merged(parsed_quarantine, gone_rows, raceday_quarantine),
        summary,
    )
