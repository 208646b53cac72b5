"""One table of ingestion rules (``racecast.ingestion.rules.RULES``) for every path.

Each rule that can apply to a racecard is broken on its own by a mutation of a clean
racecard's canonical rows: the batch validation (``validate_and_split``) quarantines the
records with the rule's reason and field, and the request path
(``request._passes_race_rules``) rejects the racecard through the same rule object's
per-record form. Taking a rule out of the table, or adding one, changes both paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from racecast.data.schema import QUARANTINE_COLUMNS, RACE_COLUMNS, RUNNER_COLUMNS
from racecast.ingestion import request, rules
from racecast.ingestion.racecard_rows import _frame as _racecards_frame
from racecast.ingestion.validate import validate_and_split
from tests.ingestion.test_request import _canonical_records
from tests.serving.serving_fakes import racecard

Rows = list[dict[str, Any]]


def _all_inactive(races: Rows, runners: Rows) -> None:
    for runner in runners:
        if runner["race_id"] == races[0]["race_id"]:
            runner["non_runner"] = True
    races[0]["n_runners"] = 0


#: (reason, field) of every racecard rule -> a mutation that breaks it.
BREAKS: dict[tuple[str, str], Callable[[Rows, Rows], None]] = {
    ("invalid_value", "source"): lambda races, _: races[0].update(source="hkjc"),
    ("invalid_value", "race_month"): lambda races, _: races[0].update(race_month="2025-03"),
    ("race_without_runners", "runners"): _all_inactive,
    ("field_size_mismatch", "n_runners"): lambda races, _: races[0].update(n_declared=9),
    ("runner_unknown_race", "race_id"): lambda _, runners: runners[0].update(race_id="R-ELSEWHERE"),
    ("duplicate_draw", "draw"): lambda _, runners: runners[1].update(draw=runners[0]["draw"]),
}


def _racecard_rules() -> list[rules.Rule]:
    return [*rules.rules_for("races", results=False), *rules.rules_for("runners", results=False)]


def _batch(races: Rows, runners: Rows) -> pd.DataFrame:
    """The quarantine of ``validate_and_split`` for these canonical rows."""
    parsed = (
        _racecards_frame(races, RACE_COLUMNS),
        _racecards_frame(runners, RUNNER_COLUMNS),
        _racecards_frame([], QUARANTINE_COLUMNS),
        {"files_read": 1, "files_rejected": [], "races_in": len(races), "runners_in": len(runners)},
    )
    return validate_and_split(*parsed, {"source": "racecards", "months": None})[2]


def _blames(quarantine: pd.DataFrame, key: tuple[str, str]) -> bool:
    return bool(((quarantine["reason"] == key[0]) & (quarantine["field"] == key[1])).any())


def test_every_racecard_rule_of_the_table_has_a_case_and_a_fast_form() -> None:
    keys = [(rule.name, rule.field) for rule in _racecard_rules()]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(BREAKS)
    assert all(rule.fast is not None for rule in _racecard_rules())


@pytest.mark.parametrize("key", sorted(BREAKS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_one_rule_object_decides_both_paths(key) -> None:
    races, runners = _canonical_records(racecard())
    records = rules.Records(races, runners, "racecards")
    assert not any(rule.fast(records) for rule in _racecard_rules())
    assert _batch(races, runners).empty
    assert request._passes_race_rules(races, runners, "racecards")

    BREAKS[key](races, runners)
    rule = next(r for r in _racecard_rules() if (r.name, r.field) == key)
    assert _blames(_batch(races, runners), key), f"{key}: the batch path does not blame it"
    assert rule.fast(rules.Records(races, runners, "racecards")), f"{key}: fast form disagrees"
    assert not request._passes_race_rules(races, runners, "racecards")


def test_taking_a_rule_out_of_the_table_changes_both_paths(monkeypatch) -> None:
    races, runners = _canonical_records(racecard())
    BREAKS[("duplicate_draw", "draw")](races, runners)
    assert _blames(_batch(races, runners), ("duplicate_draw", "draw"))
    assert not request._passes_race_rules(races, runners, "racecards")

    monkeypatch.setattr(rules, "RULES", tuple(r for r in rules.RULES if r.name != "duplicate_draw"))
    assert _batch(races, runners).empty
    assert request._passes_race_rules(races, runners, "racecards")


def test_a_tighter_rule_in_the_table_changes_both_paths(monkeypatch) -> None:
    races, runners = _canonical_records(racecard())
    assert _batch(races, runners).empty
    assert request._passes_race_rules(races, runners, "racecards")
    tight = dataclasses.replace(
        next(r for r in rules.RULES if r.name == "race_without_runners"),
        # a field of fewer than 99 active runners counts as no field
        check=lambda t: t.facts["active"] < 99,
        fast=lambda r: any(r.field(race)[1] < 99 for race in r.races),
    )
    monkeypatch.setattr(
        rules, "RULES", tuple(tight if r.name == "race_without_runners" else r for r in rules.RULES)
    )
    assert _blames(_batch(races, runners), ("race_without_runners", "runners"))
    assert not request._passes_race_rules(races, runners, "racecards")


def test_a_rule_without_a_fast_form_sends_the_request_to_the_batch_path(monkeypatch) -> None:
    races, runners = _canonical_records(racecard())
    never = rules.Rule(
        "never",
        "runners",
        "draw",
        lambda t: t.runners["draw"].isna() & False,
        lambda t: t.runner_where,
    )
    monkeypatch.setattr(rules, "RULES", (*rules.RULES, never))
    assert _batch(races, runners).empty
    assert not request._passes_race_rules(races, runners, "racecards")
