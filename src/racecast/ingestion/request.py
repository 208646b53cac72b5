"""The racecard parser and validation for one request: a fast path for clean racecards.

Batch ingestion (:func:`racecast.ingestion.racecards.parse_racecards` then
:func:`racecast.ingestion.validate.validate_and_split`) builds canonical frames of every
column and validates them with pandera and vectorised pandas checks: right for thousands
of races, but ~40 ms for one racecard, where the per-call overhead of pandas and
pandera is all the cost. :func:`clean_racecard_columns` (and
:func:`clean_racecard_frames`, the same as DataFrames) runs the *same* contract
validation (the parser's pydantic models, strict, on the re-encoded JSON; here once for
the whole document instead of once per record, see :func:`_validated_races`) and then
the table-level rules of ``validate_and_split`` as plain Python over the few rows, each
column's values listed once (``_Table``):

* every column check of the pandera schemas (``_RACES``, ``_RUNNERS``) is read from the
  schema objects themselves (nullable, unique, ``isin``, ``in_range``, ``ge`` / ``gt`` /
  ``le`` / ``lt``, ``str_matches``) and evaluated over the column's non-null values at
  once (a set inclusion, a min or max); a check of any other kind makes it give up;
* the cross-record rules that can apply to a racecard without results (source, race
  month, field sizes, races without active runners, shared draws, runners of unknown
  races): the same rule objects ``validate_and_split`` evaluates
  (``racecast.ingestion.rules.RULES``), in their per-record form (``Rule.fast``).

It never produces an error of its own. Whenever anything is not provably clean (the
text is not a racecard, a record has a problem, a rule fails, a race has a result, a
check is of an unknown kind) it returns None and the caller takes the batch path, which
then reports exactly the errors it always did. For a clean racecard the columns it
returns give the same ``entity_frame`` as the batch path's primary tables
(``entities.entity_frame_from_columns``; tested in ``tests/ingestion/test_request.py``
against mutated racecards, and in ``tests/inference/test_parse_paths.py``, where clean,
mutated and hostile bodies get the same rows or error details with the fast path on and
off).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from racecast.data.frames import string_array, utc_array
from racecast.data.schema import RACE_COLUMNS, RUNNER_COLUMNS
from racecast.ingestion.contract import RACECARD_FORMATS, RacecardFile
from racecast.ingestion.plausibility import REASON as IMPLAUSIBLE
from racecast.ingestion.plausibility import Plausibility, implausible
from racecast.ingestion.racecard_checks import _check_races
from racecast.ingestion.racecard_documents import _Race, _read_document, _Runner
from racecast.ingestion.racecard_rows import (
    _canonical_rows,
    _number_races,
    _quarantine_rows,
    _row,
)
from racecast.ingestion.racecards import _read_racecard
from racecast.ingestion.rules import Records, rules_for
from racecast.ingestion.table_checks import _RACES, _RUNNERS

logger = logging.getLogger(__name__)

__all__ = [
    "clean_racecard_columns",
    "clean_racecard_frames",
    "racecard_problems",
    "schema_rules_known",
]

Row = Mapping[str, Any]


def _is_null(value: Any) -> bool:
    """Null as pandas sees it in a canonical column (None, NaN, NA, NaT)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


#: Types whose values are never null (a float may be NaN: it is tested on its own).
_NEVER_NULL = frozenset({str, int, bool, pd.Timestamp})


def _present(values: list[Any]) -> list[Any]:
    """The values that are not null (:func:`_is_null`), in order.

    The parser's rows hold None for a missing value and plain ``str`` / ``int`` /
    ``bool`` / ``float`` / ``Timestamp`` otherwise, so the values' types are checked
    at C speed and only a column holding anything else (NaN, NA, NaT, another type) is
    filtered value by value.
    """
    present = [v for v in values if v is not None]
    if not present:
        return present
    kinds = set(map(type, present))
    if kinds <= _NEVER_NULL:
        return present
    if kinds <= _NEVER_NULL | {float} and not any(v != v for v in present if type(v) is float):
        return present
    return [v for v in present if not _is_null(v)]


