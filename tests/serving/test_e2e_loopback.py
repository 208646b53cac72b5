"""End to end over a real socket: the synthetic world, a real Feast store, ``racecast serve``.

A temporary project gets the synthetic world's history ingested and its features applied
and materialized into the Feast online store by Kedro's runner (the scoring pipeline
test's ``project`` fixture and ``_run`` helper; the last simulated race day is never
ingested: it is tomorrow). The model is the serving tests' tiny fitted zoo bundle,
pickled into the project as a ``--bundle`` path, so no MLflow registry is involved.

The server is the real command, ``python -m racecast.cli serve --host 127.0.0.1 --port N
--bundle <pickle>`` (the ``racecast`` console script's entry point), run as a subprocess
from the temporary project root with a copy of ``conf/base``, the API key in
``RACECAST_API_KEYS`` and every other ``RACECAST_*`` variable removed. A subprocess rather
than uvicorn in a thread because it exercises what an operator runs (CLI, settings from
the project's conf, lifespan loading of bundle and store, uvicorn's own startup and
SIGTERM shutdown), shares no interpreter state with the test, and can always be stopped:
the fixture's ``finally`` terminates it (kill after a grace period) even when startup
fails. The port is a free loopback port picked by the kernel; if another process grabs
it before uvicorn binds, the server exits with "address already in use" and is started
again on a fresh port. ``GET /health`` is polled (20 times a second) until it reports
ready, with a deadline; a server that dies meanwhile fails the test with its log.

The reference answer is ``racecast predict`` (click's runner, in the same project, with the
same bundle pickle and online store), so the HTTP path and the CLI path are compared on
tomorrow's racecard file.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from racecast.cli import cli
from racecast.inference.settings import ENV_PREFIX
from racecast.serving.auth import API_KEYS_ENV
from tests.pipelines.scoring import test_pipeline as scoring_run

pytestmark = pytest.mark.slow

ROOT = scoring_run.ROOT
API_KEY = "e2e-loopback-key-5f0c9a1e7b3d4c2a"
#: Seconds the server gets to load the bundle and the store and answer ``/health``.
STARTUP_DEADLINE_S = 60.0
#: Seconds a terminated server gets to shut down before it is killed.
SHUTDOWN_GRACE_S = 10.0
_START_ATTEMPTS = 3

# The scoring pipeline test's fixtures: a temporary project (cwd) and the tiny bundle.
project = scoring_run.project
bundle = scoring_run.bundle


@dataclass
class Server:
    """A running ``racecast serve`` subprocess."""

    url: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-6000:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=SHUTDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SHUTDOWN_GRACE_S)


def _wait_ready(server: Server) -> dict | None:
    """``/health`` body once ready; None if the server exited (it could not bind)."""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return None
        try:
            response = httpx.get(f"{server.url}/health", timeout=2.0)
        except httpx.TransportError as exc:  # not listening yet
            last = repr(exc)
        else:
            body = response.json()
            if response.status_code == 200 and body.get("ready") is True:
                return body
            last = f"{response.status_code} {response.text}"
            if body.get("bundle_loaded") is False:  # startup is over: it will never be ready
                break
        time.sleep(0.05)
    pytest.fail(f"racecast serve is not ready (last /health: {last}); log:\n{server.output()}")


def _serve(root: Path, bundle_path: Path) -> Iterator[tuple[Server, dict]]:
    """Start ``racecast serve`` in ``root``, yield it once ready, always stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env[API_KEYS_ENV] = API_KEY
    env["PYTHONUNBUFFERED"] = "1"
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = _free_port()
        log = root / f"serve-{attempt}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "racecast.cli",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--bundle",
                    str(bundle_path),
                ],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        server = Server(f"http://127.0.0.1:{port}", process, log)
        try:
            health = _wait_ready(server)
            if health is not None:
                yield server, health
                return
            if "address already in use" not in server.output().lower():
                pytest.fail(
                    f"racecast serve exited with {process.returncode}; log:\n{server.output()}"
                )
        finally:
            _stop(process)
    pytest.fail(f"no free loopback port after {_START_ATTEMPTS} attempts")


@pytest.fixture
def tomorrow(project, bundle):
    """The project with history ingested and materialized; tomorrow's racecard file."""
    racecards, days = scoring_run._world()
    history, day = days[:-1], days[-1]
    scoring_run._run(project, bundle, history, [day])  # ingestion + features (+ scoring)
    shutil.copytree(ROOT / "conf" / "base", project / "conf" / "base")
    (project / "conf" / "local").mkdir()
    shutil.copy2(ROOT / "pyproject.toml", project / "pyproject.toml")
    card = project / f"{day}.racecard.json"
    card.write_text(racecards[f"{day}.racecard"], encoding="utf-8")
    return card


