"""The race-day board in a real browser: Playwright driving Debian's chromium against a
real ``racecast serve`` on loopback.

The project is the race-day test's (tests/inference/test_raceday.py ``_build``): the
synthetic world's history ingested and its features in a real Feast store, the last
simulated day in the upcoming folder, one of its horses renamed
``<script>alert(1)</script>``; the model is the serving tests' tiny fitted zoo, pickled.
The server is started as ``racecast serve`` on a free loopback port
(tests/serving/test_e2e_loopback.py ``_serve``), the browser is ``/usr/bin/chromium``
(Playwright's own browser download is not used; ``.ci/run`` installs chromium with apt)
launched headless with no network features.

The browser is refused without a key, logs in (the key in an HTTP-only, SameSite=Strict
cookie that scripts cannot read), opens the day (races in off-time order), clicks the
first race: the p_win it shows equal the API's to the displayed precision and sum to 1,
and the script-named horse is text (no dialog). A result pushed through ``POST
/api/v1/results`` turns the open page into "result in" by itself (polling), with the
finishing order and the log-loss contribution of the prediction shown before. Screenshots
go to ``data/08_reporting/board/``.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from racecast.inference.results import race_ids_by_off, select_races
from racecast.serving.board import COOKIE, SECURITY_HEADERS
from tests.inference.test_raceday import _build, _Chdir
from tests.pipelines.scoring import test_pipeline as scoring_run
from tests.serving import test_e2e_loopback as loopback
from tests.serving.tiny_zoo import make_bundle

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = scoring_run.ROOT / "data" / "08_reporting" / "board"
XSS = "<script>alert(1)</script>"
#: Milliseconds the open page gets to notice a pushed result (it polls every few seconds).
UPDATE_TIMEOUT_MS = 45_000


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> dict:
    """A race-day project before the last simulated day, one horse named like a script."""
    _, days = scoring_run._world()
    root = tmp_path_factory.mktemp("board") / "project"
    root.mkdir()
    with _Chdir(root):
        _build(root, days[:-1], days[-1])
    card_file = root / "data" / "01_raw" / "upcoming" / f"{days[-1]}.racecard.json"
    card = json.loads(card_file.read_text())
    first = race_ids_by_off(card_file.read_text())[0]
    race = next(r for m in card["meetings"] for r in m["races"] if r["race_id"] == first)
    renamed = next(r for r in race["runners"] if not r.get("non_runner"))
    renamed["horse_name"] = XSS
    card_file.write_text(json.dumps(card, indent=2))
    bundle = make_bundle()
    bundle_path = root / "data" / "06_models" / "board_bundle.pkl"
    bundle_path.parent.mkdir(parents=True, exist_ok=True)
    bundle_path.write_bytes(pickle.dumps(bundle))
    racecards, _ = scoring_run._world()
    return {
        "root": root,
        "day": days[-1],
        "card": card_file.read_text(),
        "results": racecards[f"{days[-1]}.results"],
        "renamed": renamed["horse_id"],
        "bundle": bundle,
        "bundle_path": bundle_path,
    }


@pytest.fixture(scope="module")
def server(day) -> Iterator[loopback.Server]:
    yield from (srv for srv, _ in loopback._serve(day["root"], day["bundle_path"]))


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _api_p_win(client: httpx.Client, card: str, race_id: str) -> dict[str, float]:
    """p_win of a race by horse, from ``POST /api/v1/predict`` of that race's racecard."""
    response = client.post("/api/v1/predict", content=select_races(card, [race_id]))
    assert response.status_code == 200, response.text
    (race,) = response.json()["races"]
    return {r["horse_id"]: r["p_win"] for r in race["runners"]}


def _shown_p_win(page) -> dict[str, str]:
    rows = page.locator("#runners tbody tr")
    return {
        rows.nth(i).get_attribute("data-horse-id"): rows.nth(i).locator(".p-win").inner_text()
        for i in range(rows.count())
    }


def _assert_same_to_displayed_precision(shown: dict[str, str], api: dict[str, float]) -> None:
    assert set(shown) == set(api)
    for horse_id, text in shown.items():
        assert re.fullmatch(r"\d\.\d{3}", text), text
        assert abs(float(text) - api[horse_id]) <= 0.0005 + 1e-12, (horse_id, text, api[horse_id])
    # the shown values sum to 1 within their rounding
    assert abs(sum(float(t) for t in shown.values()) - 1.0) <= 0.0005 * len(shown) + 1e-12


