"""Tests of the ingestion nodes: JSON parser, shared validation, strict mode, contract."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from racecast.data.schema import RACE_COLUMNS, RUNNER_COLUMNS, conform
from racecast.ingestion.contract import (
    DEFAULT_SCHEMA_PATH,
    RacecardFile,
    ResultsFile,
    contract_json_schema,
)
from racecast.ingestion.racecards import parse_racecards
from racecast.ingestion.validate import (
    IngestionInternalError,
    IngestionStrictError,
    count_quarantined,
    enforce_strict,
    parse_months,
    validate_and_split,
)

from .builders import (
    PARAMS,
    assert_accounted,
    files,
    finisher,
    good_batch,
    ingest,
    meeting,
    race,
    racecard,
    result,
    results,
    runner,
)

# The v1 contract example (docs/racecard_format.md), with every field.
DOC_RACECARD = {
    "format": "racecast.racecard/1",
    "meetings": [
        {
            "date": "2004-03-14",
            "course": "ST",
            "country": "HK",
            "races": [
                {
                    "race_id": "HK-2004-03-14-ST-05",
                    "off_time": "2004-03-14T14:30:00+08:00",
                    "race_type": "flat",
                    "surface": "turf",
                    "going": "good to firm",
                    "distance_m": 1200,
                    "race_class": 4,
                    "prize": 600000,
                    "rail": "A+3",
                    "rating_band": "60-40",
                    "runners": [
                        {
                            "horse_id": "3917",
                            "horse_name": "optional display name",
                            "cloth_number": 1,
                            "draw": 2,
                            "age": 3,
                            "sex": "gelding",
                            "horse_country": "AUS",
                            "weight_carried_kg": 60.3,
                            "body_weight_kg": 462.7,
                            "rating": 60,
                            "gear": "B/TT",
                            "jockey_id": "2",
                            "trainer_id": "118",
                            "odds": {"morning": 8.0, "final": 9.7},
                            "non_runner": False,
                            "comment": "tipster note",
                        },
                        {"horse_id": "2157", "cloth_number": 2, "draw": 1, "odds": {"final": 2.5}},
                    ],
                },
                {
                    "race_id": "HK-2004-03-14-ST-04",
                    "off_time": "2004-03-14T05:00:00Z",
                    "distance_m": 1000,
                    "runners": [{"horse_id": "3917"}, {"horse_id": "11"}],
                },
            ],
        }
    ],
}
DOC_RESULTS = {
    "format": "racecast.results/1",
    "results": [
        {
            "race_id": "HK-2004-03-14-ST-05",
            "status": "official",
            "finishers": [
                {
                    "horse_id": "3917",
                    "position": 1,
                    "outcome": "finished",
                    "lengths_behind": 0.0,
                    "finish_time_s": 69.82,
                    "starting_price": 9.7,
                    "in_running_positions": [6, 4, 6, 1],
                    "comment": "led 150m out",
                },
                {
                    "horse_id": "2157",
                    "position": 2,
                    "outcome": "finished",
                    "lengths_behind": 0.5,
                    "finish_time_s": 69.9,
                },
            ],
        }
    ],
}


def _doc_files() -> dict:
    return files(
        {
            "2004/03-14.racecard": json.dumps(DOC_RACECARD),
            "2004/03-14.results": json.dumps(DOC_RESULTS),
        }
    )


# --- parser: good input ------------------------------------------------------------------


def test_every_field_of_the_contract_example_is_mapped():
    _, (races, runners, quarantine, report) = ingest(_doc_files())
    assert quarantine.empty and report["files"]["rejected"] == []
    r = races.set_index("race_id").loc["HK-2004-03-14-ST-05"]
    expected_race = {
        "source": "racecards",
        "source_file": "2004/03-14.racecard.json",
        "meeting_date": "2004-03-14",
        "race_month": "2004-03",
        "course": "ST",
        "country": "HK",
        "race_no": 2,
        "off_time": pd.Timestamp("2004-03-14T06:30:00Z"),
        "race_type": "flat",
        "surface": "turf",
        "going": "good to firm",
        "distance_m": 1200,
        "race_class": 4,
        "prize": 600000.0,
        "rail": "A+3",
        "rating_band": "60-40",
        "n_declared": 2,
        "n_runners": 2,
        "status": "official",
        "post_winning_time_s": 69.82,
        "post_dead_heat_win": False,
    }
    assert {k: r[k] for k in expected_race} == expected_race
    assert pd.isna(r["post_starters"])  # only set when a source lacks a starter's row
    first = races.set_index("race_id").loc["HK-2004-03-14-ST-04"]
    assert (
        first["race_no"] == 1
        and first["status"] == "pending"
        and first["off_time"] == pd.Timestamp("2004-03-14T05:00Z")
    )
    h = runners[
        (runners["race_id"] == "HK-2004-03-14-ST-05") & (runners["horse_id"] == "3917")
    ].iloc[0]
    expected_runner = {
        "off_time": pd.Timestamp("2004-03-14T06:30:00Z"),
        "race_month": "2004-03",
        "source_file": "2004/03-14.racecard.json",
        "horse_name": "optional display name",
        "cloth_number": 1,
        "draw": 2,
        "age": 3,
        "sex": "gelding",
        "horse_country": "AUS",
        "weight_carried_kg": 60.3,
        "body_weight_kg": 462.7,
        "rating": 60.0,
        "gear": "B/TT",
        "jockey_id": "2",
        "trainer_id": "118",
        "odds_morning": 8.0,
        "odds_final": 9.7,
        "odds_capped": False,
        "non_runner": False,
        "comment": "tipster note",
        "post_position": 1,
        "post_outcome": "finished",
        "post_won": True,
        "post_dead_heat": False,
        "post_lengths_behind": 0.0,
        "post_finish_time_s": 69.82,
        "post_starting_price": 9.7,
        "post_in_running_positions": "[6, 4, 6, 1]",
        "post_comment": "led 150m out",
    }
    assert {k: h[k] for k in expected_runner} == expected_runner
    assert set(expected_runner) | {"race_id", "horse_id"} == set(RUNNER_COLUMNS)
    # the 1.1 race fields are null in a v1 file (tests/ingestion/test_contract_1_1.py)
    assert pd.isna(r["source_race_id"]) and pd.isna(r["race_grade"])
    assert set(expected_race) | {
        "race_id",
        "post_starters",
        "source_race_id",
        "race_grade",
    } == set(RACE_COLUMNS)
    pending = runners[runners["race_id"] == "HK-2004-03-14-ST-04"]
    assert pending["post_won"].isna().all() and pending["post_position"].isna().all()
    assert runners["off_time"].dt.tz is not None and str(runners["off_time"].dt.tz) == "UTC"


def test_source_column_follows_params_source():
    _, (races, *_rest) = ingest(_doc_files(), {**PARAMS, "source": "synthetic"})
    assert set(races["source"]) == {"synthetic"}


def test_dead_heat_non_runner_non_finisher_and_void_race():
    card = racecard(
        meeting(
            "2004-03-14",
            [
                race(
                    "DH",
                    "2004-03-14T13:00:00+08:00",
                    runners=[
                        runner("A", 1),
                        runner("B", 2),
                        runner("C", 3),
                        runner("D", 4),
                        runner("N", 5, non_runner=True),
                    ],
                ),
                race("V", "2004-03-14T13:30:00+08:00"),
            ],
        )
    )
    res = results(
        result(
            "DH",
            [
                finisher("A", 1, finish_time_s=70.0),
                finisher("B", 1, finish_time_s=70.0, dead_heat=True),
                finisher("C", 3, lengths_behind=1.5),
                finisher("D", None, "fell"),
            ],
        ),
        result("V", [], status="void"),
    )
    _, (races, runners, quarantine, report) = ingest(files({"a.racecard": card, "a.results": res}))
    assert quarantine.empty
    dh = races.set_index("race_id").loc["DH"]
    assert dh["post_dead_heat_win"] and dh["n_declared"] == 5 and dh["n_runners"] == 4
    assert dh["post_winning_time_s"] == 70.0
    by_horse = runners[runners["race_id"] == "DH"].set_index("horse_id")
    assert by_horse.loc[["A", "B"], "post_won"].tolist() == [True, True]
    assert by_horse.loc[["A", "B"], "post_dead_heat"].tolist() == [True, True]
    assert not by_horse.loc["C", "post_dead_heat"] and not by_horse.loc["C", "post_won"]
    assert by_horse.loc["D", "post_outcome"] == "fell" and pd.isna(
        by_horse.loc["D", "post_position"]
    )
    assert not by_horse.loc["D", "post_won"]
    assert by_horse.loc["N", "non_runner"] and pd.isna(by_horse.loc["N", "post_position"])
    assert pd.isna(by_horse.loc["N", "post_won"])
    void = races.set_index("race_id").loc["V"]
    assert void["status"] == "void" and pd.isna(void["post_dead_heat_win"])
    assert runners.loc[runners["race_id"] == "V", "post_won"].isna().all()
    assert report["races"]["void"] == 1 and report["runners"]["non_runners"] == 1


# --- parser: bad input next to good input ------------------------------------------------

OFF = "2004-03-14T15:00:00+08:00"


def _bad(name: str) -> dict[str, str]:
    """Files holding one bad thing, named by the case."""
    card = lambda *races_: racecard(meeting("2004-03-14", list(races_)))  # noqa: E731
    cases = {
        "missing_offset": {"b.racecard": card(race("B", "2004-03-14T15:00:00"))},
        "odds_not_above_1": {
            "b.racecard": card(
                race("B", OFF, runners=[runner("H1", 1), runner("H2", 2, odds={"final": 1.0})])
            )
        },
        "race_without_runners": {"b.racecard": card(race("B", OFF, runners=[]))},
        "only_non_runners": {
            "b.racecard": card(race("B", OFF, runners=[runner("H1", 1, non_runner=True)]))
        },
        "duplicate_race": {"b.racecard": card(race("G1", OFF))},
        "unknown_race": {"b.results": results(result("NOPE"))},
        "unknown_horse": {
            "b.racecard": card(race("B", OFF)),
            "b.results": results(result("B", [finisher("H1", 1), finisher("ZZ", 2)])),
        },
        "position_beyond_field": {
            "b.racecard": card(race("B", OFF)),
            "b.results": results(result("B", [finisher("H1", 1), finisher("H2", 4)])),
        },
        "two_winners": {
            "b.racecard": card(race("B", OFF)),
            "b.results": results(
                result(
                    "B",
                    [finisher("H1", 1, finish_time_s=70.0), finisher("H2", 1, finish_time_s=70.4)],
                )
            ),
        },
        "two_winners_denied": {
            "b.racecard": card(race("B", OFF)),
            "b.results": results(
                result("B", [finisher("H1", 1), finisher("H2", 1, dead_heat=False)])
            ),
        },
        "non_runner_with_position": {
            "b.racecard": card(
                race("B", OFF, runners=[runner("H1", 1), runner("H2", 2, non_runner=True)])
            ),
            "b.results": results(result("B", [finisher("H1", 1), finisher("H2", 2)])),
        },
        "non_finisher_with_position": {
            "b.racecard": card(race("B", OFF)),
            "b.results": results(result("B", [finisher("H1", 1), finisher("H2", 2, "fell")])),
        },
        "duplicate_runner": {
            "b.racecard": card(race("B", OFF, runners=[runner("H1", 1), runner("H1", 2)]))
        },
        "draw_beyond_field": {
            # above max(2, 14) + 4 = 18: not a standby starter (contract.draw_limit)
            "b.racecard": card(race("B", OFF, runners=[runner("H1", 1), runner("H2", 19)]))
        },
        "duplicate_result": {
            "b.racecard": card(race("B", OFF)),
            "b.results": results(result("B")),
            "c.results": results(result("B")),
        },
        "void_with_finishers": {
            "b.racecard": card(race("B", OFF)),
            "b.results": results(result("B", [finisher("H1", 1)], status="void")),
        },
        "no_winner": {
            "b.racecard": card(race("B", OFF)),
            "b.results": results(result("B", [finisher("H1", 2), finisher("H2", None, "fell")])),
        },
        "wrong_type": {"b.racecard": card(race("B", OFF, distance_m="1200"))},
        "bad_enum": {"b.racecard": card(race("B", OFF, surface="mud"))},
        "missing_field": {
            "b.racecard": card({k: v for k, v in race("B", OFF).items() if k != "distance_m"})
        },
        "unreadable_horse_id": {
            "b.racecard": card(
                race("B", OFF, runners=[runner("H1", 1), {**runner("H2", 2), "horse_id": 12}])
            )
        },
        "runner_not_object": {"b.racecard": card(race("B", OFF, runners=[runner("H1", 1), "H2"]))},
        "bad_meeting_date": {"b.racecard": racecard(meeting("2004-02-30", [race("B", OFF)]))},
    }
    return cases[name]


@pytest.mark.parametrize(
    ("case", "reason", "field", "horse"),
    [
        ("missing_offset", "timestamp_without_offset", "off_time", None),
        ("odds_not_above_1", "odds_not_above_1", "odds.final", "H2"),
        ("race_without_runners", "race_without_runners", "runners", None),
        ("only_non_runners", "race_without_runners", "runners", None),
        ("unknown_horse", "result_unknown_horse", "result.finishers[1].horse_id", None),
        ("position_beyond_field", "position_beyond_field", "result.finishers[1].position", None),
        ("two_winners", "two_winners_without_dead_heat", "result.finishers[0].position", None),
        (
            "two_winners_denied",
            "two_winners_without_dead_heat",
            "result.finishers[0].position",
            None,
        ),
        (
            "non_runner_with_position",
            "non_runner_with_position",
            "result.finishers[1].position",
            None,
        ),
        (
            "non_finisher_with_position",
            "non_finisher_with_position",
            "result.finishers[1].position",
            None,
        ),
        ("duplicate_runner", "duplicate_runner", "horse_id", "H1"),
        ("draw_beyond_field", "draw_beyond_field", "draw", "H2"),
        ("duplicate_result", "duplicate_result", "result", None),
        ("void_with_finishers", "void_with_finishers", "result.finishers", None),
        ("no_winner", "official_without_winner", "result.finishers", None),
        ("wrong_type", "wrong_type", "distance_m", None),
        ("bad_enum", "invalid_value", "surface", None),
        ("missing_field", "missing_field", "distance_m", None),
        ("unreadable_horse_id", "wrong_type", "horse_id", "?1"),
        ("runner_not_object", "wrong_type", "runner", "?1"),
        ("bad_meeting_date", "invalid_value", "meeting.date", None),
    ],
)
def test_bad_record_quarantines_its_whole_race_and_keeps_good_races(case, reason, field, horse):
    parsed, (races, runners, quarantine, report) = ingest(files({**good_batch(), **_bad(case)}))
    assert set(races["race_id"]) == {"G1", "G2"}
    assert len(runners) == 6 and runners.loc[runners["race_id"] == "G1", "post_won"].sum() == 1
    rows = quarantine[(quarantine["race_id"] == "B") & (quarantine["reason"] == reason)]
    assert len(rows) >= 1, quarantine[["race_id", "horse_id", "field", "reason"]]
    row = rows.iloc[0]
    assert row["field"] == field
    assert pd.isna(row["horse_id"]) if horse is None else row["horse_id"] == horse
    assert row["detail"].startswith("b.r") and field.split(".")[-1].split("[")[0] in row["detail"]
    # the whole race is quarantined: the race record and every runner record
    declared = len(json.loads(_bad(case)["b.racecard"])["meetings"][0]["races"][0]["runners"])
    collateral = quarantine[
        (quarantine["race_id"] == "B") & (quarantine["reason"] == "race_quarantined")
    ]
    assert collateral["horse_id"].notna().sum() == declared
    assert report["races"] == {"in": 3, "primary": 2, "quarantined": 1, "void": 0}
    assert report["runners"]["quarantined"] == declared and report["runners"]["in"] == 6 + declared
    assert report["quarantine_reasons"][reason] >= 1


def test_duplicate_race_across_files_quarantines_every_copy():
    _, (races, runners, quarantine, report) = ingest(
        files({**good_batch(), **_bad("duplicate_race")})
    )
    assert set(races["race_id"]) == {"G2"}
    dup = quarantine[quarantine["reason"] == "duplicate_race"]
    assert set(dup["source_file"]) == {"good.racecard.json", "b.racecard.json"}
    assert dup["detail"].str.contains("declared 2 times").all()
    assert report["races"] == {"in": 3, "primary": 1, "quarantined": 2, "void": 0}
    assert report["runners"] == {"in": 9, "primary": 3, "quarantined": 6, "non_runners": 0}


def test_result_for_unknown_race_is_a_result_level_row():
    _, (races, runners, quarantine, report) = ingest(
        files({**good_batch(), **_bad("unknown_race")})
    )
    assert set(races["race_id"]) == {"G1", "G2"}
    row = quarantine.iloc[0]
    assert (
        len(quarantine) == 1 and row["reason"] == "result_unknown_race" and row["race_id"] == "NOPE"
    )
    assert pd.isna(row["horse_id"]) and row["source_file"] == "b.results.json"
    assert report["races"]["quarantined"] == 0 and report["runners"]["quarantined"] == 0
    assert report["quarantine_reasons"] == {"result_unknown_race": 1}


def test_same_race_twice_in_one_file_counts_two_records():
    card = racecard(meeting("2004-03-14", [race("B", OFF), race("B", OFF)]))
    _, (races, _, quarantine, report) = ingest(files({**good_batch(), "b.racecard": card}))
    assert report["races"]["quarantined"] == 2 and report["runners"]["quarantined"] == 6
    assert count_quarantined(quarantine) == (2, 6)


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        (
            '{\n  "format": "racecast.racecard/1",\n  "meetings": [\n    {"date": "2004-03-14",,}\n  ]\n}',
            "b.racecard",
            "not valid JSON: Expecting property name enclosed in double quotes at line 4, column 27",
        ),
        (
            json.dumps({"format": "racecast.racecard/2", "meetings": []}),
            "b.racecard",
            "field 'format' is 'racecast.racecard/2', expected 'racecast.racecard/1'",
        ),
        (
            json.dumps({"format": "racecast.results/1", "results": []}),
            "b.racecard",
            "field 'format' is 'racecast.results/1', expected 'racecast.racecard/1'",
        ),
        (json.dumps([1, 2]), "b.results", "top level is a JSON array, expected an object"),
        (json.dumps({"format": "racecast.results/1"}), "b.results", "field 'results' is missing"),
        (
            json.dumps({"format": "racecast.racecard/1", "meetings": {}}),
            "b.racecard",
            "field 'meetings' is a JSON object, expected a list",
        ),
        ("{}", "b.csv", "expected *.racecard.json or *.results.json"),
    ],
)
def test_unusable_file_is_rejected_whole_with_file_and_position(text, name, message):
    _, (races, runners, quarantine, report) = ingest(files({**good_batch(), name: text}))
    assert report["files"]["read"] == 3
    [rejected] = report["files"]["rejected"]
    assert rejected["file"] == f"{name}.json"
    assert rejected["error"].startswith(f"{name}.json: ") and message in rejected["error"]
    assert quarantine.empty and len(races) == 2 and report["races"]["in"] == 2


def test_unreadable_file_is_rejected():
    def broken() -> str:
        raise OSError("disk on fire")

    raw = {**files(good_batch()), "x.racecard": broken}
    _, (_, _, _, report) = ingest(raw)
    assert report["files"]["rejected"] == [
        {
            "file": "x.racecard.json",
            "error": "x.racecard.json: cannot be read: OSError: disk on fire",
        }
    ]


def test_meeting_and_result_containers_that_are_not_objects():
    card = json.dumps(
        {"format": "racecast.racecard/1", "meetings": [5, {"date": "2004-03-14", "course": "ST"}]}
    )
    res = results(result("G1"), "oops", {"race_id": 7, "status": "official"})
    _, (races, _, quarantine, report) = ingest(
        files({**good_batch(), "b.racecard": card, "c.results": res})
    )
    assert set(quarantine["reason"]) == {
        "wrong_type",
        "missing_field",
        "invalid_result",
        "duplicate_result",
        "race_quarantined",
    }
    assert quarantine.loc[quarantine["reason"] == "invalid_result", "race_id"].isna().all()
    assert report["races"]["quarantined"] == 1  # G1: results in two files
    assert report["races"]["in"] == 2


# --- months ------------------------------------------------------------------------------


def _two_months() -> dict[str, str]:
    return {
        "m.racecard": racecard(
            meeting("2004-03-14", [race("MAR", OFF)]),
            meeting(
                "2004-04-11",
                [race("APR", "2004-04-11T15:00:00+08:00"), race("APRBAD", "2004-04-11T15:30:00")],
            ),
        ),
        "m.results": results(result("MAR"), result("APR")),
    }


def test_months_filter_in_the_parser_does_not_count_other_months():
    params = {**PARAMS, "months": ["2004-03"]}
    parsed, (races, runners, quarantine, report) = ingest(files(_two_months()), params)
    assert list(races["race_id"]) == ["MAR"] and quarantine.empty
    assert report["races"] == {"in": 1, "primary": 1, "quarantined": 0, "void": 0}
    assert report["runners"]["in"] == 3
    _, (races_all, _, quarantine_all, _) = ingest(files(_two_months()))
    assert set(races_all["race_id"]) == {"MAR", "APR"} and set(quarantine_all["race_id"]) == {
        "APRBAD"
    }


def test_months_filter_in_validation_for_adapters_that_do_not_filter():
    parsed = parse_racecards(files(_two_months()), PARAMS)
    params = {**PARAMS, "months": ["2004-04"]}
    out = validate_and_split(*parsed, params)
    races, runners, quarantine, report = out
    assert list(races["race_id"]) == ["APR"]
    # APRBAD was quarantined by the parser, which knows no month for it: it stays "in"
    assert report["races"] == {"in": 2, "primary": 1, "quarantined": 1, "void": 0}
    assert report["runners"] == {"in": 6, "primary": 3, "quarantined": 3, "non_runners": 0}


@pytest.mark.parametrize("months", ["2004-03", ["2004-13"], [200403], {"a": 1}])
def test_malformed_months_parameter_is_a_config_error(months):
    with pytest.raises(ValueError, match="parameter ingestion.months"):
        parse_months(months)


def test_parser_and_validation_refuse_unknown_sources():
    with pytest.raises(ValueError, match="parameter ingestion.source"):
        parse_racecards(files(good_batch()), {**PARAMS, "source": "hkjc"})
    parsed = parse_racecards(files(good_batch()), PARAMS)
    with pytest.raises(ValueError, match="parameter ingestion.source"):
        validate_and_split(*parsed, {"months": None})


# --- shared validation on adapter frames (any source) ------------------------------------


def _frames(n_races: int = 2) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Canonical frames as an adapter (e.g. HKJC) would produce them."""
    races = pd.DataFrame(
        {
            "race_id": [f"R{i}" for i in range(n_races)],
            "source": "hkjc",
            "source_file": "races.csv",
            "meeting_date": "2004-03-14",
            "race_month": "2004-03",
            "course": "ST",
            "off_time": pd.to_datetime(
                [f"2004-03-14T0{i + 5}:00Z" for i in range(n_races)], utc=True
            ),
            "distance_m": 1200,
            "n_declared": 3,
            "n_runners": 3,
            "status": "official",
            "post_dead_heat_win": False,
        }
    )
    runners = pd.DataFrame(
        {
            "race_id": [f"R{i}" for i in range(n_races) for _ in range(3)],
            "horse_id": [f"H{j}" for _ in range(n_races) for j in range(3)],
            "source_file": "runs.csv",
            "draw": [1, 2, 3] * n_races,
            "non_runner": False,
            "post_position": [1, 2, 3] * n_races,
            "post_outcome": "finished",
            "post_dead_heat": False,
            "odds_final": 3.0,
        }
    )
    quarantine = conform(
        pd.DataFrame(columns=["source_file"]).assign(
            race_id=None, horse_id=None, field=None, reason=None, detail=None
        ),
        {
            "source_file": "string",
            "race_id": "string",
            "horse_id": "string",
            "field": "string",
            "reason": "string",
            "detail": "string",
        },
    )
    summary = {
        "files_read": 2,
        "files_rejected": [],
        "races_in": n_races,
        "runners_in": 3 * n_races,
    }
    return races, runners, quarantine, summary


