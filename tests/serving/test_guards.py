"""Request bounds, auth back-off, per-key race cache, rejection logging and the OpenAPI contract.

Pure units (``json_depth``, ``limit_problems``, ``AuthBackoff``, ``RejectionLog``,
``RaceCache``) and the app over ``TestClient`` with the serving fakes (the loopback
versions against a real server are in ``test_hostile_loopback.py``).
"""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from racecast.inference import service as service_module
from racecast.serving.app import create_app
from racecast.serving.auth import API_KEYS_ENV, AuthBackoff
from racecast.serving.limits import (
    RequestLimits,
    RequestRejected,
    _problems,
    _within_bounds,
    json_content_type,
    json_depth,
    limit_problems,
    read_json_document,
)
from racecast.serving.middleware import RejectionLog
from racecast.serving.race_cache import RaceCache
from tests.serving.serving_fakes import (
    API_KEY,
    OTHER_KEY,
    FakeBundle,
    FakeReader,
    FakeStore,
    fake_online_features,
    racecard,
    racecard_text,
    settings,
)

HEADERS = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
LIMITS = RequestLimits(
    max_json_depth=8,
    max_races_per_request=3,
    max_runners_per_race=4,
    max_string_length=10,
    max_object_keys=5,
    max_error_details=3,
)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fakes(monkeypatch):
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    monkeypatch.setattr(service_module, "online_features", fake_online_features)
    monkeypatch.setattr(service_module, "OnlineReader", FakeReader)


def _client(clock=None, **overrides) -> TestClient:
    app = create_app(
        settings(**{"api_keys": (API_KEY, OTHER_KEY), **overrides}),
        bundle=FakeBundle(),
        feature_store=FakeStore({}),
        clock=clock or _Clock(),
    )
    return TestClient(app)


# ---------------------------------------------------------------------------- units
@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [[{"b": 1}]]}', 4),
        (b'{"a": "[[[[[[[[[[", "b": ["]]]"]}', 2),  # brackets inside strings do not count
        (b'["\\"[[[[", [1]]', 2),  # nor after an escaped quote
        (b'["\\\\", [[1]]]', 3),  # an escaped backslash does not escape the quote
        (b"[" * 5000 + b"]" * 5000, 5000),
    ],
)
def test_json_depth_counts_brackets_outside_strings(text, depth):
    assert json_depth(text) == depth


def _depth_by_hand(raw: bytes) -> int:
    """The reference, one byte at a time: a quote after an odd run of backslashes is no quote."""
    depth = deepest = backslashes = 0
    inside = False
    for code in raw:
        if code == 34 and backslashes % 2 == 0:
            inside = not inside
        elif not inside and code in (91, 123):
            depth += 1
            deepest = max(deepest, depth)
        elif not inside and code in (93, 125):
            depth -= 1
        backslashes = backslashes + 1 if code == 92 else 0
    return deepest


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{}"\\ ', max_size=8),
    lambda inner: st.lists(inner, max_size=6)
    | st.dictionaries(st.text(alphabet='k[]"\\', max_size=4), inner, max_size=6),
    max_leaves=40,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _JSON.map(lambda doc: json.dumps(doc).encode()),
        st.text(alphabet='[]{}"\\ a,', max_size=200).map(str.encode),
        st.integers(1025, 3000).map(lambda n: b'{"a": "]]"}' + b"[" * n + b"]" * n),
    )
)
def test_json_depth_equals_a_byte_by_byte_scan(raw):
    # both scans (translate for text without backslashes, numpy otherwise) agree with it
    assert json_depth(raw) == _depth_by_hand(raw)


@hypothesis_settings(max_examples=300, deadline=None)
@given(_JSON)
def test_the_fast_bounds_check_agrees_with_the_full_walk(document):
    limits = RequestLimits(**{**LIMITS.__dict__, "max_error_details": 1000})
    assert _within_bounds(document, limits) == (not _problems(document, limits))
    assert limit_problems(document, limits) == _problems(document, limits)