def _in_range(stats: Mapping[str, Any]) -> Callable[[list[Any]], bool]:
    low, high = stats["min_value"], stats["max_value"]
    include_low, include_high = stats.get("include_min", True), stats.get("include_max", True)

    def check(values: list[Any]) -> bool:
        if not values:
            return True
        least, most = min(values), max(values)
        above = least >= low if include_low else least > low
        below = most <= high if include_high else most < high
        return bool(above and below)

    return check


def _matches(stats: Mapping[str, Any]) -> Callable[[list[Any]], bool]:
    pattern = re.compile(stats["pattern"])
    return lambda values: all(isinstance(v, str) and pattern.match(v) is not None for v in values)


#: pandera built-in check name -> factory of the check over a column's non-null values
#: (True when every value passes; the values are totally ordered, so a bound is a min/max).
_CHECKS: dict[str, Callable[[Mapping[str, Any]], Callable[[list[Any]], bool]]] = {
    "isin": lambda s: frozenset(s["allowed_values"]).issuperset,
    "notin": lambda s: frozenset(s["forbidden_values"]).isdisjoint,
    "in_range": _in_range,
    "greater_than_or_equal_to": lambda s: lambda v: not v or bool(min(v) >= s["min_value"]),
    "greater_than": lambda s: lambda v: not v or bool(min(v) > s["min_value"]),
    "less_than_or_equal_to": lambda s: lambda v: not v or bool(max(v) <= s["max_value"]),
    "less_than": lambda s: lambda v: not v or bool(max(v) < s["max_value"]),
    "str_matches": _matches,
}


class _ColumnRule:
    """One pandera column of a schema as a check of a column's values (None: a check of
    unknown kind)."""

    def __init__(self, name: str, column: Any) -> None:
        self.name = name
        self.nullable = bool(column.nullable)
        self.unique = bool(column.unique)
        self.checks: list[Callable[[list[Any]], bool]] | None = []
        for check in column.checks:
            factory = _CHECKS.get(check.name)
            if factory is None or check.statistics is None:
                self.checks = None
                break
            self.checks.append(factory(check.statistics))

    def passes(self, values: list[Any]) -> bool:
        """Whether every value passes (False also for a check of unknown kind)."""
        if self.checks is None:
            return False
        if self.unique and len(set(values)) != len(values):
            return False
        present = _present(values)
        if len(present) != len(values) and not self.nullable:
            return False
        try:
            for check in self.checks:
                if not check(present):
                    return False
        except TypeError:  # a value of a type the check cannot compare
            return False
        return True