def _validate(races, runners, quarantine, summary, **params):
    parsed = (races, runners, quarantine, summary)
    out = validate_and_split(
        races, runners, quarantine, summary, {"source": "hkjc", "months": None, **params}
    )
    races_out, runners_out, quarantine_out, report = out
    for table, index in (("races", 0), ("runners", 1)):
        assert report[table]["in"] == report[table]["primary"] + report[table]["quarantined"]
        assert report[table]["quarantined"] == count_quarantined(quarantine_out)[index]
    return parsed, out


def test_validation_accepts_clean_adapter_frames_with_missing_columns():
    races, runners, quarantine, summary = _frames()
    _, (races_out, runners_out, quarantine_out, report) = _validate(
        races, runners, quarantine, summary
    )
    assert quarantine_out.empty and len(races_out) == 2 and len(runners_out) == 6
    assert list(races_out.columns) == list(RACE_COLUMNS)
    assert report["source"] == "hkjc"


@pytest.mark.parametrize(
    ("column", "value", "reason", "field"),
    [
        ("draw", 50, "out_of_range", "draw"),
        ("odds_final", 0.5, "out_of_range", "odds_final"),
        ("post_outcome", "won", "invalid_value", "post_outcome"),
        ("horse_id", None, "missing_field", "horse_id"),
        ("draw", 2, "duplicate_draw", "draw"),
        ("post_position", 9, "position_beyond_field", "post_position"),
        ("post_dead_heat", True, "dead_heat_without_tie", "post_dead_heat"),
        ("horse_id", "H1", "duplicate_runner", "horse_id"),
        ("race_id", "ORPHAN", "runner_unknown_race", "race_id"),
    ],
)
def test_validation_quarantines_the_whole_race_of_a_bad_runner(column, value, reason, field):
    races, runners, quarantine, summary = _frames()
    runners = runners.copy()
    runners[column] = runners[column].astype(object)
    runners.loc[2, column] = value  # H2 of R0, third
    before = runners.copy()
    _, (races_out, runners_out, quarantine_out, report) = _validate(
        races, runners, quarantine, summary
    )
    pd.testing.assert_frame_equal(runners, before)  # inputs are not mutated
    own = quarantine_out[quarantine_out["reason"] == reason]
    assert len(own) >= 1 and own.iloc[0]["field"] == field and "runs.csv" in own.iloc[0]["detail"]
    assert list(races_out["race_id"]) == ["R1"] and set(runners_out["race_id"]) == {"R1"}
    if column != "race_id":
        assert report["races"]["quarantined"] == 1
        assert (
            quarantine_out["reason"] == "race_quarantined"
        ).sum() == 4  # the race and its 3 runners
    assert report["runners"]["quarantined"] == 3


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("distance_m", 50, "out_of_range"),
        ("status", "maybe", "invalid_value"),
        ("n_runners", 2, "field_size_mismatch"),
        ("race_month", "2004-04", "invalid_value"),
        ("source", "racecards", "invalid_value"),
        ("post_dead_heat_win", True, "dead_heat_flag_mismatch"),
        ("race_id", "R1", "duplicate_race"),
    ],
)
def test_validation_quarantines_a_bad_race_with_its_runners(column, value, reason):
    races, runners, quarantine, summary = _frames()
    races = races.copy()
    races[column] = races[column].astype(object)
    races.loc[0, column] = value
    _, (races_out, runners_out, quarantine_out, report) = _validate(
        races, runners, quarantine, summary
    )
    assert reason in set(quarantine_out["reason"])
    assert quarantine_out.loc[quarantine_out["reason"] == reason, "horse_id"].isna().all()
    expected = 0 if column == "race_id" else 1
    assert len(races_out) == expected