def test_deep_json_is_refused_before_parsing():
    with pytest.raises(RequestRejected) as caught:
        read_json_document(b"[" * 100_000 + b"]" * 100_000, LIMITS)
    (detail,) = caught.value.details
    assert detail["type"] == "limit_exceeded" and "max_json_depth = 8" in detail["msg"]


def test_limit_problems_name_the_bound_and_the_path():
    document = {
        "meetings": [
            {
                "course": "x" * 11,
                "races": [{"runners": [{}] * 5}, {"runners": []}],
            },
            {"races": [{}, {}]},
        ],
        "extra": {str(i): i for i in range(6)},
    }
    problems = limit_problems(
        document, RequestLimits(**{**LIMITS.__dict__, "max_error_details": 50})
    )
    by_loc = {tuple(p["loc"]): p["msg"] for p in problems}
    assert "max_string_length = 10" in by_loc[("body", "meetings", 0, "course")]
    assert "max_runners_per_race = 4" in by_loc[("body", "meetings", 0, "races", 0, "runners")]
    assert "max_races_per_request = 3" in by_loc[("body", "meetings", 1, "races")]
    assert "max_object_keys = 5" in by_loc[("body", "extra")]
    assert all(p["type"] == "limit_exceeded" for p in problems)


def test_limit_problems_are_bounded_and_within_bounds_is_clean():
    assert len(limit_problems({"a": ["x" * 11] * 3, "b": "y" * 11}, LIMITS)) == 3
    assert (
        limit_problems(json.loads(racecard_text()), RequestLimits(16, 100, 48, 2000, 200, 50)) == []
    )


def test_huge_integer_literal_is_a_json_error_not_a_crash():
    with pytest.raises(RequestRejected) as caught:
        read_json_document(b"[" + b"9" * 5000 + b"]", LIMITS)
    assert caught.value.details[0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ('application/json; charset="UTF8"', True),
        ("application/json; charset=latin-1", False),
        ("text/plain", False),
        ("application/jsonx", False),
        (None, False),
    ],
)
def test_json_content_type(value, ok):
    assert json_content_type(value) is ok


def test_auth_backoff_doubles_after_the_free_failures_and_forgets_quiet_addresses():
    clock = _Clock()
    backoff = AuthBackoff(free_failures=2, base_s=1.0, max_s=60.0, clock=clock)
    waits = [backoff.fail("a") for _ in range(6)]
    assert waits == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0]
    assert backoff.retry_after("a") == 8 and backoff.retry_after("b") == 0
    clock.now += 8.5
    assert backoff.retry_after("a") == 0
    assert backoff.fail("a") == 16.0  # the count survives a wait
    clock.now += 100  # quiet for longer than max_s: a fresh start
    assert backoff.fail("a") == 0.0
    assert [backoff.fail("c") for _ in range(12)][-1] == 60.0  # capped


def test_rejection_log_reports_once_per_interval_with_a_summary(caplog):
    clock = _Clock()
    log = RejectionLog(60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="racecast.serving.middleware"):
        for reason in ["invalid_request", "invalid_request", "auth_failed"]:
            log.note("1.2.3.4", reason, "POST /api/v1/predict")
        log.note("5.6.7.8", "not_found", "GET /x")
        clock.now += 61
        log.note("1.2.3.4", "auth_failed", "GET /y")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "1.2.3.4: 1 request(s)" in messages[0]
    assert "5.6.7.8" in messages[1]
    assert (
        "1.2.3.4: 3 request(s)" in messages[2]
        and "auth_failed: 2, invalid_request: 1" in messages[2]
    )


