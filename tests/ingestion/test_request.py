"""The request fast path of the racecard parser agrees with batch ingestion.

``racecast.ingestion.request.clean_racecard_frames`` must return frames only for racecards
that ``parse_racecards`` + ``validate_and_split`` keep whole, and those frames must give
the same ``entity_frame``; for anything else it returns None and
``racecard_entity_rows`` reports the batch path's error, so a malformed request still gets
the same message and field. Each mutation below breaks one rule of the contract, of the
pandera schemas or of the cross-record checks.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from racecast.data.schema import QUARANTINE_COLUMNS, RACE_COLUMNS, RUNNER_COLUMNS
from racecast.features import entities, online
from racecast.features.online import RacecardError, racecard_entity_rows
from racecast.ingestion import request
from racecast.ingestion.racecard_rows import _frame as _racecards_frame
from racecast.ingestion.racecards import parse_racecards
from racecast.ingestion.validate import validate_and_split
from tests.serving.serving_fakes import racecard

FILE = "2025-02-06.racecard.json"


def _batch(text: str) -> pd.DataFrame | str:
    """The batch path: entity rows, or the RacecardError message it raises."""
    parsed = parse_racecards({FILE.removesuffix(".json"): lambda: text}, {"source": "racecards"})
    if parsed[3]["files_rejected"]:
        return "rejected"
    races, runners, quarantine, _ = validate_and_split(
        *parsed, {"source": "racecards", "months": None}
    )
    if len(quarantine) or races.empty:
        return "quarantined"
    return entities.entity_frame(races, runners)


def _fast(text: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    return request.clean_racecard_frames(text, FILE, *online._ENTITY_INPUT_COLUMNS)


def _full_card() -> dict[str, Any]:
    """The serving racecard with every optional field, a non-runner and a second meeting."""
    card = racecard()
    first = card["meetings"][0]["races"][0]
    first.update(race_type="flat", going="good to firm", prize=1_000_000, rail="A")
    for i, runner in enumerate(first["runners"]):
        runner.update(
            horse_name=f"Horse {i}",
            cloth_number=i + 1,
            body_weight_kg=1050.0 / 2 + i,
            gear="B" if i % 2 else None,
            comment="ran well",
            horse_country="AUS",
        )
        runner["odds"] = {"morning": 3.0 + i, "final": runner["odds"]["final"]}
    first["runners"].append(
        {"horse_id": "H99", "draw": 5, "jockey_id": "J9", "trainer_id": "T9", "non_runner": True}
    )
    second = copy.deepcopy(card["meetings"][0])
    second.update(date="2025-02-07", course="HV")
    for race in second["races"]:
        race["race_id"] += "-HV"
        race["off_time"] = race["off_time"].replace("2025-02-06", "2025-02-07")
    card["meetings"].insert(0, second)  # racecard order is not time order
    return card


@pytest.mark.parametrize("card", [racecard(), _full_card()], ids=["serving", "full"])
def test_clean_racecard_gives_the_batch_entity_rows(card) -> None:
    text = json.dumps(card)
    frames = _fast(text)
    assert frames is not None
    pd.testing.assert_frame_equal(entities.entity_frame(*frames), _batch(text))
    pd.testing.assert_frame_equal(racecard_entity_rows(text, FILE), _batch(text))


def _race(card: dict, i: int = 0) -> dict:
    return card["meetings"][-1]["races"][i]


def _runner(card: dict, i: int = 0, race: int = 0) -> dict:
    return _race(card, race)["runners"][i]


MUTATIONS: dict[str, Callable[[dict], Any]] = {
    "draw_zero": lambda c: _runner(c).update(draw=0),
    "draw_41": lambda c: _runner(c).update(draw=41),
    "draw_beyond_field": lambda c: _runner(c).update(draw=9),
    "duplicate_draw": lambda c: _runner(c, 1).update(draw=_runner(c)["draw"]),
    "draw_of_a_non_runner": lambda c: _runner(c, 1).update(
        draw=_runner(c)["draw"], non_runner=True
    ),
    "age_zero": lambda c: _runner(c).update(age=0),
    "age_31": lambda c: _runner(c).update(age=31),
    "light_weight": lambda c: _runner(c).update(weight_carried_kg=29.5),
    "heavy_weight": lambda c: _runner(c).update(weight_carried_kg=120.5),
    "light_body": lambda c: _runner(c).update(body_weight_kg=149.0),
    "heavy_body": lambda c: _runner(c).update(body_weight_kg=900.5),
    "odds_one": lambda c: _runner(c).update(odds={"final": 1.0}),
    "morning_odds_one": lambda c: _runner(c).update(odds={"morning": 1.0, "final": 2.0}),
    "short_race": lambda c: _race(c).update(distance_m=99),
    "long_race": lambda c: _race(c).update(distance_m=8001),
    "race_type": lambda c: _race(c).update(race_type="steeplechase"),
    "surface": lambda c: _race(c).update(surface="ice"),
    "no_offset": lambda c: _race(c, 1).update(off_time="2025-02-06T15:00:00"),
    "duplicate_horse": lambda c: _runner(c, 1).update(horse_id=_runner(c)["horse_id"]),
    "duplicate_race": lambda c: _race(c, 1).update(race_id=_race(c)["race_id"]),
    "no_horse_id": lambda c: _runner(c).pop("horse_id"),
    "bad_horse_id": lambda c: _runner(c).update(horse_id=" H1"),
    "string_draw": lambda c: _runner(c).update(draw="3"),
    "float_age": lambda c: _runner(c).update(age=4.0),
    "no_runners": lambda c: _race(c).update(runners=[]),
    "all_non_runners": lambda c: [r.update(non_runner=True) for r in _race(c)["runners"]],
    "runner_not_object": lambda c: _race(c)["runners"].append(7),
    "no_distance": lambda c: _race(c).pop("distance_m"),
    "bad_date": lambda c: c["meetings"][-1].update(date="2025-13-01"),
    "meeting_not_object": lambda c: c["meetings"].append([]),
    "no_races": lambda c: c["meetings"][-1].pop("races"),
    "wrong_format": lambda c: c.update(format="racecast.results/1"),
    "no_meetings": lambda c: c.update(meetings=[]),
    "meetings_not_list": lambda c: c.update(meetings={}),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@pytest.mark.parametrize("base", [racecard, _full_card], ids=["serving", "full"])
def test_a_broken_racecard_takes_the_batch_path_and_its_error(name, base) -> None:
    card = base()
    MUTATIONS[name](card)
    text = json.dumps(card)
    batch = _batch(text)
    fast = _fast(text)
    if isinstance(batch, str):
        assert fast is None, f"{name}: the batch path {batch} the racecard, the fast path kept it"
        with pytest.raises(RacecardError) as caught:
            racecard_entity_rows(text, FILE)
        assert FILE in str(caught.value)
    elif fast is not None:  # a change the rules allow (e.g. a draw beyond the runners)
        pd.testing.assert_frame_equal(entities.entity_frame(*fast), batch)


def test_not_json_takes_the_batch_path() -> None:
    assert _fast('{"format": ') is None
    assert _fast("[]") is None
    with pytest.raises(RacecardError, match="not valid JSON"):
        racecard_entity_rows('{"format": ', FILE)


def test_every_schema_check_is_understood() -> None:
    # a new kind of pandera check would silently make every request take the batch path
    assert request.schema_rules_known()


def test_an_unknown_schema_check_sends_every_racecard_to_the_batch_path(monkeypatch) -> None:
    rule = request._RACE_RULES[0]
    monkeypatch.setattr(rule, "checks", None)
    assert _fast(json.dumps(racecard())) is None
    assert len(racecard_entity_rows(json.dumps(racecard()), FILE)) == 7


def _canonical_records(card: dict) -> tuple[list[dict], list[dict]]:
    """The parser's canonical race and runner rows of a clean racecard."""
    races = request._read(json.dumps(card), FILE)
    request._number_races(races)
    rows = [request._canonical_rows(race, "racecards") for race in races]
    return [r for r, _ in rows], [runner for _, runners in rows for runner in runners]