def test_validation_result_rules_on_adapter_frames():
    races, runners, quarantine, summary = _frames(3)
    runners = runners.copy()
    runners.loc[1, "post_position"] = 1  # R0: two winners, post_dead_heat false
    runners.loc[3, "non_runner"] = True  # R1: a non-runner with a position
    runners.loc[8, "post_outcome"] = "did_not_finish"  # R2: kept (HKJC ranks its non-finishers)
    _, (races_out, _, quarantine_out, _) = _validate(races, runners, quarantine, summary)
    assert list(races_out["race_id"]) == ["R2"]
    assert {
        "two_winners_without_dead_heat",
        "non_runner_with_position",
        "field_size_mismatch",
    } <= set(quarantine_out["reason"])
    assert set(quarantine_out["race_id"]) == {"R0", "R1"}


def test_a_true_dead_heat_passes_validation():
    races, runners, quarantine, summary = _frames(1)
    races, runners = races.copy(), runners.copy()
    runners.loc[[0, 1], "post_position"] = 1
    runners.loc[[0, 1], "post_dead_heat"] = True
    races.loc[0, "post_dead_heat_win"] = True
    _, (races_out, _, quarantine_out, _) = _validate(races, runners, quarantine, summary)
    assert quarantine_out.empty and len(races_out) == 1


