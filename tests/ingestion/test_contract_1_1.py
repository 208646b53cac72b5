"""Contract 1.1: backward compatible additions, parsed alike by the batch and request paths.

v1 files stay valid; ``/1.1`` files may carry ``odds.final_capped``, ``race_grade``,
``source_race_id``, the ``took_no_part`` outcome and standby-starter draws above the
field (a warning in the ingestion report, never quarantine).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from racecast.features import entities, state
from racecast.features.online import RacecardError, racecard_entity_rows
from racecast.ingestion.contract import (
    RACECARD_FORMAT_1_1,
    RESULTS_FORMAT_1_1,
    STANDBY_DRAWS,
    STANDBY_FIELD,
    RacecastFile,
    draw_limit,
)
from racecast.ingestion.export import racecard_document, racecard_json
from tests.ingestion.test_hkjc import adapted, hk_races, hk_runs  # noqa: F401 - fixtures
from tests.ingestion.test_request import (
    FILE,
    _batch,
    _batch_quarantines,
    _canonical_records,
    _fast,
    _full_card,
    _light_accepts,
    _race,
    _runner,
)
from tests.pipelines.ingestion.builders import (
    PARAMS,
    files,
    finisher,
    ingest,
    meeting,
    race,
    racecard,
    reasons,
    result,
    results,
    runner,
)
from tests.serving.serving_fakes import racecard as serving_racecard

DAY = "2004-03-14"
OFF = "2004-03-14T13:00:00+08:00"


def _v11(text: str) -> str:
    """The same file saying format 1.1."""
    doc = json.loads(text)
    doc["format"] = {"racecast.racecard/1": RACECARD_FORMAT_1_1}.get(
        doc["format"], RESULTS_FORMAT_1_1
    )
    return json.dumps(doc)


# ------------------------------------------------------------------ format strings
def test_v1_and_v1_1_files_are_read_alike():
    card = racecard(meeting(DAY, [race("R1", OFF)]))
    res = results(result("R1"))
    v1 = ingest(files({"a.racecard": card, "a.results": res}))[1]
    v11 = ingest(files({"a.racecard": _v11(card), "a.results": _v11(res)}))[1]
    for old, new in zip(v1[:2], v11[:2], strict=True):
        pd.testing.assert_frame_equal(old, new)
    assert v1[2].empty and v11[2].empty
    assert json.loads(_v11(card))["format"] == "racecast.racecard/1.1"


@pytest.mark.parametrize("fmt", ["racecast.racecard/2", "racecast.racecard/1.2", "1.1"])
def test_another_format_is_rejected_naming_both_accepted_ones(fmt):
    doc = json.loads(racecard(meeting(DAY, [race("R1", OFF)])))
    doc["format"] = fmt
    parsed, (_, _, _, report) = ingest(files({"a.racecard": json.dumps(doc)}))
    (rejected,) = report["files"]["rejected"]
    assert (
        f"field 'format' is {fmt!r}, expected 'racecast.racecard/1' or 'racecast.racecard/1.1'"
        in rejected["error"]
    )


def test_the_json_schema_accepts_both_format_strings():
    for fmt in ("racecast.racecard/1", RACECARD_FORMAT_1_1):
        RacecastFile.model_validate_json(json.dumps({"format": fmt, "meetings": []}))
    for fmt in ("racecast.results/1", RESULTS_FORMAT_1_1):
        RacecastFile.model_validate_json(json.dumps({"format": fmt, "results": []}))


# ------------------------------------------------------------------ 1.1 fields
def _card_1_1() -> str:
    runners = [
        runner("H1", 1),
        runner("H2", 2, odds={"final": 99.0, "final_capped": True}),
        runner("H3", 3, odds={"morning": 5.0, "final": 7.0, "final_capped": False}),
    ]
    races = [
        race("R1", OFF, runners=runners, race_grade="G1", source_race_id="2004-03-14/ST/5"),
        race("R2", "2004-03-14T13:30:00+08:00", race_class=3),
    ]
    return _v11(racecard(meeting(DAY, races)))


def test_v1_1_fields_reach_the_canonical_tables():
    _, (races, runners, quarantine, _) = ingest(files({"a.racecard": _card_1_1()}))
    assert quarantine.empty
    by_race = races.set_index("race_id")
    assert by_race.loc["R1", "race_grade"] == "G1"
    assert by_race.loc["R1", "source_race_id"] == "2004-03-14/ST/5"
    assert pd.isna(by_race.loc["R1", "race_class"])  # a graded race need not have a class
    assert pd.isna(by_race.loc["R2", "race_grade"]) and pd.isna(by_race.loc["R2", "source_race_id"])
    capped = runners.set_index(["race_id", "horse_id"])["odds_capped"]
    assert bool(capped[("R1", "H2")]) is True
    assert not capped.drop(("R1", "H2")).any()
    assert str(runners["odds_capped"].dtype) == "boolean"
    # and into the entity rows, as request data beside the context (not a feature)
    rows = entities.entity_frame(races, runners).set_index(["race_id", "horse_id"])
    assert rows["odds_capped"].to_dict() == capped.to_dict()


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"race_grade": "G4"}, "invalid_value", "race_grade"),
        ({"race_grade": 1}, "invalid_value", "race_grade"),
        ({"source_race_id": " 5"}, "invalid_id", "source_race_id"),
        ({"source_race_id": 5}, "wrong_type", "source_race_id"),
    ],
)
def test_bad_race_fields_quarantine_the_race(change, reason, field):
    card = racecard(meeting(DAY, [race("R1", OFF, **change), race("R2", "2004-03-14T14:00+08:00")]))
    _, (races, _, quarantine, _) = ingest(files({"a.racecard": _v11(card)}))
    assert list(races["race_id"]) == ["R2"]
    rows = quarantine[(quarantine["race_id"] == "R1") & quarantine["horse_id"].isna()]
    assert (reason, field) in set(zip(rows["reason"], rows["field"], strict=True))


@pytest.mark.parametrize(
    ("odds", "reason"),
    [
        ({"final_capped": True}, "invalid_value"),
        ({"morning": 4.0, "final_capped": True}, "invalid_value"),
        ({"final": 99.0, "final_capped": "yes"}, "wrong_type"),
    ],
)
def test_a_cap_marker_without_a_final_price_quarantines(odds, reason):
    card = racecard(
        meeting(DAY, [race("R1", OFF, runners=[runner("H1", 1, odds=odds), runner("H2", 2)])])
    )
    _, (races, _, quarantine, _) = ingest(files({"a.racecard": _v11(card)}))
    assert races.empty
    assert reason in reasons(quarantine[quarantine["horse_id"] == "H1"])
    assert "odds" in set(quarantine.loc[quarantine["horse_id"] == "H1", "field"].str[:4])


# ------------------------------------------------------------------ standby draws
def test_draw_limit():
    assert (STANDBY_FIELD, STANDBY_DRAWS) == (14, 4)
    assert draw_limit(2) == 18 and draw_limit(14) == 18 and draw_limit(20) == 24


def test_a_standby_draw_is_kept_with_a_warning():
    runners = [runner("H1", 1), runner("H2", 2), runner("H3", 15)]  # 3 declared, draw 15
    card = racecard(
        meeting(DAY, [race("R1", OFF, runners=runners), race("R2", "2004-03-14T13:30+08:00")])
    )
    _, (races, out, quarantine, report) = ingest(
        files({"a.racecard": card, "a.results": results(result("R1"))})
    )
    assert quarantine.empty and set(races["race_id"]) == {"R1", "R2"}
    assert out.set_index("horse_id").loc["H3"].query("race_id == 'R1'")["draw"].item() == 15
    assert report["warning_reasons"] == {"draw_above_field": 1}
    (warning,) = report["warnings"]
    assert warning["race_id"] == "R1" and warning["horse_id"] == "H3"
    assert (
        warning["field"] == "draw"
        and "draw 15 is above the 3 declared runners" in warning["detail"]
    )
    assert (
        report["runners"]["in"] == report["runners"]["primary"] + report["runners"]["quarantined"]
    )


def test_a_draw_above_the_standby_limit_is_quarantined():
    runners = [runner("H1", 1), runner("H2", 2), runner("H3", 19)]
    card = racecard(meeting(DAY, [race("R1", OFF, runners=runners)]))
    _, (races, _, quarantine, report) = ingest(files({"a.racecard": card}))
    assert races.empty
    row = quarantine[
        (quarantine["horse_id"] == "H3") & (quarantine["reason"] == "draw_beyond_field")
    ]
    assert "draw 19 is larger than 18, the limit for 3 declared runners" in row["detail"].item()
    assert report["warning_reasons"] == {} and report["warnings"] == []


def test_a_clean_batch_has_no_warnings():
    _, (_, _, _, report) = ingest(files({"a.racecard": racecard(meeting(DAY, [race("R1", OFF)]))}))
    assert report["warning_reasons"] == {} and report["warnings"] == []


# ------------------------------------------------------------------ took_no_part
def _took_no_part_batch(non_runner: bool = False) -> dict[str, str]:
    runners = [runner(f"H{i}", i) for i in (1, 2, 3, 4)]
    runners[3]["non_runner"] = non_runner
    later = [runner(f"H{i}", i) for i in (1, 2, 3, 4)]
    finishers = [
        finisher("H1", 1, finish_time_s=70.0),
        finisher("H2", 2, finish_time_s=70.5),
        finisher("H3", 3, finish_time_s=71.0),
        finisher("H4", None, "took_no_part"),
    ]
    return {
        "a.racecard": _v11(
            racecard(
                meeting(
                    DAY,
                    [
                        race("R1", OFF, runners=runners),
                        race("R2", "2004-03-14T14:00:00+08:00", runners=later),
                    ],
                )
            )
        ),
        "a.results": _v11(results(result("R1", finishers), result("R2"))),
    }


def test_took_no_part_gives_no_label_and_no_state():
    _, (races, runners, quarantine, _) = ingest(files(_took_no_part_batch()))
    assert quarantine.empty
    h4 = runners.set_index(["race_id", "horse_id"]).loc[("R1", "H4")]
    assert h4["post_outcome"] == "took_no_part"
    assert bool(h4["non_runner"]) is False  # the racecard said it would run
    assert pd.isna(h4["post_won"]) and pd.isna(h4["post_position"])
    assert pd.isna(h4["post_dead_heat"])
    assert races.set_index("race_id").loc["R1", "n_runners"] == 4  # as declared

    frame = entities.entity_frame(races, runners)
    r1 = frame[frame["race_id"] == "R1"]
    assert set(r1["horse_id"]) == {"H1", "H2", "H3"}  # not a loser: not a row at all
    assert (r1["field_size"] == 3).all() and (r1["n_runners"] == 3).all()
    assert r1["won"].sum() == 1

    horse = state.build_state_tables(races, runners)["horse_form"]
    h4_rows = horse[horse["horse_id"] == "H4"].sort_values("event_timestamp")
    assert len(h4_rows) == 1  # R2 only: R1 added no state
    assert h4_rows["h_runs"].item() == 1
    h1_rows = horse[horse["horse_id"] == "H1"]
    assert len(h1_rows) == 2


def test_took_no_part_matches_a_late_non_runner_in_the_labels():
    _, (races, runners, _, _) = ingest(files(_took_no_part_batch()))
    raw = _took_no_part_batch()
    card = json.loads(raw["a.racecard"])
    card["meetings"][0]["races"][0]["runners"][3]["non_runner"] = True
    res = json.loads(raw["a.results"])
    res["results"][0]["finishers"].pop()
    _, (nr_races, nr_runners, quarantine, _) = ingest(
        files({"a.racecard": json.dumps(card), "a.results": json.dumps(res)})
    )
    assert quarantine.empty
    cols = ["race_id", "horse_id", "won", "position", "field_size", "n_runners"]
    pd.testing.assert_frame_equal(
        entities.entity_frame(races, runners)[cols], entities.entity_frame(nr_races, nr_runners)[cols]
    )


def test_a_non_runner_may_be_listed_as_taking_no_part():
    _, (races, runners, quarantine, _) = ingest(files(_took_no_part_batch(non_runner=True)))
    assert quarantine.empty and set(races["race_id"]) == {"R1", "R2"}


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (finisher("H4", 4, "took_no_part"), "non_finisher_with_position"),
        (finisher("H4", None, "took_part"), "invalid_value"),
    ],
)
def test_took_no_part_with_a_position_is_quarantined(item, reason):
    raw = _took_no_part_batch()
    res = json.loads(raw["a.results"])
    res["results"][0]["finishers"][3] = item
    _, (races, _, quarantine, _) = ingest(files({**raw, "a.results": json.dumps(res)}))
    assert list(races["race_id"]) == ["R2"]
    assert reason in reasons(quarantine, "R1")


# ------------------------------------------------------------------ Hong Kong
def test_hong_kong_99_is_exported_as_capped_and_read_back(adapted):  # noqa: F811
    races, runners = adapted[0], adapted[1]
    race_runners = runners[runners["race_id"] == "1"]
    race_runners = race_runners.assign(draw=pd.array([1, 2], dtype="Int64"))  # fixture: 7, 7
    assert race_runners["odds_capped"].any()
    doc = racecard_document(races[races["race_id"] == "1"], race_runners)
    assert doc["format"] == RACECARD_FORMAT_1_1
    odds = {r["horse_id"]: r["odds"] for r in doc["meetings"][0]["races"][0]["runners"]}
    assert odds["4"] == {"final": 99.0, "final_capped": True}
    assert all("final_capped" not in o for h, o in odds.items() if h != "4")
    text = racecard_json(races[races["race_id"] == "1"], race_runners)
    parsed = ingest(files({"hk.racecard": text}), {**PARAMS})[1]
    read = parsed[1].set_index("horse_id")["odds_capped"]
    expected = race_runners.set_index("horse_id")["odds_capped"]
    assert read.sort_index().tolist() == expected.sort_index().astype(bool).tolist()


# ------------------------------------------------------------------ request path
def _serving_1_1() -> dict:
    card = serving_racecard()
    card["format"] = RACECARD_FORMAT_1_1
    first = _race(card)
    first.update(race_grade="G2", source_race_id="src-1")
    _runner(card)["odds"]["final_capped"] = True
    return card


REQUEST_CASES = {
    "v1_1_fields": lambda c: None,
    "standby_draw": lambda c: _runner(c).update(draw=draw_limit(len(_race(c)["runners"]))),
    "beyond_standby": lambda c: _runner(c).update(draw=draw_limit(len(_race(c)["runners"])) + 1),
    "bad_grade": lambda c: _race(c).update(race_grade="group 1"),
    "capped_without_final": lambda c: _runner(c).update(odds={"final_capped": True}),
    "bad_source_race_id": lambda c: _race(c).update(source_race_id=""),
    "format_1_2": lambda c: c.update(format="racecast.racecard/1.2"),
}


@pytest.mark.parametrize("name", sorted(REQUEST_CASES))
@pytest.mark.parametrize("base", [_serving_1_1, _full_card], ids=["serving", "full"])
def test_the_request_path_accepts_and_rejects_what_the_batch_path_does(name, base):
    card = base()
    REQUEST_CASES[name](card)
    text = json.dumps(card)
    batch, fast = _batch(text), _fast(text)
    if isinstance(batch, str):
        assert fast is None, f"{name}: the batch path {batch} the racecard, the fast path kept it"
        with pytest.raises(RacecardError):
            racecard_entity_rows(text, FILE)
    else:
        assert fast is not None, f"{name}: the batch path kept it, the fast path did not"
        pd.testing.assert_frame_equal(entities.entity_frame(*fast), batch)
        pd.testing.assert_frame_equal(racecard_entity_rows(text, FILE), batch)
    expected = {"beyond_standby", "bad_grade", "capped_without_final", "bad_source_race_id"}
    assert isinstance(batch, str) == (name in expected | {"format_1_2"})
    if name == "v1_1_fields" and base is _serving_1_1:
        capped = batch.set_index("horse_id")["odds_capped"]
        assert capped[_runner(card)["horse_id"]] and capped.sum() == 1


def test_light_rules_check_the_race_grade_like_the_batch_validation():
    races, runners = _canonical_records(_serving_1_1())
    assert races[0]["race_grade"] == "G2" and runners[0]["odds_capped"] is True
    assert _light_accepts(races, runners) and not _batch_quarantines(races, runners)
    races[0]["race_grade"] = "G4"
    assert _batch_quarantines(races, runners) and not _light_accepts(races, runners)


def test_a_graded_race_without_a_class_counts_as_the_top_class_in_class_perf():
    def h_class_perf(grade: str | None) -> float:
        fields = {"race_grade": grade} if grade else {}
        card = racecard(meeting(DAY, [race("R1", OFF, **fields)]))
        _, (races, runners, quarantine, _) = ingest(
            files({"a.racecard": _v11(card), "a.results": results(result("R1"))})
        )
        assert quarantine.empty and pd.isna(races["race_class"]).all()
        horse = state.build_state_tables(races, runners)["horse_form"]
        return float(horse.set_index("horse_id").loc["H3", "h_class_perf"])

    ordinary, graded = h_class_perf(None), h_class_perf("G1")
    # class_step * (class_ref - 1) = 0.1 * (3 - 1) better than an unclassed ordinary race
    assert graded - ordinary == pytest.approx(0.2)
    assert h_class_perf("listed") == pytest.approx(graded)
