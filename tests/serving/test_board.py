"""The race-day board over TestClient (fake bundle and features): access, headers,
escaping, same numbers as the API, results and the pre-off prediction.

The real server in a real browser is tests/serving/test_board_browser.py (slow).
"""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from racecast.inference import service as service_module
from racecast.inference.guard import LookAheadError, Violation
from racecast.inference.results import RaceDayPaths
from racecast.serving import board as board_module
from racecast.serving.app import create_app
from racecast.serving.auth import API_KEYS_ENV
from racecast.serving.board import COOKIE, SECURITY_HEADERS, ReportPaths
from racecast.serving.board_day import day_files, log_loss_contribution, pick_day
from tests.serving.serving_fakes import (
    API_KEY,
    NOT_STAKEABLE,
    FakeBundle,
    FakeReader,
    FakeStore,
    fake_online_features,
    racecard,
    settings,
)

XSS = "<script>alert(1)</script>"
DAY = "2025-02-06"


@pytest.fixture(autouse=True)
def _fake_features(monkeypatch):
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    monkeypatch.setattr(service_module, "online_features", fake_online_features)
    monkeypatch.setattr(service_module, "OnlineReader", FakeReader)


@pytest.fixture
def paths(tmp_path) -> RaceDayPaths:
    upcoming, raceday = tmp_path / "upcoming", tmp_path / "raceday"
    upcoming.mkdir()
    raceday.mkdir()
    card = racecard()
    card["meetings"][0]["races"][0]["runners"][0]["horse_name"] = XSS
    card["meetings"][0]["races"][0]["runners"][1]["horse_name"] = "Moon Rebel"
    (upcoming / f"{DAY}.racecard.json").write_text(json.dumps(card))
    return RaceDayPaths(
        races=tmp_path / "races.parquet",
        runners=tmp_path / "runners.parquet",
        state={},
        raceday=raceday,
        upcoming=(upcoming,),
    )


def _client(paths, **overrides) -> TestClient:
    app = create_app(settings(**overrides), bundle=FakeBundle(), feature_store=FakeStore(), raceday_paths=paths)
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def client(paths):
    with _client(paths) as c:
        yield c


def _login(client, key=API_KEY):
    return client.post("/login", data={"api_key": key})


def _shown(html: str, css_class: str = "p-win") -> dict[str, str]:
    """horse_id -> the text of the runner's cell of that class, on a race page."""
    rows = re.findall(r'<tr data-horse-id="([^"]+)">(.*?)</tr>', html, flags=re.S)
    return {hid: re.search(rf'class="num {css_class}">([^<]*)<', row).group(1) for hid, row in rows}