def test_adapter_quarantined_runner_pulls_its_race():
    races, runners, quarantine, summary = _frames()
    runners = runners.drop(index=2)
    quarantine = conform(
        pd.DataFrame(
            {
                "source_file": ["runs.csv"],
                "race_id": ["R0"],
                "horse_id": ["H2"],
                "field": ["draw"],
                "reason": ["invalid_value"],
                "detail": ["runs.csv: bad"],
            }
        ),
        dict.fromkeys(
            ["source_file", "race_id", "horse_id", "field", "reason", "detail"], "string"
        ),
    )
    races = races.assign(n_declared=[2, 3], n_runners=[2, 3])
    _, (races_out, runners_out, quarantine_out, report) = _validate(
        races, runners, quarantine, summary
    )
    assert list(races_out["race_id"]) == ["R1"]
    assert report["races"]["quarantined"] == 1 and report["runners"]["quarantined"] == 3
    assert (
        "the adapter quarantined runs.csv: bad"
        in quarantine_out.loc[
            (quarantine_out["race_id"] == "R0") & quarantine_out["horse_id"].isna(), "detail"
        ].iloc[0]
    )


def test_counts_that_do_not_add_up_raise_an_internal_error():
    races, runners, quarantine, summary = _frames()
    with pytest.raises(IngestionInternalError, match="races: 3 in != 2 primary"):
        validate_and_split(
            races, runners, quarantine, {**summary, "races_in": 3}, {"source": "hkjc"}
        )


