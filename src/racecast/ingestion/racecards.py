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

This module walks the meetings, races, runners and results; the file check and record
validation live in ``racecard_documents``, the rules across records in
``racecard_checks`` and the canonical and quarantine rows in ``racecard_rows``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
from pydantic import TypeAdapter, ValidationError

from racecast.data.schema import (
    QUARANTINE_COLUMNS,
    RACE_COLUMNS,
    RUNNER_COLUMNS,
)
from racecast.ingestion.contract import (
    ID_RULE,
    Finisher,
    MeetingHeader,
    RaceHeader,
    ResultHeader,
    RunnerCard,
)
from racecast.ingestion.racecard_checks import _check_races, _result_problems
from racecast.ingestion.racecard_documents import (
    _json_type,
    _Problem,
    _Race,
    _read_document,
    _read_id,
    _Result,
    _Runner,
    _validate,
    _without,
    file_kind,
)
from racecast.ingestion.racecard_rows import (
    _canonical_rows,
    _frame,
    _number_races,
    _quarantine_rows,
    _row,
)
from racecast.ingestion.text import safe_text, show_value
from racecast.ingestion.validate import parse_months

logger = logging.getLogger(__name__)

RACECARD_SOURCES = ("racecards", "synthetic")
_DATE = TypeAdapter(dt.date)


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

    # One document in memory at a time: every racecard first (the races the results name),
    # then every results file; rejections are reported in file order.
    ids = sorted(raw_racecards)
    rejected: list[tuple[int, dict[str, str]]] = []

    def documents(results: bool) -> Iterator[tuple[str, dict]]:
        for position, partition_id in enumerate(ids):
            if (file_kind(partition_id) == "results") != results:
                continue
            file = safe_text(f"{partition_id}.json")
            _kind, document, error = _read_document(partition_id, file, raw_racecards[partition_id])
            if error is not None:
                logger.warning("ingestion: rejected %s", error)
                rejected.append((position, {"file": file, "error": error}))
            else:
                yield file, document

    races: list[_Race] = []
    rows: list[dict[str, Any]] = []
    skipped_ids: set[str] = set()
    for file, document in documents(results=False):
        file_races, file_rows, file_skipped = _read_racecard(file, document, months)
        races.extend(file_races)
        rows.extend(file_rows)
        skipped_ids |= file_skipped
    _check_races(races)
    by_id: dict[str, list[_Race]] = defaultdict(list)
    for race in races:
        if not race.race_id.startswith("?"):
            by_id[race.race_id].append(race)
    for file, document in documents(results=True):
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
        "files_rejected": [error for _, error in sorted(rejected, key=lambda item: item[0])],
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