class _Table:
    """Rows of one table and their columns as lists of values, each listed once."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self._columns: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> list[Any]:
        values = self._columns.get(name)
        if values is None:
            values = self._columns[name] = [row.get(name) for row in self.rows]
        return values

    def names(self) -> set[str]:
        """Every column any row holds."""
        return set().union(*self.rows)


def _table(rows: list[Row] | _Table) -> _Table:
    return rows if isinstance(rows, _Table) else _Table(rows)


def _schema_rules(schema: pa.DataFrameSchema) -> list[_ColumnRule]:
    return [_ColumnRule(name, column) for name, column in schema.columns.items()]


_RACE_RULES = _schema_rules(_RACES)
_RUNNER_RULES = _schema_rules(_RUNNERS)
_RUNNER_UNIQUE = list(_RUNNERS.unique or [])


def schema_rules_known() -> bool:
    """Whether every check of the validation schemas is one this module evaluates."""
    return all(rule.checks is not None for rule in [*_RACE_RULES, *_RUNNER_RULES]) and not (
        _RACES.unique or _RACES.checks or _RUNNERS.checks
    )


def _passes_schemas(races: list[Row] | _Table, runners: list[Row] | _Table) -> bool:
    """The pandera schemas of ``validate_and_split``, column by column."""
    if not schema_rules_known():
        return False
    races, runners = _table(races), _table(runners)
    if not all(rule.passes(races[rule.name]) for rule in _RACE_RULES):
        return False
    if not all(rule.passes(runners[rule.name]) for rule in _RUNNER_RULES):
        return False
    keys = list(zip(*(runners[c] for c in _RUNNER_UNIQUE), strict=True))
    return len(set(keys)) == len(keys)


def _passes_race_rules(
    races: list[Row] | _Table, runners: list[Row] | _Table, source: str
) -> bool:
    """The cross-record rules of ``validate_and_split`` for races without a result.

    Evaluates the rule objects of ``racecast.ingestion.rules.RULES`` that can apply to a
    racecard (``results=False``) in their per-record form; a race must be pending, and
    a rule without a per-record form fails (the caller takes the batch path).
    """
    races, runners = _table(races), _table(runners)
    if any(status != "pending" for status in races["status"]):
        return False
    records = Records(list(races.rows), list(runners.rows), source)
    rules = [*rules_for("races", results=False), *rules_for("runners", results=False)]
    return all(rule.fast is not None and not rule.fast(records) for rule in rules)


def _implausible(
    races: list[Row] | _Table,
    runners: list[Row] | _Table,
    rules: Plausibility | None,
    as_of: Any,
) -> bool:
    """Whether a value breaks a plausibility rule (the rules of ``validate_and_split``)."""
    races, runners = _table(races), _table(runners)
    race_columns = {name: races[name] for name in ("off_time", "meeting_date")}
    runner_columns = {name: runners[name] for name in ("odds_final", "odds_morning", "rating")}
    return bool(implausible(race_columns, runner_columns, rules, as_of))


def _no_results(races: list[Row] | _Table, runners: list[Row] | _Table) -> bool:
    """True when no race or runner carries a result column (a racecard never does)."""
    for table in (_table(races), _table(runners)):
        for name in table.names():
            if name.startswith("post_"):
                if _present(table[name]):
                    return False
    return True


#: The pandas dtype of each canonical dtype name (a name's lookup costs ~20 us a column).
_DTYPES: dict[str, Any] = {
    name: pd.api.types.pandas_dtype(name)
    for name in {*RACE_COLUMNS.values(), *RUNNER_COLUMNS.values()}
    if not name.startswith("datetime64")
}
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_NAT = _INT64_MIN  # NaT's ticks
#: Value types a column is built from directly (``type(None)``: a missing value).
_INTS = frozenset({int, type(None)})
_BOOLS = frozenset({bool, type(None)})
_STRS = frozenset({str, type(None)})


def _column(values: list[Any], dtype: str) -> Any:
    """A canonical column from Python values, as ``racecast.data.schema.conform`` types it.

    The parser's values are plain ``int`` / ``bool`` / ``str`` / aware ``Timestamp`` or
    None; those columns are built straight from their values and masks (``pd.array`` and
    ``pd.to_datetime`` spend ~0.1 ms a column inferring what they hold). Any other value
    takes ``pd.to_datetime`` or the dtype's own ``_from_sequence`` (what ``pd.array``
    calls, without its ~10 us of dispatch) and their own checks.
    """
    if dtype.startswith("datetime64"):
        return _utc_column(values)
    if dtype == "float64":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    kind = _DTYPES[dtype]
    kinds = set(map(type, values))
    if isinstance(kind, pd.Int64Dtype) and kinds <= _INTS:
        data = [0 if v is None else v for v in values]
        if not data or _INT64_MIN <= min(data) and max(data) <= _INT64_MAX:
            missing = np.array([v is None for v in values], dtype=bool)
            return pd.arrays.IntegerArray(np.array(data, np.int64), missing)
    if isinstance(kind, pd.StringDtype) and kind.storage == "python" and kinds <= _STRS:
        return string_array(values)
    if isinstance(kind, pd.BooleanDtype) and kinds <= _BOOLS:
        missing = np.array([v is None for v in values], dtype=bool)
        data = np.array([v is True for v in values], dtype=bool)
        return pd.arrays.BooleanArray(data, missing)
    return kind.construct_array_type()._from_sequence(values, dtype=kind)


def _utc_column(values: list[Any]) -> Any:
    """``pd.to_datetime(values, utc=True)`` as an array; aware Timestamps by their ticks."""
    if all(v is None or (type(v) is pd.Timestamp and v.tzinfo is not None) for v in values):
        try:
            ticks = [_NAT if v is None else v.value for v in values]
        except OverflowError:  # outside nanosecond bounds: to_datetime says so
            pass
        else:
            return utc_array(np.array(ticks, dtype=np.int64))
    return pd.to_datetime(pd.Series(values, dtype=object), utc=True).array


_NAT = int(np.iinfo(np.int64).min)


def _columns(table: _Table, columns: Mapping[str, str], names: Iterable[str]) -> dict[str, Any]:
    """The canonical ``names`` columns of a table (``columns`` gives their dtypes)."""
    return {name: _column(table[name], columns[name]) for name in names}


def _read(text: str, file: str) -> list[_Race] | None:
    """The parser's race records of a racecard text, None unless every record is valid."""
    document = _document(text)
    if document is None:
        return None
    races = _validated_races(document, file)
    if not races:
        return None
    _check_races(races)
    if any(race.bad for race in races):
        return None
    return races


