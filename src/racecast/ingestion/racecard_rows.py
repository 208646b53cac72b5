"""Turn parsed racecard records into canonical rows and quarantine rows.

The last step of :func:`racecast.ingestion.racecards.parse_racecards`: number the races
of each meeting (``_number_races``), build the canonical race and runner rows of a valid
race with its result merged in (``_canonical_rows``), the quarantine rows of a bad race
and of any record's problems (``_quarantine_rows``, ``_problem_rows``, ``_row``) and the
canonical frames (``_frame``). ``racecast.ingestion.request`` builds its rows with the
same functions.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from racecast.data.schema import TOOK_NO_PART, conform
from racecast.ingestion.racecard_documents import _Problem, _Race
from racecast.ingestion.rules import (
    QUARANTINED_RACE_FIELD,
    QUARANTINED_RUNNER_FIELD,
    RACE_QUARANTINED,
)
from racecast.ingestion.text import safe_text

_MAX_CAUSES = 3


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
    positions = [f.position for f in finishers.values()]
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
                "post_dead_heat": bool(position is not None and positions.count(position) > 1)
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
            QUARANTINED_RACE_FIELD,
            RACE_QUARANTINED,
            f"{where}: race {race.race_id!r} is quarantined because of its runners: {summary}",
        )
    ]
    for runner in race.runners or []:
        rows.append(
            _row(
                race.source_file,
                race.race_id,
                runner.horse_id,
                QUARANTINED_RUNNER_FIELD,
                RACE_QUARANTINED,
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