def _batch_quarantines(races: list[dict], runners: list[dict]) -> bool:
    """Whether ``validate_and_split`` quarantines anything of these canonical rows."""
    parsed = (
        _racecards_frame(races, RACE_COLUMNS),
        _racecards_frame(runners, RUNNER_COLUMNS),
        _racecards_frame([], QUARANTINE_COLUMNS),
        {"files_read": 1, "files_rejected": [], "races_in": len(races), "runners_in": len(runners)},
    )
    _, _, quarantine, _ = validate_and_split(*parsed, {"source": "racecards", "months": None})
    return len(quarantine) > 0


def _light_accepts(races: list[dict], runners: list[dict]) -> bool:
    return (
        request._no_results(races, runners)
        and request._passes_schemas(races, runners)
        and request._passes_race_rules(races, runners, "racecards")
    )


# Values the contract already stops, set on the canonical rows directly: the light rules
# must still agree with the pandera schemas and the vectorised checks on their own.
ROW_MUTATIONS: dict[str, tuple[str, int, str, Any]] = {
    "draw_zero": ("runner", 0, "draw", 0),
    "draw_41": ("runner", 0, "draw", 41),
    "age_31": ("runner", 0, "age", 31),
    "weight_29": ("runner", 0, "weight_carried_kg", 29.0),
    "weight_121": ("runner", 0, "weight_carried_kg", 121.0),
    "body_149": ("runner", 0, "body_weight_kg", 149.0),
    "body_901": ("runner", 0, "body_weight_kg", 901.0),
    "odds_below_1": ("runner", 0, "odds_final", 0.5),
    "morning_below_1": ("runner", 0, "odds_morning", 0.9),
    "no_horse_id": ("runner", 0, "horse_id", None),
    "non_runner_null": ("runner", 0, "non_runner", None),
    "duplicate_draw": ("runner", 1, "draw", 1),
    "unknown_race": ("runner", 0, "race_id", "R-ELSEWHERE"),
    "position": ("runner", 0, "post_position", 1),
    "outcome": ("runner", 0, "post_outcome", "vanished"),
    "distance_99": ("race", 0, "distance_m", 99),
    "distance_8001": ("race", 0, "distance_m", 8001),
    "race_type": ("race", 0, "race_type", "steeplechase"),
    "surface": ("race", 0, "surface", "ice"),
    "source": ("race", 0, "source", "hkjc"),
    "status": ("race", 0, "status", "abandoned"),
    "month": ("race", 0, "race_month", "2025-03"),
    "date": ("race", 0, "meeting_date", "06/02/2025"),
    "declared": ("race", 0, "n_declared", 9),
    "active": ("race", 0, "n_runners", 2),
    "no_off_time": ("race", 0, "off_time", None),
    "duplicate_race": ("race", 1, "race_id", "R-PRICED"),
}