@pytest.fixture
def bundle_path(project, bundle):
    path = project / "data" / "06_models" / "e2e_bundle.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump(bundle, handle)
    return path


@pytest.fixture
def server(project, tomorrow, bundle_path):
    yield from _serve(project, bundle_path)


def _declared_runners(card: dict) -> dict[str, set[str]]:
    """Race id -> horse ids of the racecard's runners that are not withdrawn."""
    return {
        race["race_id"]: {r["horse_id"] for r in race["runners"] if not r.get("non_runner")}
        for meeting in card["meetings"]
        for race in meeting["races"]
    }


def _probabilities(answer: dict) -> dict[tuple[str, str], tuple]:
    return {
        (race["race_id"], r["horse_id"]): (
            r["rank"],
            r["p_win"],
            r["p_market"],
            r["p_win_combined"],
        )
        for race in answer["races"]
        for r in race["runners"]
    }


def _counter(metrics: str, method: str, route: str, status: int) -> float:
    prefix = f'racecast_http_requests_total{{method="{method}",route="{route}",status="{status}"}} '
    values = [
        float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix)
    ]
    return values[0] if values else 0.0


def test_real_server_scores_tomorrows_racecards_like_the_cli(server, tomorrow, bundle_path, bundle):
    srv, health = server
    text = tomorrow.read_text(encoding="utf-8")
    card = json.loads(text)
    declared = _declared_runners(card)
    withdrawn = {
        (race["race_id"], r["horse_id"])
        for meeting in card["meetings"]
        for race in meeting["races"]
        for r in race["runners"]
        if r.get("non_runner")
    }
    assert health["bundle_loaded"] is True and health["online_store"] is True
    assert health["model_version"] == str(bundle.model_version)

    with httpx.Client(base_url=srv.url, timeout=30.0) as client:
        headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
        response = client.post("/api/v1/predict", content=text, headers=headers)
        assert response.status_code == 200, response.text
        served = response.json()

        # a wrong key and no key are refused before any scoring
        wrong = client.post(
            "/api/v1/predict", content=text, headers={**headers, "X-API-Key": "not-the-key"}
        )
        missing = client.post(
            "/api/v1/predict", content=text, headers={"Content-Type": "application/json"}
        )
        assert wrong.status_code == 401, wrong.text
        assert missing.status_code == 401, missing.text

        # a racecard whose runner has no horse_id is a 422 naming that field
        broken = json.loads(text)
        del broken["meetings"][0]["races"][1]["runners"][2]["horse_id"]
        invalid = client.post("/api/v1/predict", content=json.dumps(broken), headers=headers)
        assert invalid.status_code == 422, invalid.text
        detail = invalid.json()["detail"]
        assert detail[0]["loc"] == ["body", "meetings", 0, "races", 1, "runners", 2, "horse_id"]
        assert "horse_id" in detail[0]["msg"]

        metrics = client.get("/metrics")

    # every declared runner of every race is scored, withdrawn runners are not
    assert withdrawn  # the synthetic world declares some non-runners
    assert served["model_version"] == str(bundle.model_version)
    assert [r["race_id"] for r in served["races"]] == list(declared)
    for race in served["races"]:
        horses = [r["horse_id"] for r in race["runners"]]
        assert len(horses) == len(set(horses)) == race["n_runners"]
        assert set(horses) == declared[race["race_id"]], race["race_id"]
        total = sum(r["p_win"] for r in race["runners"])
        assert total == pytest.approx(1.0, rel=0, abs=1e-9), race["race_id"]
    assert not withdrawn & set(_probabilities(served))

    # the same racecard file through `racecast predict` (same project, bundle and store)
    result = CliRunner().invoke(cli, ["predict", str(tomorrow), "--bundle", str(bundle_path)])
    assert result.exit_code == 0, result.output
    predicted = json.loads(result.stdout)
    assert predicted["model_version"] == served["model_version"]
    assert predicted["feature_service"] == served["feature_service"]
    expected, got = _probabilities(predicted), _probabilities(served)
    assert list(got) == list(expected)  # same races, same runners, same order
    for key, (rank, *probabilities) in expected.items():
        assert got[key][0] == rank, key
        assert got[key][1:] == pytest.approx(probabilities, rel=0, abs=1e-12, nan_ok=True), key

    # the request counters saw the calls above (the scrape itself is counted after it answers)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text_metrics = metrics.text
    assert _counter(text_metrics, "POST", "/api/v1/predict", 200) == 1.0
    assert _counter(text_metrics, "POST", "/api/v1/predict", 401) == 2.0
    assert _counter(text_metrics, "POST", "/api/v1/predict", 422) == 1.0
    assert _counter(text_metrics, "GET", "/health", 200) >= 1.0
    runners = sum(len(race["runners"]) for race in served["races"])
    assert f'racecast_predictions_total{{track="fundamental"}} {float(runners)}' in text_metrics