def test_the_board_in_a_real_browser(day, server, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    order = race_ids_by_off(day["card"])
    first, second = order[0], order[1]
    api = httpx.Client(
        base_url=server.url,
        timeout=60.0,
        headers={"X-API-Key": loopback.API_KEY, "Content-Type": "application/json"},
    )
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    console_errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    try:
        # refused without a key: the pages send the browser to the login form
        with httpx.Client(base_url=server.url, timeout=30.0) as anonymous:
            for path in ("/", f"/race/{first}", "/model"):
                refused = anonymous.get(path, follow_redirects=False)
                assert refused.status_code == 303 and refused.headers["location"] == "/login", path
            assert anonymous.get("/board/status").status_code == 401
        page.goto(f"{server.url}/race/{first}")
        assert page.url == f"{server.url}/login"
        page.fill("#api_key", "not-the-key")
        page.click("button[type=submit]")
        assert page.locator(".error").inner_text() == "wrong API key"

        # logged in: the key is in an HTTP-only strict cookie, in no URL, unreadable by scripts
        page.fill("#api_key", loopback.API_KEY)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/")
        (cookie,) = [c for c in context.cookies() if c["name"] == COOKIE]
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert loopback.API_KEY not in page.url
        assert COOKIE not in page.evaluate("document.cookie")

        # the day: every race in off-time order, security headers on the page
        response = page.goto(f"{server.url}/")
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name.lower()] == value, name
        shown_order = page.locator("#races tbody tr").evaluate_all(
            "rows => rows.map(r => r.getAttribute('data-race-id'))"
        )
        assert shown_order == order
        # the board's own stylesheet and script load under its CSP (nothing refused)
        header = page.evaluate("getComputedStyle(document.querySelector('header.bar')).backgroundColor")
        assert header == "rgb(29, 35, 48)"
        page.screenshot(path=str(SCREENSHOTS / "day.png"), full_page=True)

        # a race: the API's numbers, the script-named horse as text
        page.click(f'tr[data-race-id="{first}"] a.race-link')
        page.wait_for_url(re.compile(rf"/race/{re.escape(first)}"))
        shown = _shown_p_win(page)
        p_win = _api_p_win(api, day["card"], first)
        _assert_same_to_displayed_precision(shown, p_win)
        owned = api.get(f"/api/v1/races/{first}").json()  # the board's own prediction
        assert shown == {r["horse_id"]: f"{r['p_win']:.3f}" for r in owned["runners"]}
        renamed = page.locator(f'#runners tr[data-horse-id="{day["renamed"]}"] .horse-name')
        assert renamed.inner_text() == XSS
        assert dialogs == []
        assert page.locator("#race-state").get_attribute("data-state") in {"upcoming", "off"}
        page.screenshot(path=str(SCREENSHOTS / "race.png"), full_page=True)

        # a result pushed through the API: the open page turns to "result in" by itself
        pushed = api.post("/api/v1/results", content=select_races(day["results"], [first]))
        assert pushed.status_code == 200 and pushed.json()["status"] == "added", pushed.text
        page.wait_for_selector('#race-state[data-state="result in"]', timeout=UPDATE_TIMEOUT_MS)
        result = json.loads(select_races(day["results"], [first]))["results"][0]
        winners = [f["horse_id"] for f in result["finishers"] if f.get("position") == 1]
        order_shown = page.locator("#result li").evaluate_all(
            "items => items.map(i => i.getAttribute('data-horse-id'))"
        )
        assert winners and set(order_shown[: len(winners)]) == set(winners)
        expected_loss = sum(-math.log(p_win[w]) for w in winners) / len(winners)
        assert abs(float(page.locator("#log-loss").inner_text()) - expected_loss) <= 0.0005 + 1e-12
        assert _shown_p_win(page) == shown  # the prediction made before the result
        assert dialogs == []
        page.screenshot(path=str(SCREENSHOTS / "race_result.png"), full_page=True)

        # the day again: the first race has its result, the next is scored with it known
        page.click("text=Back to the day")
        page.wait_for_url(re.compile(r"/\?day="))
        state = page.locator(f'tr[data-race-id="{first}"] .state')
        assert state.get_attribute("data-state") == "result in"
        page.screenshot(path=str(SCREENSHOTS / "day_after_result.png"), full_page=True)
        page.click(f'tr[data-race-id="{second}"] a.race-link')
        page.wait_for_url(re.compile(rf"/race/{re.escape(second)}"))
        _assert_same_to_displayed_precision(_shown_p_win(page), _api_p_win(api, day["card"], second))

        # the model card of the serving bundle
        page.goto(f"{server.url}/model")
        assert page.locator("#model-version").inner_text() == str(day["bundle"].model_version)
        assert page.locator("#feature-service").inner_text() == day["bundle"].feature_service
        page.screenshot(path=str(SCREENSHOTS / "model.png"), full_page=True)

        assert not [e for e in console_errors if "Content Security Policy" in e], console_errors

        # logged out: the cookie is gone and the board is refused again
        page.click("text=Log out")
        page.wait_for_url(f"{server.url}/login")
        assert not [c for c in context.cookies() if c["name"] == COOKIE]
        page.goto(f"{server.url}/")
        assert page.url == f"{server.url}/login"
    finally:
        context.close()
        api.close()
