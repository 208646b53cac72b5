"""Fuzzing: whatever the files hold, ingestion quarantines or rejects, and counts add up.

Runs are reproducible (``derandomize``). Explore more with
``RACECAST_FUZZ_EXAMPLES=1000 pytest tests/pipelines/ingestion/test_racecard_fuzz.py``.
"""

from __future__ import annotations

import copy
import io
import json
import os

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from racecast.data.schema import RacesSchema, RunnersSchema

from .builders import (
    PARAMS,
    files,
    finisher,
    ingest,
    meeting,
    race,
    racecard,
    result,
    results,
    runner,
)

FUZZ = settings(
    max_examples=int(os.environ.get("RACECAST_FUZZ_EXAMPLES", "30")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

WEIRD_STRINGS = st.sampled_from(
    [
        "",
        " ",
        "?0",
        "?1",
        "H1",
        "G1",
        "R1",
        "\x00",
        "\ud800",
        "a\udc00b",
        "💥",
        "x" * 300,
        "NaN",
        "1e400",
        "2004-03-14",
        "2004-02-30",
        "2004-03-14T14:30:00",
        "2004-03-14T14:30:00Z",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-12:00",
        "official",
        "void",
        "finished",
        "flat",
        "racecast.racecard/1",
        "racecast.racecard/1.1",
        "took_no_part",
        "G1",
        "listed",
    ]
) | st.text(max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | WEIRD_STRINGS
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(WEIRD_STRINGS, inner, max_size=3),
    max_leaves=8,
)
PARAMS_ = st.sampled_from(
    [
        PARAMS,
        {**PARAMS, "source": "synthetic"},
        {**PARAMS, "months": ["2004-03"]},
        {**PARAMS, "months": []},
    ]
)


def _base() -> tuple[dict, dict]:
    """A valid racecard (two meetings, four races; contract 1.1) and its results (v1)."""
    card = {
        "format": "racecast.racecard/1.1",
        "meetings": [
            meeting(
                "2004-03-14",
                [
                    race("A1", "2004-03-14T13:00:00+08:00", race_grade="G1", source_race_id="5"),
                    race("A2", "2004-03-14T13:30:00+08:00", n=4),
                ],
            ),
            meeting(
                "2004-04-11",
                [
                    race(
                        "B1",
                        "2004-04-11T13:00:00+08:00",
                        runners=[
                            runner("H1", 1, odds={"final": 99.0, "final_capped": True}),
                            runner("H2", 2),
                            runner("H3", 3, non_runner=True),
                            runner("H4", 16),  # a standby starter
                        ],
                    ),
                    race("B2", "2004-04-11T14:00:00+08:00"),
                ],
                course="HV",
            ),
        ],
    }
    res = {
        "format": "racecast.results/1",
        "results": [
            result("A1"),
            result(
                "A2",
                [
                    finisher("H1", 1, finish_time_s=70.0),
                    finisher("H2", 1, finish_time_s=70.0),
                    finisher("H3", 3),
                    finisher("H4", None, "pulled_up"),
                ],
            ),
            result(
                "B1", [finisher("H1", 1), finisher("H2", 2), finisher("H4", None, "took_no_part")]
            ),
            result("B2", [], status="void"),
        ],
    }
    return card, res


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    """Every path into a decoded JSON value."""
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*path, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_paths(item, (*path, i)))
    return out


def _mutate(doc: dict, path: tuple, action: str, value: object) -> None:
    """Apply one mutation at ``path`` (the root is never replaced)."""
    if not path:
        return
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "delete":
        del parent[key]
    elif action == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    else:
        parent[key] = value


def _check(raw: dict, params: dict) -> None:
    """Ingest and check everything that must hold for any input."""
    parsed, (races, runners, quarantine, report) = ingest(
        raw, params
    )  # counts add up, nothing raised
    RacesSchema.validate(races)
    RunnersSchema.validate(runners)
    assert (runners["odds_final"].dropna() > 1.0).all()
    active = runners[~runners["non_runner"]].groupby("race_id").size()
    assert (
        races.set_index("race_id")["n_runners"] == active.reindex(races["race_id"]).to_numpy()
    ).all()
    for frame in (*parsed[:3], races, runners, quarantine):
        frame.to_parquet(io.BytesIO())
    rejected = {r["file"] for r in report["files"]["rejected"]}
    assert all(r["error"].startswith(r["file"] + ": ") for r in report["files"]["rejected"])
    assert not rejected & set(quarantine["source_file"])
    names = {f"{partition_id}.json" for partition_id in raw}
    assert quarantine["source_file"].isin(names).all()
    assert all(detail.split(": ", 1)[0] in names for detail in quarantine["detail"])


FILE_IDS = st.sampled_from(["x.racecard", "y.results", "sub/z.racecard", "sub/w.results", "v.csv"])
WRAPPED = st.one_of(
    st.builds(lambda v: json.dumps({"format": "racecast.racecard/1", "meetings": v}), VALUES),
    st.builds(lambda v: json.dumps({"format": "racecast.results/1", "results": v}), VALUES),
    st.builds(
        lambda v: json.dumps(
            {
                "format": "racecast.racecard/1",
                "meetings": [{"date": "2004-03-14", "course": "ST", "races": [v]}],
            }
        ),
        VALUES,
    ),
    st.builds(lambda v: json.dumps({"format": "racecast.results/1", "results": [v]}), VALUES),
)
PAYLOADS = st.one_of(VALUES.map(json.dumps), st.text(max_size=40), WRAPPED)


@FUZZ
@given(
    batch=st.lists(st.tuples(FILE_IDS, PAYLOADS), max_size=4, unique_by=lambda item: item[0]),
    params=PARAMS_,
)
def test_arbitrary_payloads_never_raise(batch, params):
    _check(files(dict(batch)), params)


@FUZZ
@given(data=st.data(), params=PARAMS_)
def test_mutated_racecards_never_raise(data, params):
    card, res = _base()
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        doc = data.draw(st.sampled_from([card, res]), label="document")
        path = data.draw(st.sampled_from(_paths(doc)), label="path")
        action = data.draw(
            st.sampled_from(["delete", "replace", "weird", "duplicate"]), label="action"
        )
        value = data.draw(VALUES if action == "replace" else WEIRD_STRINGS, label="value")
        _mutate(doc, path, action, value)
    raw = {"2004/a.racecard": json.dumps(card), "2004/a.results": json.dumps(res)}
    if data.draw(st.booleans(), label="second copy of the racecard"):
        raw["2004/b.racecard"] = (
            racecard(*card["meetings"][:1]) if isinstance(card.get("meetings"), list) else "{}"
        )
    _check(files(raw), params)


def test_unmutated_base_is_clean():
    card, res = _base()
    _, (races, runners, quarantine, report) = ingest(
        files({"a.racecard": json.dumps(card), "a.results": results(*res["results"])})
    )
    assert quarantine.empty and len(races) == 4 and len(runners) == 14
    assert report["warning_reasons"] == {"draw_above_field": 1}
    assert report["races"]["void"] == 1 and report["runners"]["non_runners"] == 1
    assert pd.Series(races["race_no"]).tolist() == [1, 2, 1, 2]