@pytest.mark.parametrize("name", sorted(ROW_MUTATIONS))
def test_light_rules_reject_what_the_batch_validation_quarantines(name) -> None:
    races, runners = _canonical_records(racecard())
    assert _light_accepts(races, runners) and not _batch_quarantines(races, runners)
    table, i, column, value = ROW_MUTATIONS[name]
    (runners if table == "runner" else races)[i][column] = value
    assert _batch_quarantines(races, runners), f"{name}: the batch validation kept it"
    assert not _light_accepts(races, runners)


def test_a_draw_shared_with_a_non_runner_is_rejected_by_both_paths() -> None:
    races, runners = _canonical_records(racecard())
    runners[1].update(draw=runners[0]["draw"], non_runner=True)
    races[0]["n_runners"] -= 1
    assert _batch_quarantines(races, runners)
    assert not _light_accepts(races, runners)
    runners[0].update(non_runner=True)  # two non-runners may share one
    races[0]["n_runners"] -= 1
    assert not _batch_quarantines(races, runners)
    assert _light_accepts(races, runners)


def test_race_numbers_when_asked_for_are_the_parsers() -> None:
    text = json.dumps(_full_card())
    races, _ = request.clean_racecard_frames(text, FILE, ["race_id", "race_no"], ["race_id"])
    parsed = parse_racecards({FILE.removesuffix(".json"): lambda: text}, {"source": "racecards"})
    expected = parsed[0].set_index("race_id")["race_no"]
    assert races.set_index("race_id")["race_no"].sort_index().equals(expected.sort_index())


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([1, None, 3, -(2**63)], "Int64"),
        ([2**63, 1], "Int64"),  # beyond int64: pd.array's own error
        ([True, 1], "Int64"),  # a bool is no int here: pd.array decides
        ([True, None, False], "boolean"),
        ([None, None], "boolean"),
        (["a", None, "b"], "string"),
        (
            [
                pd.Timestamp("2025-02-06T15:15:00+00:00"),
                None,
                pd.Timestamp("2025-02-06T23:15:00+08:00"),  # another zone: same instant in UTC
                pd.Timestamp("2025-02-06T15:15:00.123456789Z"),
            ],
            "datetime64[ns, UTC]",
        ),
        (["2025-02-06T15:15:00Z", None], "datetime64[ns, UTC]"),  # text: to_datetime's path
        ([pd.Timestamp("2500-01-01T00:00:00Z").as_unit("s")], "datetime64[ns, UTC]"),
    ],
)
def test_typed_columns_equal_pandas_own_construction(values, dtype) -> None:
    """``_column`` builds plain columns from values and masks: the arrays pandas builds."""

    def pandas_way() -> Any:
        if dtype.startswith("datetime64"):
            return pd.to_datetime(pd.Series(values, dtype=object), utc=True).array
        return pd.array(values, dtype=dtype)

    try:
        expected = pandas_way()
    except (TypeError, ValueError, OverflowError) as error:
        with pytest.raises(type(error)):
            request._column(values, dtype)
        return
    got = request._column(values, dtype)
    pd.testing.assert_extension_array_equal(pd.array(got), pd.array(expected))
