"""Rules of a parsed racecard batch that span records (race checks).

:func:`racecast.ingestion.racecards.parse_racecards` reads each record on its own
(``racecast.ingestion.racecard_documents``); the checks here look across records and
add problems to the records in place or return them: duplicate races and runners, races
without runners and draws beyond the field (``_check_races``), and a race's result
against its racecard (``_result_problems``, ``_tie_problems``: duplicate results,
finishers the racecard does not declare, positions beyond the field, winners, ties and
dead heats; the verdicts shared with the table rules come from
``racecast.ingestion.rules``). ``racecast.ingestion.request`` runs ``_check_races`` on pushed racecards.
"""

from __future__ import annotations

from collections import defaultdict

from racecast.data.schema import TOOK_NO_PART
from racecast.ingestion.contract import STANDBY_DRAWS, STANDBY_FIELD, Finisher, draw_limit
from racecast.ingestion.racecard_documents import _Problem, _Race
from racecast.ingestion.rules import POSITION_BEYOND_FIELD, beyond_field, is_win, tie_reason


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
        if beyond_field(f.position, n_active):
            problems.append(
                _Problem(
                    f"result.finishers[{i}].position",
                    POSITION_BEYOND_FIELD,
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
        beaten = [j for j, f in tied if is_win(position) and (f.lengths_behind or 0) > 0]
        if denied or len(times) > 1 or beaten:
            why = (
                f"finishers[{denied[0]}] says dead_heat false"
                if denied
                else f"their finish times differ ({sorted(times)})"
                if len(times) > 1
                else f"finishers[{beaten[0]}] is beaten by some lengths"
            )
            problems.append(
                _Problem(
                    f"result.finishers[{i}].position",
                    tie_reason(position),
                    f"{where}.finishers: {len(tied)} runners share position {position} but it is "
                    f"not a dead heat: {why}",
                )
            )
    return problems
