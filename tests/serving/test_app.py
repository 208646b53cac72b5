"""The inference service over HTTP (TestClient): scoring, auth, limits, errors, probes."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from racecast.inference import service as service_module
from racecast.inference.settings import SettingsError
from racecast.serving import app as app_module
from racecast.serving.app import create_app
from racecast.serving.auth import API_KEYS_ENV, hash_api_key
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
HORSES = {"H30": {"h_runs": 12, "h_wins": 3, "h_last_off_ts": 1_736_000_000.0, "h_last_gear": "B"}}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch):
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    monkeypatch.setattr(service_module, "online_features", fake_online_features)
    monkeypatch.setattr(service_module, "OnlineReader", FakeReader)


def _client(store=None, clock=None, **overrides) -> TestClient:
    app = create_app(
        settings(**overrides),
        bundle=FakeBundle(),
        feature_store=store if store is not None else FakeStore(HORSES),
        clock=clock or _Clock(),
    )
    return TestClient(app)


@pytest.fixture
def client():
    with _client() as c:
        yield c


def _predict(client, card=None, headers=HEADERS, explain=True):
    url = "/api/v1/predict" + ("?explain=true" if explain else "")
    return client.post(url, content=racecard_text(card), headers=headers)


def _race(body, race_id):
    return next(r for r in body["races"] if r["race_id"] == race_id)


def test_predict_scores_every_runner_with_probabilities_odds_and_stakes(client):
    response = _predict(client)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "racecast-win/7"
    assert body["feature_service"] == "combined_v1"
    assert [r["race_id"] for r in body["races"]] == ["R-PRICED", "R-UNPRICED"]
    for race in body["races"]:
        p = np.array([r["p_win"] for r in race["runners"]])
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert [r["rank"] for r in race["runners"]] == list(range(1, len(p) + 1))
        assert np.all(np.diff(p) <= 0)  # sorted by rank = by decreasing p_win
        assert race["model_version"] == "racecast-win/7"
        for runner in race["runners"]:
            assert runner["fair_odds"] == pytest.approx(1 / runner["p_win"])
            assert runner["explanation"], runner
            assert runner["explanation"][0]["feature"] in {"rating", "draw"}
    priced = _race(body, "R-PRICED")
    assert priced["off_time"] == "2025-02-06T06:30:00+00:00"
    top = priced["runners"][0]
    assert top["horse_id"] == "H30"  # highest rating
    # softmax(rating / 10) of 70, 60, 55, 50
    expected = np.exp(7.0) / np.exp([7.0, 6.0, 5.5, 5.0]).sum()
    assert top["p_win"] == pytest.approx(expected)
    assert top["market_odds"] == 2.5
    # stakes are sized on the default track, the combined one (the blend)
    assert priced["staking_track"] == "combined" and priced["stakeable"] is True
    assert top["edge"] == pytest.approx(top["p_win_combined"] * 2.5 - 1)
    full_kelly = (top["p_win_combined"] * 2.5 - 1) / 1.5
    assert top["kelly_fraction"] == pytest.approx(0.25 * full_kelly)
    assert top["stake_units"] == pytest.approx(100 * min(0.25 * full_kelly, 0.05))
    assert top["feature_staleness_days"] == 30.0 and top["stale"] is False
    by_horse = {r["horse_id"]: r for r in priced["runners"]}
    assert by_horse["H400"]["stale"] is True  # 400 days > 180
    assert by_horse["D1"]["feature_staleness_days"] is None and by_horse["D1"]["stale"] is False
    for runner in priced["runners"]:
        assert (runner["stake_units"] > 0) == (runner["edge"] > 0)
        assert (runner["stake_reason"] is None) == (runner["stake_units"] > 0)


def test_both_tracks_only_for_a_fully_priced_race(client):
    body = _predict(client).json()

    priced = _race(body, "R-PRICED")
    assert priced["market"] is True
    combined = [r["p_win_combined"] for r in priced["runners"]]
    market = [r["p_market"] for r in priced["runners"]]
    assert sum(combined) == pytest.approx(1.0) and sum(market) == pytest.approx(1.0)
    inverse = np.array([1 / r["market_odds"] for r in priced["runners"]])
    np.testing.assert_allclose(market, inverse / inverse.sum())

    unpriced = _race(body, "R-UNPRICED")
    assert unpriced["market"] is False
    assert all(r["p_win_combined"] is None and r["p_market"] is None for r in unpriced["runners"])
    by_horse = {r["horse_id"]: r for r in unpriced["runners"]}
    # the one priced runner still gets an edge; unpriced runners get no bet
    assert by_horse["H21"]["edge"] == pytest.approx(by_horse["H21"]["p_win"] * 3.0 - 1)
    assert by_horse["H20"]["edge"] is None and by_horse["H20"]["stake_units"] == 0.0


def test_fundamental_staking_track_sizes_bets_on_p_win():
    with _client(staking_track="fundamental") as c:
        race = _race(_predict(c).json(), "R-PRICED")
    top = race["runners"][0]
    assert race["staking_track"] == "fundamental"
    assert top["edge"] == pytest.approx(top["p_win"] * top["market_odds"] - 1)
    negative = [r for r in race["runners"] if r["edge"] is not None and r["edge"] <= 0]
    assert negative and all(r["kelly_fraction"] == 0 and r["stake_units"] == 0 for r in negative)
    assert all(r["stake_reason"] == "edge <= 0" for r in negative)


def test_missing_or_invalid_api_key_is_401_and_a_valid_one_200(client):
    missing = client.post("/api/v1/predict", content=racecard_text())
    invalid = _predict(client, headers={**HEADERS, "X-API-Key": "not-a-key"})
    assert missing.status_code == invalid.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "ApiKey"
    assert client.get("/api/v1/races/R-PRICED").status_code == 401
    assert _predict(client).status_code == 200


def test_keys_from_credentials_file_and_env_stored_hashed(tmp_path, monkeypatch):
    credentials = tmp_path / "credentials.yml"
    credentials.write_text(f"racecast_api_keys:\n  - {hash_api_key(OTHER_KEY)}\n")
    monkeypatch.setenv(API_KEYS_ENV, " env-key-1 , env-key-2 ")
    with _client(api_keys=(), credentials_path=credentials) as c:
        assert _predict(c, headers={**HEADERS, "X-API-Key": OTHER_KEY}).status_code == 200
        assert _predict(c, headers={**HEADERS, "X-API-Key": "env-key-2"}).status_code == 200
        assert _predict(c, headers={**HEADERS, "X-API-Key": hash_api_key(OTHER_KEY)}).status_code == 401


def test_refuses_to_start_without_keys_unless_anonymous_is_allowed():
    with pytest.raises(SettingsError, match="--insecure"):
        create_app(settings(api_keys=()), bundle=FakeBundle(), feature_store=FakeStore())
    with _client(api_keys=(), allow_anonymous=True) as c:
        assert _predict(c, headers={"Content-Type": "application/json"}).status_code == 200


def test_rate_limit_per_key_returns_429_with_retry_after():
    clock = _Clock()
    with _client(rate_limit_per_minute=3, api_keys=(API_KEY, OTHER_KEY), clock=clock) as c:
        for _ in range(3):
            assert c.get("/api/v1/races/unknown", headers=HEADERS).status_code == 404
        clock.now += 20
        refused = c.get("/api/v1/races/unknown", headers=HEADERS)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "40"
        # another key has its own window
        assert c.get("/api/v1/races/unknown", headers={"X-API-Key": OTHER_KEY}).status_code == 404
        clock.now += 40.5
        assert c.get("/api/v1/races/unknown", headers=HEADERS).status_code == 404


def test_a_predict_takes_one_rate_limit_token():
    # authorize is the router's dependency and predict's parameter: solved once per request
    with _client(rate_limit_per_minute=2, api_keys=(API_KEY,)) as c:
        assert [_predict(c).status_code for _ in range(3)] == [200, 200, 429]


def _detail(response):
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    return detail[0]


def test_broken_json_is_422_with_the_position(client):
    first = _detail(client.post("/api/v1/predict", content='{"format": ', headers=HEADERS))
    assert first["loc"][0] == "body" and isinstance(first["loc"][1], int)
    assert "JSON" in first["msg"]


def test_off_time_without_offset_is_422_naming_the_field(client):
    card = racecard()
    card["meetings"][0]["races"][1]["off_time"] = "2025-02-06T15:00:00"
    first = _detail(_predict(client, card))
    assert first["loc"] == ["body", "meetings", 0, "races", 1, "off_time"]
    assert "offset" in first["msg"]


def test_odds_not_above_one_is_422_naming_the_field(client):
    card = racecard()
    card["meetings"][0]["races"][0]["runners"][2]["odds"] = {"final": 1.0}
    first = _detail(_predict(client, card))
    assert first["loc"] == ["body", "meetings", 0, "races", 0, "runners", 2, "odds", "final"]
    assert "1.0" in first["msg"]


def test_oversize_body_is_413(client):
    with _client(max_body_bytes=200) as c:
        assert len(racecard_text()) > 200
        response = _predict(c)
    assert response.status_code == 413
    assert "200 bytes" in response.json()["detail"]


def test_races_endpoint_returns_the_last_predictions_and_404_for_unknown(client):
    assert client.get("/api/v1/races/R-PRICED", headers=HEADERS).status_code == 404
    scored = _race(_predict(client).json(), "R-PRICED")
    stored = client.get("/api/v1/races/R-PRICED", headers=HEADERS)
    assert stored.status_code == 200
    assert stored.json() == scored


def test_horses_endpoint_reads_the_online_state(client):
    found = client.get("/api/v1/horses/H30", headers=HEADERS)
    assert found.status_code == 200
    body = found.json()
    assert body["features"]["h_runs"] == 12 and body["features"]["h_last_gear"] == "B"
    assert body["features"]["h_win_rate"] is None
    assert body["last_run"].startswith("2025-01-04")
    assert client.get("/api/v1/horses/NOPE", headers=HEADERS).status_code == 404


def test_health_is_200_when_ready_and_503_when_the_store_is_down(client):
    ok = client.get("/health")
    assert ok.status_code == 200 and ok.json()["ready"] is True
    assert ok.json()["model_version"] == "racecast-win/7"
    with _client(store=FakeStore(broken=True)) as c:
        down = c.get("/health")
    assert down.status_code == 503
    assert down.json()["online_store"] is False and down.json()["bundle_loaded"] is True


def test_bundle_that_fails_to_load_leaves_the_service_not_ready(tmp_path):
    app = create_app(settings(bundle_uri=str(tmp_path / "missing.pkl")), feature_store=FakeStore())
    with TestClient(app) as c:
        assert c.get("/health").status_code == 503
        assert _predict(c).status_code == 503


def test_metrics_count_requests_predictions_and_staleness(client):
    _predict(client)
    client.get("/api/v1/races/X", headers=HEADERS)
    text = client.get("/metrics").text
    assert 'racecast_http_requests_total{method="POST",route="/api/v1/predict",status="200"} 1.0' in text
    assert 'racecast_http_requests_total{method="GET",route="/api/v1/races/{race_id}",status="404"} 1.0' in text
    assert 'racecast_predictions_total{track="fundamental"} 7.0' in text
    assert 'racecast_predictions_total{track="combined"} 4.0' in text
    # 6 runners with a last run (D1 debuts): 30, 400, 12, 20, 21, 22 days
    assert "racecast_feature_staleness_days_count 6.0" in text
    assert "racecast_http_request_duration_seconds_bucket" in text
    assert 'racecast_model_info{feature_service="combined_v1",model_version="racecast-win/7"} 1.0' in text


def test_unexpected_error_is_500_without_traceback(client, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail at /srv/racecast")

    monkeypatch.setattr(service_module, "online_features", explode)
    response = _predict(client, headers={**HEADERS, "X-Request-ID": "req-42"})

    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "request_id": "req-42"}
    assert response.headers["X-Request-ID"] == "req-42"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "secret internal detail" in caplog.text  # the trace goes to the log


def test_openapi_documents_the_routes(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/predict", "/api/v1/races/{race_id}", "/api/v1/horses/{horse_id}", "/health"} <= set(spec["paths"])
    assert "APIKeyHeader" in json.dumps(spec["components"]["securitySchemes"])


def test_explanations_are_computed_alongside_the_predictions_only_when_asked_once_per_race():
    class _ThreadRecordingBundle(FakeBundle):
        explained: list[list[str]] = []

        def explain(self, features, top_k=5):
            self.explained_on = threading.current_thread().name
            self.explained.append(sorted(set(features["race_id"])))
            return super().explain(features, top_k)

    bundle = _ThreadRecordingBundle()
    app = create_app(settings(), bundle=bundle, feature_store=FakeStore(HORSES), clock=_Clock())
    with TestClient(app) as c:
        plain = _predict(c, explain=False).json()
        assert bundle.explained == []  # not asked: not computed
        assert all(r["explanation"] is None for race in plain["races"] for r in race["runners"])
        body = _predict(c).json()
        assert bundle.explained_on.startswith("racecast-explain")
        assert bundle.explained == [["R-PRICED", "R-UNPRICED"]]
        assert _race(body, "R-PRICED")["runners"][0]["explanation"]
        again = _predict(c).json()  # the same races and features: explained from the cache
        assert bundle.explained == [["R-PRICED", "R-UNPRICED"]]
        assert again["races"] == body["races"]
        spec = c.get("/openapi.json").json()
        names = [p["name"] for p in spec["paths"]["/api/v1/predict"]["post"]["parameters"]]
        assert "explain" in names


def test_concurrent_requests_are_scored_one_at_a_time_and_all_answered():
    class _CountingBundle(FakeBundle):
        active = peak = 0
        lock = threading.Lock()

        def predict(self, features, kept=None):
            with self.lock:
                type(self).active += 1
                type(self).peak = max(self.peak, self.active)
            try:
                threading.Event().wait(0.01)
                return super().predict(features, kept)
            finally:
                with self.lock:
                    type(self).active -= 1

    app = create_app(settings(), bundle=_CountingBundle(), feature_store=FakeStore(HORSES))

    async def run() -> list[int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                posts = [
                    c.post("/api/v1/predict", content=racecard_text(), headers=HEADERS)
                    for _ in range(8)
                ]
                return [r.status_code for r in await asyncio.gather(*posts)]

    assert asyncio.run(run()) == [200] * 8
    assert _CountingBundle.peak == 1


@pytest.mark.parametrize("freeze_gc, frozen", [(None, False), (True, True), (False, False)])
def test_gc_freeze_once_ready(monkeypatch, freeze_gc, frozen):
    calls = []
    monkeypatch.setattr(app_module.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(app_module.gc, "collect", lambda: calls.append("collect") or 0)
    app = create_app(settings(), bundle=FakeBundle(), feature_store=FakeStore(HORSES), freeze_gc=freeze_gc)
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
    assert calls == (["collect", "freeze"] if frozen else [])