def test_race_cache_keeps_posts_per_key_and_server_races_first():
    cache = RaceCache(2)
    cache.put("key:a", {"race_id": "R", "by": "a"})
    assert cache.get("key:a", "R")["by"] == "a"
    assert cache.get("key:b", "R") is None
    cache.put_server({"race_id": "R", "by": "server"})
    cache.put("key:b", {"race_id": "R", "by": "b"})
    assert cache.get("key:a", "R")["by"] == cache.get("key:b", "R")["by"] == "server"
    cache.put("key:a", {"race_id": "S", "by": "a"})
    cache.put("key:a", {"race_id": "T", "by": "a"})  # size 2: the oldest post goes
    assert cache.get("key:b", "R")["by"] == "server"


# ---------------------------------------------------------------------------- over HTTP
def test_key_b_does_not_read_the_race_key_a_posted():
    with _client() as client:
        card = racecard()
        posted = client.post("/api/v1/predict", content=json.dumps(card), headers=HEADERS)
        assert posted.status_code == 200, posted.text
        mine = client.get("/api/v1/races/R-PRICED", headers={"X-API-Key": API_KEY})
        theirs = client.get("/api/v1/races/R-PRICED", headers={"X-API-Key": OTHER_KEY})
        # key B posts junk under the same id: key A still reads its own
        junk = racecard()
        junk["meetings"][0]["races"] = junk["meetings"][0]["races"][:1]
        junk["meetings"][0]["races"][0]["runners"] = junk["meetings"][0]["races"][0]["runners"][:2]
        other_post = client.post(
            "/api/v1/predict", content=json.dumps(junk), headers={**HEADERS, "X-API-Key": OTHER_KEY}
        )
        again = client.get("/api/v1/races/R-PRICED", headers={"X-API-Key": API_KEY})
    assert mine.status_code == 200 and mine.json()["race_id"] == "R-PRICED"
    assert theirs.status_code == 404
    assert other_post.status_code == 200, other_post.text
    assert again.json() == mine.json()


def test_server_owned_race_is_what_every_key_reads():
    with _client() as client:
        client.app.state.races.put_server({**_scored(client), "model_version": "server"})
        client.post("/api/v1/predict", content=racecard_text(), headers=HEADERS)
        for key in (API_KEY, OTHER_KEY):
            got = client.get("/api/v1/races/R-PRICED", headers={"X-API-Key": key})
            assert got.json()["model_version"] == "server"


def _scored(client) -> dict:
    body = client.post("/api/v1/predict", content=racecard_text(), headers=HEADERS).json()
    return next(r for r in body["races"] if r["race_id"] == "R-PRICED")


def test_wrong_keys_back_off_per_address_and_are_counted():
    clock = _Clock()
    with _client(clock=clock, auth_free_failures=3, auth_backoff_s=2.0) as client:
        codes = [
            client.get("/api/v1/horses/H1", headers={"X-API-Key": f"guess-{i}"}).status_code
            for i in range(5)
        ]
        valid_while_blocked = client.get("/api/v1/horses/H1", headers={"X-API-Key": API_KEY})
        clock.now += 2.5
        valid_after = client.get("/api/v1/horses/H1", headers={"X-API-Key": API_KEY})
        metrics = client.get("/metrics").text
    assert codes == [401, 401, 401, 401, 429]  # 4th failure starts a 2 s back-off
    assert valid_while_blocked.status_code == 429  # a right guess is not told apart
    assert valid_while_blocked.headers["Retry-After"] == "2"
    assert valid_after.status_code == 404  # the key works again (the horse is unknown)
    assert "racecast_auth_failures_total 4.0" in metrics
    assert 'racecast_rejected_requests_total{reason="auth_backoff"} 2.0' in metrics


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ],
)
def test_non_json_content_type_is_415(content_type):
    headers = {"X-API-Key": API_KEY} | ({"Content-Type": content_type} if content_type else {})
    with _client() as client:
        response = client.post("/api/v1/predict", content=racecard_text(), headers=headers)
        metrics = client.get("/metrics").text
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert 'racecast_rejected_requests_total{reason="unsupported_media_type"} 1.0' in metrics


