"""The racecard parser's fast path gives what its slow path gives, for any body.

``parse_racecard`` first tries ``racecast.ingestion.request.clean_racecard_columns`` (one
validation of the whole document, checks over column lists, the entity frame's blocks
placed directly); anything it does not take goes to the per-record parser and batch
validation. Each body below (clean, mutated, malformed, hostile) is parsed twice: as
served, and with the fast path switched off. The entity rows (values and dtypes) or the
error details (field path, message, type) must be the same.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pandas as pd
import pytest

from racecast.inference.service import RacecardRequestError, parse_racecard
from racecast.ingestion import request
from tests.ingestion.test_request import MUTATIONS, _full_card
from tests.serving.serving_fakes import racecard

AS_OF = "2025-02-01T00:00:00+00:00"


def _outcome(text: str) -> tuple[str, Any]:
    """The entity rows, the error details, or the exception a body gets."""
    try:
        return "rows", parse_racecard(text, "request", None, AS_OF)
    except RacecardRequestError as exc:
        return "details", exc.details
    except Exception as exc:  # noqa: BLE001 - compared as is: the same type and message
        return "raised", (type(exc).__name__, str(exc))


def _slow(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    with monkeypatch.context() as patch:
        patch.setattr(request, "clean_racecard_columns", lambda *args, **kwargs: None)
        return _outcome(text)


def _assert_same(text: str, monkeypatch: pytest.MonkeyPatch, fast_taken: bool | None) -> None:
    calls: list[bool] = []
    real = request.clean_racecard_columns

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    with monkeypatch.context() as patch:
        patch.setattr(request, "clean_racecard_columns", counted)
        fast = _outcome(text)
    slow = _slow(text, monkeypatch)
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "rows":
        pd.testing.assert_frame_equal(fast[1], slow[1], check_exact=True)
    else:
        assert fast[1] == slow[1]
    if fast_taken is not None:
        assert any(calls) is fast_taken


def _text(card: dict) -> str:
    return json.dumps(card)


def _mutated(name: str) -> str:
    card = _full_card()
    MUTATIONS[name](card)
    return _text(card)


def _runner_text(old: str, new: str) -> str:
    """The serving racecard's text with a runner's fragment replaced (raw JSON edits)."""
    text = json.dumps(racecard())
    assert old in text
    return text.replace(old, new, 1)


CLEAN = {
    "serving": _text(racecard()),
    "full": _text(_full_card()),
    "unknown_fields": _text(
        {**racecard(), "note": {"deep": [1, 2.5, None, "x"]}, "meetings": racecard()["meetings"]}
    ),
    "escaped_text": _runner_text('"H30"', '"H\\u0033\\u0030"'),
    "exponent_weight": _runner_text('"weight_carried_kg": 57.0', '"weight_carried_kg": 5.70e1'),
}

HOSTILE = {
    "duplicate_key_last_wins": _runner_text('"draw": 1', '"draw": 40, "draw": 1'),
    "duplicate_key_bad_last": _runner_text('"draw": 1', '"draw": 1, "draw": 0'),
    "lone_surrogate_in_name": _runner_text(
        '"horse_id": "H30"', '"horse_id": "H30", "horse_name": "\\ud800"'
    ),
    "lone_surrogate_unknown_field": _runner_text(
        '"horse_id": "H30"', '"horse_id": "H30", "zz": "\\udc00"'
    ),
    "lone_surrogate_top_level": '{"zz": "\\ud800", ' + _text(racecard())[1:],
    "nan_odds": _runner_text('"final": 2.5', '"final": NaN'),
    "infinite_weight": _runner_text('"weight_carried_kg": 57.0', '"weight_carried_kg": Infinity'),
    "huge_float": _runner_text('"weight_carried_kg": 57.0', '"weight_carried_kg": 1e400'),
    "huge_int_unknown_field": _runner_text(
        '"horse_id": "H30"', '"horse_id": "H30", "zz": ' + "9" * 5000
    ),
    "deep_unknown_field": _runner_text(
        '"horse_id": "H30"', '"horse_id": "H30", "zz": ' + "[" * 300 + "]" * 300
    ),
    "float_draw": _runner_text('"draw": 1', '"draw": 1.0'),
    "string_weight": _runner_text('"weight_carried_kg": 57.0', '"weight_carried_kg": "57"'),
    "bom": "\ufeff" + _text(racecard()),
    "not_json": '{"format": ',
    "empty": "",
    "array": "[]",
    "results_format": _text({**racecard(), "format": "racecast.results/1"}),
    "null_meetings": _text({**racecard(), "meetings": None}),
    "implausible_odds": _runner_text('"final": 2.5', '"final": 1500.0'),
}


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_a_clean_body_takes_the_fast_path_with_the_slow_paths_rows(name, monkeypatch) -> None:
    _assert_same(CLEAN[name], monkeypatch, fast_taken=True)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_a_mutated_body_gets_the_slow_paths_answer(name, monkeypatch) -> None:
    _assert_same(_mutated(name), monkeypatch, fast_taken=None)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_body_gets_the_slow_paths_answer(name, monkeypatch) -> None:
    _assert_same(HOSTILE[name], monkeypatch, fast_taken=None)


#: Hostile bodies ingestion takes: the last of duplicate keys is valid, and a top-level
#: field no record holds is never validated (the whole-document validation refuses its
#: lone surrogate, so the slow path reads it).
ACCEPTED = {"duplicate_key_last_wins", "lone_surrogate_top_level"}


def test_the_bodies_test_what_they_say(monkeypatch) -> None:
    """The raw edits landed; the hostile bodies are refused unless ingestion takes them."""
    first = json.loads(HOSTILE["duplicate_key_last_wins"])["meetings"][0]["races"][0]
    assert first["runners"][0]["draw"] == 1
    for name, text in HOSTILE.items():
        assert (_outcome(text)[0] == "rows") is (name in ACCEPTED), name
    # the top-level surrogate is read by the slow path only
    _assert_same(HOSTILE["lone_surrogate_top_level"], monkeypatch, fast_taken=False)


def test_one_document_validation_gives_the_per_record_parsers_records() -> None:
    """``_validated_races`` (one validation) and ``_read_racecard`` (one per record) agree."""
    from racecast.ingestion.racecards import _read_racecard

    for card in (racecard(), _full_card()):
        document = json.loads(_text(card))
        whole = request._validated_races(copy.deepcopy(document), "f.racecard.json")
        each, rows, _ = _read_racecard("f.racecard.json", document, None)
        assert whole is not None and not rows
        assert [(r.location, r.race_id) for r in whole] == [(r.location, r.race_id) for r in each]
        for a, b in zip(whole, each, strict=True):
            assert request._canonical_rows(a, "racecards") == request._canonical_rows(
                b, "racecards"
            )
            assert a.meeting.model_dump(exclude={"races"}) == b.meeting.model_dump()
            assert a.header.model_dump(exclude={"runners"}) == b.header.model_dump()
            assert [r.card for r in a.runners] == [r.card for r in b.runners]
    broken = json.loads(_mutated("float_age"))  # a contract error: 4.0 is no int
    assert request._validated_races(broken, "f.racecard.json") is None
