"""Read racecard and results JSON files and validate their records against the contract.

The first half of :func:`racecast.ingestion.racecards.parse_racecards`: the records it
builds (``_Race`` with its ``_Runner`` and ``_Result`` records, each carrying its
``_Problem`` list), the whole-file check that rejects a file (``_read_document``: name,
UTF-8, JSON, top-level object, ``format``, top-level list) and the strict validation of
one record against a contract model (``_validate``), which turns pydantic errors into
stable reason codes. ``racecast.ingestion.request`` reads pushed racecards with the same
functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from racecast.ingestion.contract import (
    ID_RULE,
    RACECARD_FORMATS,
    RESULTS_FORMATS,
    EntityId,
    Finisher,
    MeetingHeader,
    RaceHeader,
    ResultHeader,
    RunnerCard,
)
from racecast.ingestion.text import safe_text, show_value

FILE_KINDS = {"racecard": RACECARD_FORMATS, "results": RESULTS_FORMATS}
_LISTS = {"racecard": "meetings", "results": "results"}
_ID = TypeAdapter(EntityId)


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



# --- files -------------------------------------------------------------------------------


def file_kind(partition_id: str) -> str:
    """The kind a partition id names (``racecard``, ``results``; ``""`` when neither)."""
    kind = partition_id.rsplit(".", 1)[-1] if "." in partition_id else ""
    return kind if kind in FILE_KINDS else ""


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
    kind = file_kind(partition_id)
    if not kind:
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