def test_pages_refuse_unauthenticated_visitors_without_counting_them_as_failed_keys(client):
    for path in ("/", "/race/R-PRICED", "/model", f"/?day={DAY}"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/login", path
        assert "R-PRICED" not in response.text
    for path in ("/board/status", "/board/plots/kelly.png"):
        assert client.get(path).status_code == 401, path
    # a wrong cookie is refused too
    client.cookies.set(COOKIE, "not-the-key")
    assert client.get("/").headers["location"] == "/login"
    client.cookies.clear()
    # ten cookie-less visits are not failed attempts: the right key still logs in at once
    for _ in range(10):
        client.get("/")
    assert _login(client).status_code == 303


def test_login_keeps_the_key_in_an_http_only_strict_cookie_never_in_a_url(client):
    wrong = _login(client, "not-the-key")
    assert wrong.status_code == 401 and "wrong API key" in wrong.text
    assert COOKIE not in wrong.cookies and "set-cookie" not in wrong.headers
    response = _login(client)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={API_KEY};")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "R-PRICED" in page.text
    assert API_KEY not in page.text and API_KEY not in str(page.url)
    assert client.get("/login").headers["location"] == "/"  # already logged in
    out = client.post("/logout")
    assert out.headers["location"] == "/login" and f'{COOKIE}=""' in out.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/").status_code == 303


def test_board_responses_carry_csp_and_security_headers(client):
    _login(client)
    for path in ("/", "/race/R-PRICED", "/model", "/login", "/board/status", "/board/static/board.js"):
        response = client.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (path, name)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert client.get("/").headers["cache-control"] == "no-store"
    assert client.get("/board/static/../app.py").status_code == 404
    assert client.get("/board/static/other.js").status_code == 404
    # no inline script anywhere: the CSP would block it
    assert "<script>" not in client.get("/race/R-PRICED").text


def test_a_horse_named_like_a_script_renders_as_text(client):
    _login(client)
    for path in ("/", "/race/R-PRICED"):
        html = client.get(path).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert XSS not in html, path


def test_board_shows_the_services_numbers_the_api_answers(client):
    _login(client)
    html = client.get("/race/R-PRICED").text
    shown = _shown(html)
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    posted = client.post("/api/v1/predict", content=json.dumps(racecard()), headers=headers).json()
    race = next(r for r in posted["races"] if r["race_id"] == "R-PRICED")
    assert shown == {r["horse_id"]: f"{r['p_win']:.3f}" for r in race["runners"]}
    combined = _shown(html, "p-win-combined")
    assert combined == {r["horse_id"]: f"{r['p_win_combined']:.3f}" for r in race["runners"]}
    stakes = _shown(html, "stake")
    assert stakes == {r["horse_id"]: f"{r['stake_units']:.2f}" for r in race["runners"]}
    assert abs(sum(float(v) for v in shown.values()) - 1) <= 0.0005 * len(shown) + 1e-12
    # the board's prediction is the server-owned race every key reads back
    cached = client.get("/api/v1/races/R-PRICED", headers={"X-API-Key": API_KEY}).json()
    assert {r["horse_id"]: r["p_win"] for r in cached["runners"]} == {
        r["horse_id"]: r["p_win"] for r in race["runners"]
    }
    # the unpriced race: no combined probability, no stake, and the reason
    unpriced = client.get("/race/R-UNPRICED").text
    assert set(_shown(unpriced, "p-win-combined").values()) == {"–"}
    assert "no price" in unpriced or "market" in unpriced


def test_stakes_of_a_track_that_is_not_stakeable_are_zero_with_the_reason(paths):
    bundle = FakeBundle()
    bundle.staking_validation = {track: dict(NOT_STAKEABLE) for track in ("fundamental", "combined")}
    app = create_app(settings(), bundle=bundle, feature_store=FakeStore(), raceday_paths=paths)
    with TestClient(app, follow_redirects=False) as c:
        _login(c)
        html = c.get("/race/R-PRICED").text
    assert "validation ROI -0.1870 &lt;= 0 on 96 bets" in html  # the race's reason
    assert set(_shown(html, "stake").values()) == {"0.00"}
    reasons = re.findall(r'<td class="reason">(.*?)</td>', html)
    assert len(reasons) == 4 and all("track not stakeable (above)" in r for r in reasons)


def test_a_pushed_result_updates_the_board_with_the_pre_off_prediction(client, paths):
    _login(client)
    before = client.get("/race/R-PRICED").text
    p_before = _shown(before)
    version = client.get("/board/status").json()["version"]
    assert 'data-state="off"' in before and "Log-loss" not in before
    result = {
        "format": "racecast.results/1",
        "results": [
            {
                "race_id": "R-PRICED",
                "status": "official",
                "finishers": [
                    {"horse_id": "H400", "position": 1, "outcome": "finished"},
                    {"horse_id": "H30", "position": 2, "outcome": "finished"},
                    {"horse_id": "D1", "position": None, "outcome": "fell"},
                    {"horse_id": "H12", "position": 3, "outcome": "finished"},
                ],
            }
        ],
    }
    (paths.raceday / "R-PRICED.results.json").write_text(json.dumps(result))
    assert client.get("/board/status").json()["version"] != version
    after = client.get("/race/R-PRICED").text
    assert 'data-state="result in"' in after
    order = re.findall(r'<li data-horse-id="([^"]+)">([^<]*)</li>', after)
    assert [h for h, _ in order] == ["H400", "H30", "H12", "D1"]
    assert "Moon Rebel" in order[0][1] and "(fell)" in order[3][1]
    assert _shown(after) == p_before  # the prediction made before the result, kept
    cached = client.get("/api/v1/races/R-PRICED", headers={"X-API-Key": API_KEY}).json()
    p_winner = next(r["p_win"] for r in cached["runners"] if r["horse_id"] == "H400")
    shown_loss = re.search(r'id="log-loss">([^<]*)<', after).group(1)
    assert shown_loss == f"{-math.log(p_winner):.3f}"
    day = client.get("/").text
    assert re.search(r'data-race-id="R-PRICED".*?data-state="result in"', day, flags=re.S)
    assert re.search(r'data-race-id="R-UNPRICED".*?data-state="off"', day, flags=re.S)


def test_the_board_is_scored_at_startup_and_once_a_push_rescored_its_day(client, paths):
    """The app scores the board's day when it starts and, after a push, what
    POST /api/v1/results does: re-scores the day, so the next page finds every
    prediction current (nothing left to score for a visitor)."""
    board = client.app.state.board
    assert board is not None  # the app wires its board for the results route
    assert board._scored  # the day the board opens on was scored at startup
    _login(client)
    client.get("/")
    result = {"format": "racecast.results/1", "results": [{"race_id": "R-PRICED", "status": "void"}]}
    (paths.raceday / "R-PRICED.results.json").write_text(json.dumps(result))
    status = client.get("/board/status").json()
    assert status["version"] not in board._scored.values()  # the day is stale now
    board.rescore(client.app.state.service, ["R-PRICED"])
    assert status["version"] in board._scored.values()  # ... and current after the re-score


#: The first bytes of a PNG file (the plot routes serve the file as it is).
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture(autouse=True)
def reports(tmp_path, monkeypatch) -> ReportPaths:
    """An empty reporting folder for every test (the repository's own reports unread)."""
    folder = tmp_path / "08_reporting"
    folder.mkdir()
    found = ReportPaths(
        evaluation=folder / "evaluation.json",
        reliability=folder / "reliability.png",
        kelly=folder / "kelly.png",
        monitoring=folder / "monitoring.json",
        registry=folder / "registry.json",
    )
    monkeypatch.setattr(board_module, "report_paths", lambda *a, **k: found)
    return found


def test_races_known_before_the_board_scored_them_are_scored_point_in_time_at_the_off(paths, monkeypatch):
    """A result pushed before the server ever scored the race (a restart), and a race the
    point-in-time guard refuses although nothing was pushed here: both are scored from the
    offline store at their off (here the fake features), not from the online store."""
    as_of_calls = []

    def as_of_features(store, service, rows, as_of, params=None):
        as_of_calls.append((sorted(set(rows["race_id"])), as_of))
        return fake_online_features(rows, service)

    def guarded(rows, service, *args, **kwargs):
        if "R-UNPRICED" in set(rows["race_id"]):
            off = pd.Timestamp(rows["off_time"].iloc[-1])
            raise LookAheadError([Violation("R-UNPRICED", "horse_form", "horse_id=H20", off, off)])
        return fake_online_features(rows, service, *args, **kwargs)

    monkeypatch.setattr(service_module, "features_as_of", as_of_features)
    monkeypatch.setattr(service_module, "online_features", guarded)
    result = {
        "format": "racecast.results/1",
        "results": [{"race_id": "R-PRICED", "status": "official",
                     "finishers": [{"horse_id": "H30", "position": 1, "outcome": "finished"}]}],
    }
    (paths.raceday / "R-PRICED.results.json").write_text(json.dumps(result))
    with _client(paths) as c:
        _login(c)
        day = c.get("/").text
        assert re.search(r'data-race-id="R-PRICED".*?data-state="result in"', day, flags=re.S)
        assert re.search(r'data-race-id="R-UNPRICED".*?data-state="off"', day, flags=re.S)
        # both scored once, point in time at (or after) every off of the races scored
        assert sorted(ids for ids, _ in as_of_calls) == [["R-PRICED", "R-UNPRICED"]]
        assert pd.Timestamp(as_of_calls[0][1]) == pd.Timestamp("2025-02-06T15:00:00+08:00")
        html = c.get("/race/R-PRICED").text
        assert "(point in time at the off)" in html
        shown, cached = _shown(html), c.get("/api/v1/races/R-PRICED", headers={"X-API-Key": API_KEY}).json()
        assert shown == {r["horse_id"]: f"{r['p_win']:.3f}" for r in cached["runners"]}
        p_winner = next(r["p_win"] for r in cached["runners"] if r["horse_id"] == "H30")
        assert re.search(r'id="log-loss">([^<]*)<', html).group(1) == f"{-math.log(p_winner):.3f}"
        assert "(point in time at the off)" in c.get("/race/R-UNPRICED").text
        c.get("/")
        assert len(as_of_calls) == 1  # nothing changed: nothing scored again


def test_model_card_names_version_feature_service_evaluation_plots_and_drift(client, reports):
    _login(client)
    html = client.get("/model").text
    assert "racecast-win/7" in html and "combined_v1" in html
    assert "No monitoring report" in html and "No evaluation report" in html
    assert "/board/plots/" not in html
    assert 'id="monitoring"' not in client.get("/").text
    reports.evaluation.write_text(
        json.dumps({"split": {"holdout_start": "2024-09-03", "n_evaluated_races": 690},
                    "models": {"stacked": {"track": "fundamental", "log_loss": 1.78973, "pseudo_r2": 0.2007}}})
    )
    reports.monitoring.write_text(
        json.dumps({"is_drift": True, "action": "alert", "reasons": ["feature drift in ['<b>age</b>']"]})
    )
    reports.registry.write_text(json.dumps({"model_name": "racecast-win", "version": "7", "aliases": ["champion"]}))
    reports.reliability.write_bytes(PNG)
    assert "Monitoring: drift detected (action: alert)" in client.get("/").text
    html = client.get("/model").text
    assert re.search(r"<td>stacked</td><td>fundamental</td><td class=\"num\">1.7897</td>", html)
    assert "Drift detected" in html and "&lt;b&gt;age&lt;/b&gt;" in html
    assert "aliases champion" in html
    assert 'src="/board/plots/reliability.png"' in html and "kelly.png" not in html
    plot = client.get("/board/plots/reliability.png")
    assert plot.status_code == 200 and plot.content == PNG and plot.headers["content-type"] == "image/png"
    assert client.get("/board/plots/kelly.png").status_code == 404
    assert client.get("/board/plots/evaluation.png").status_code == 404
    client.cookies.clear()
    assert client.get("/board/plots/reliability.png").status_code == 401


def test_a_key_with_cookie_syntax_characters_logs_in(paths):
    key = 'k;ey "with" spaces,=\u00e9'
    with _client(paths, api_keys=(key,)) as c:
        assert _login(c, key).status_code == 303
        assert c.get("/").status_code == 200


def test_anonymous_service_needs_no_key(paths, monkeypatch):
    with _client(paths, api_keys=(), allow_anonymous=True) as anonymous:
        assert anonymous.get("/").status_code == 303
        assert _login(anonymous, "").status_code == 303
        assert anonymous.get("/").status_code == 200


def test_day_helpers():
    assert pick_day(["2025-02-05", "2025-02-06"]) == "2025-02-06"
    assert pick_day(["2025-02-05"], "2025-02-05") == "2025-02-05"
    assert pick_day(["2025-02-05"], "2025-02-07") is None
    with pytest.raises(ValueError, match="day: .* YYYY-MM-DD"):
        pick_day(["2025-02-05"], "x'<")
    assert day_files([]) == {}
    runners = [{"horse_id": "A", "p_win": 0.25}, {"horse_id": "B", "p_win": 0.75}]
    win = {"status": "official", "finishers": [{"horse_id": "A", "position": 1}]}
    assert log_loss_contribution(runners, win) == pytest.approx(math.log(4))
    heat = {"status": "official", "finishers": [{"horse_id": "A", "position": 1}, {"horse_id": "B", "position": 1}]}
    assert log_loss_contribution(runners, heat) == pytest.approx((math.log(4) - math.log(0.75)) / 2)
    assert log_loss_contribution(runners, {"status": "void", "finishers": []}) is None