def _validated_races(document: dict, file: str) -> list[_Race] | None:
    """The race records ``_read_racecard`` makes of a racecard, from one validation.

    ``_read_racecard`` validates each meeting, race and runner on its own (the record
    re-encoded as JSON, then the strict contract model) to tell what is wrong with each.
    A valid racecard passes the same strict models as one document (``RacecardFile``
    nests ``MeetingHeader``, ``RaceHeader`` and ``RunnerCard``; the same re-encoded JSON):
    one validation instead of one per record. None when it fails: then something is
    wrong (or too deep to validate whole), and the per-record parser says what.
    """
    try:
        text = json.dumps(document, ensure_ascii=False)
        racecard = RacecardFile.model_validate_json(text, strict=True)
    except (ValueError, RecursionError):  # pydantic's ValidationError is a ValueError
        return None
    races: list[_Race] = []
    for m, meeting in enumerate(racecard.meetings):
        for r, race in enumerate(meeting.races):
            runners = [_Runner(i, card.horse_id, card) for i, card in enumerate(race.runners)]
            location = f"meetings[{m}].races[{r}]"
            races.append(_Race(file, location, race.race_id, meeting, race, runners))
    return races


def _document(text: str) -> dict | None:
    """The decoded racecard document, None unless it is one the parser reads."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("format") not in RACECARD_FORMATS:
        return None
    return document if isinstance(document.get("meetings"), list) else None


def _implausible_rows(
    races: list[_Race], source: str, rules: Plausibility | None, as_of: Any
) -> list[dict[str, Any]]:
    """Quarantine rows of the plausibility rules, worded as ``validate_and_split`` words them."""
    race_rows: list[dict[str, Any]] = []
    runner_rows: list[dict[str, Any]] = []
    for race in races:
        race_row, rows = _canonical_rows(race, source)
        race_rows.append(race_row)
        runner_rows.extend(rows)
    tables = {"races": race_rows, "runners": runner_rows}
    found = implausible(
        {name: [row.get(name) for row in race_rows] for name in ("off_time", "meeting_date")},
        {
            name: [row.get(name) for row in runner_rows]
            for name in ("odds_final", "odds_morning", "rating")
        },
        rules,
        as_of,
    )
    out = []
    for violation in found:
        row = tables[violation.table][violation.row]
        horse = row.get("horse_id") if violation.table == "runners" else None
        # rules._where: "<file>: race <race_id>[ horse <horse_id>]"
        where = f"{row.get('source_file')}: race {row.get('race_id')}"
        where += f" horse {horse}" if horse is not None else ""
        out.append(
            {
                "source_file": row.get("source_file"),
                "race_id": row.get("race_id"),
                "horse_id": horse,
                "field": violation.field,
                "reason": IMPLAUSIBLE,
                "detail": f"{where}: {violation.detail}",
            }
        )
    return out


def racecard_problems(
    text: str,
    file: str,
    source: str = "racecards",
    plausibility: Plausibility | None = None,
    as_of: Any = None,
) -> list[dict[str, Any]] | None:
    """The problems of a racecard that need no tables: records and plausibility.

    The parser's own problems (a record that breaks the contract, as
    ``parse_racecards`` quarantines it) and, for the races it reads, the plausibility
    rules' (as ``validate_and_split`` quarantines them), as quarantine rows in plain
    Python: a bad request costs about what a good one does.

    Args:
        text: Racecard JSON text.
        file: File name shown by the parser.
        source: ``ingestion.source`` of the request path.
        plausibility: Plausible ranges (defaults when None).
        as_of: Reference time of the off-time window (None: now).

    Returns:
        Quarantine rows (``source_file, race_id, horse_id, field, reason, detail``); a
        text that is no racecard file is one row with reason ``file_rejected`` and the
        message ``parse_racecards`` rejects it with. None when it finds none (only a
        table-level rule can fail): the caller then runs the batch path.
    """
    _, document, error = _read_document(file.removesuffix(".json"), file, lambda: text)
    if error is not None:
        return [_row(file, None, None, "file", "file_rejected", error)]
    races, rows, _ = _read_racecard(file, document, None)
    _check_races(races)
    problems = [*rows, *(row for race in races if race.bad for row in _quarantine_rows(race))]
    readable = [race for race in races if not race.bad]
    problems += _implausible_rows(readable, source, plausibility, as_of)
    return problems or None


def clean_racecard_columns(
    text: str,
    file: str,
    race_columns: Iterable[str],
    runner_columns: Iterable[str],
    source: str = "racecards",
    plausibility: Plausibility | None = None,
    as_of: Any = None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Races and runners of a racecard that ingestion would take whole, or None.

    Args:
        text: Racecard JSON text (contract ``racecast.racecard/1`` or ``/1.1``).
        file: File name shown by the parser (as ``parse_racecards`` names it).
        race_columns: Canonical race columns to return (e.g. ``entity_frame``'s fields).
        runner_columns: Canonical runner columns to return.
        source: ``ingestion.source`` of the request path.
        plausibility: Plausible ranges (:func:`racecast.ingestion.plausibility.implausible`;
            defaults when None).
        as_of: Reference time of the off-time window (None: now).

    Returns:
        ``(races, runners)`` as columns (name -> array with the canonical dtype), rows in
        racecard order: exactly the records ``validate_and_split`` would keep as primary,
        when it would keep every record. None when the racecard is anything else (not
        a racecard, a bad record, a rule that fails): the caller then runs the batch
        path, which explains what is wrong.
    """
    races = _read(text, file)
    if races is None:
        return None
    race_columns, runner_columns = list(race_columns), list(runner_columns)
    if "race_no" in race_columns:  # a pandas sort: only when asked for
        _number_races(races)
    race_rows: list[dict[str, Any]] = []
    runner_rows: list[dict[str, Any]] = []
    for race in races:
        race_row, rows = _canonical_rows(race, source)
        race_rows.append(race_row)
        runner_rows.extend(rows)
    race_table, runner_table = _Table(race_rows), _Table(runner_rows)
    if not (
        _no_results(race_table, runner_table)
        and _passes_schemas(race_table, runner_table)
        and _passes_race_rules(race_table, runner_table, source)
        and not _implausible(race_table, runner_table, plausibility, as_of)
    ):
        return None
    return (
        _columns(race_table, RACE_COLUMNS, race_columns),
        _columns(runner_table, RUNNER_COLUMNS, runner_columns),
    )


def clean_racecard_frames(
    text: str,
    file: str,
    race_columns: Iterable[str],
    runner_columns: Iterable[str],
    source: str = "racecards",
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """:func:`clean_racecard_columns` as two DataFrames (same arguments), or None."""
    columns = clean_racecard_columns(text, file, race_columns, runner_columns, source)
    if columns is None:
        return None
    races, runners = columns
    return (
        pd.DataFrame(races, index=pd.RangeIndex(_length(races))),
        pd.DataFrame(runners, index=pd.RangeIndex(_length(runners))),
    )


def _length(columns: Mapping[str, Any]) -> int:
    """Rows of a table given as columns."""
    return len(next(iter(columns.values()), ()))