def test_bounds_apply_after_auth_and_name_the_setting():
    with _client(max_runners_per_race=3) as client:
        unauthenticated = client.post("/api/v1/predict", content="[" * 50 + "]" * 50)
        deep = client.post("/api/v1/predict", content="[" * 50 + "]" * 50, headers=HEADERS)
        crowded = client.post("/api/v1/predict", content=racecard_text(), headers=HEADERS)
    assert unauthenticated.status_code == 401
    assert deep.status_code == 422 and "max_json_depth = 16" in deep.text
    assert crowded.status_code == 422
    assert crowded.json()["detail"][0]["loc"] == ["body", "meetings", 0, "races", 0, "runners"]
    assert "max_runners_per_race = 3" in crowded.json()["detail"][0]["msg"]


def test_422_lists_every_problem_with_its_json_path():
    card = racecard()
    race = card["meetings"][0]["races"][0]
    race["runners"][0]["odds"] = {"final": 1e300}
    race["runners"][1]["rating"] = -50.0
    race["off_time"] = "2099-02-06T14:30:00+08:00"
    with _client() as client:
        response = client.post("/api/v1/predict", content=json.dumps(card), headers=HEADERS)
    assert response.status_code == 422, response.text
    by_loc = {tuple(d["loc"]): d for d in response.json()["detail"]}
    at = ("body", "meetings", 0, "races", 0)
    assert (
        "outside the plausible range [1.01, 1000]"
        in by_loc[(*at, "runners", 0, "odds", "final")]["msg"]
    )
    assert "rating" in by_loc[(*at, "runners", 1, "rating")]["msg"]
    assert "off_time" in by_loc[(*at, "off_time")]["msg"]
    assert {d["type"] for d in by_loc.values()} == {"implausible_value"}


def test_422_problem_list_is_bounded():
    card = racecard()
    for race in card["meetings"][0]["races"]:
        for runner in race["runners"]:
            runner["rating"] = -1.0
    with _client(max_error_details=2) as client:
        detail = client.post("/api/v1/predict", content=json.dumps(card), headers=HEADERS).json()[
            "detail"
        ]
    assert len(detail) == 3
    assert (
        detail[-1]["type"] == "too_many_problems" and "max_error_details = 2" in detail[-1]["msg"]
    )


def test_plausibility_is_configurable_per_service():
    card = racecard()
    card["meetings"][0]["races"][0]["runners"][0]["odds"] = {"final": 1500.0}
    with _client() as strict, _client(plausibility={"odds_max": 2000.0}) as loose:
        assert (
            strict.post("/api/v1/predict", content=json.dumps(card), headers=HEADERS).status_code
            == 422
        )
        assert (
            loose.post("/api/v1/predict", content=json.dumps(card), headers=HEADERS).status_code
            == 200
        )


def test_openapi_request_bodies_are_the_contract_with_the_bounds_and_every_status():
    with _client() as client:
        document = client.get("/openapi.json").json()
        schemas = document["components"]["schemas"]
        predict = document["paths"]["/api/v1/predict"]["post"]
        body = predict["requestBody"]["content"]["application/json"]
        example = client.post(
            "/api/v1/predict", content=json.dumps(body["example"]), headers=HEADERS
        )
    assert body["schema"] == {"$ref": "#/components/schemas/RacecardFile"}
    assert {"RacecardFile", "RaceCard", "RunnerCard", "ResultsFile"} <= set(schemas)
    runners = schemas["RaceCard"]["properties"]["runners"]
    assert runners["maxItems"] == 48
    final = schemas["RunnerOdds"]["properties"]["final"]["anyOf"][0]
    assert (final["minimum"], final["maximum"]) == (1.01, 1000.0)
    assert {"200", "401", "409", "413", "415", "422", "429", "503"} <= set(predict["responses"])
    races = document["paths"]["/api/v1/races/{race_id}"]["get"]["responses"]
    assert {"200", "401", "404", "422", "429"} <= set(races)
    assert example.status_code == 200, example.text
    assert "racecard-format.md" not in json.dumps(document)