# --- strict mode -------------------------------------------------------------------------


def test_strict_mode_raises_a_one_line_summary_after_the_report():
    params = {**PARAMS, "strict": True}
    _, (_, _, quarantine, report) = ingest(
        files({**good_batch(), **_bad("unknown_horse"), "z.racecard": "[}"}), params
    )
    assert not quarantine.empty
    with pytest.raises(IngestionStrictError) as error:
        enforce_strict(report, params)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "ingestion.strict: 1 races / 3 runners quarantined, 1 files rejected ("
    )
    assert "race_quarantined: 3" in message and "result_unknown_horse: 1" in message
    assert message.endswith(
        "see data/02_intermediate/quarantine.parquet and data/08_reporting/ingestion_report.json"
    )


def test_strict_mode_passes_clean_batches_and_lenient_mode_never_raises():
    _, (_, _, _, clean) = ingest(files(good_batch()))
    enforce_strict(clean, {**PARAMS, "strict": True})
    _, (_, _, _, dirty) = ingest(files({**good_batch(), **_bad("odds_not_above_1")}))
    enforce_strict(dirty, PARAMS)
    with pytest.raises(IngestionStrictError):
        enforce_strict(dirty, {**PARAMS, "strict": True})


# --- contract ----------------------------------------------------------------------------


def test_contract_examples_validate_and_schema_file_is_current():
    RacecardFile.model_validate_json(json.dumps(DOC_RACECARD), strict=True)
    ResultsFile.model_validate_json(json.dumps(DOC_RESULTS), strict=True)
    assert json.loads(DEFAULT_SCHEMA_PATH.read_text()) == contract_json_schema(), (
        "docs/racecard.schema.json is stale: run python -m racecast.ingestion.contract"
    )


def test_parsed_outputs_round_trip_through_parquet(tmp_path):
    parsed, out = ingest(files({**good_batch(), **_bad("odds_not_above_1")}))
    for i, frame in enumerate([*parsed[:3], *out[:3]]):
        path = tmp_path / f"{i}.parquet"
        frame.to_parquet(path)
        pd.testing.assert_frame_equal(pd.read_parquet(path), frame)


def test_assert_accounted_catches_a_lost_record():
    parsed, out = ingest(files(good_batch()))
    races, runners, quarantine, report = out
    with pytest.raises(AssertionError):
        assert_accounted(parsed, (races.iloc[1:], runners, quarantine, report))
