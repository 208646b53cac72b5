"""``racecast serve --workers 2`` on one Redis online store: what one worker takes in, the other serves.

A race-day project is built by Kedro's runner (every synthetic day but the last, whose
racecard is upcoming; ``tests/inference/test_raceday.py``'s ``_build``) and materialized
into a ``redis-server`` started here on a free loopback port (the shipped
``feature_repo/feature_store.redis.yaml``, ``RACECAST_REDIS_URL``; stopped by PID). The
real command, ``python -m racecast.cli serve --workers 2 --bundle <tiny bundle pickle>``,
is started from the project root and stopped by PID (uvicorn's supervisor stops its
workers on SIGTERM).

Each answer names its process (``X-Racecast-Worker``). Connections are opened until both
workers have answered one, and each worker is then addressed through its own keep-alive
connection (checked with ``/health`` right before each request, re-opened when uvicorn
closed it; every answer's PID is checked). Results pushed through worker A are then
read by worker B: the pushed race is refused (409, the point-in-time guard on the shared
store), its horses' online state moved, and B's ``GET /api/v1/races/{id}`` (its own
cache of the board's predictions) answers what B now scores, not what it scored at
startup. Pushes alternate between the workers (A, B, A): the canonical tables hold every
pushed race afterwards (no worker writes them from stale tables).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from racecast.features.store import apply_repo, get_store, materialize, materialized_until
from racecast.inference.results import raceday_paths
from racecast.inference.settings import ENV_PREFIX
from racecast.serving.auth import API_KEYS_ENV
from tests.features import test_redis_online as redis_test
from tests.inference import test_raceday as raceday_test
from tests.serving import test_e2e_loopback as loopback
from tests.serving.tiny_zoo import make_bundle

pytestmark = pytest.mark.slow

ROOT = raceday_test.ROOT
API_KEY = "workers-redis-key-3b9e61d0c4a7f258"
HEADERS = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
WORKER = "X-Racecast-Worker"
#: Seconds two workers get to import, load the bundle and the store and score the day
#: (generous: on a busy 2-core machine one worker's start took over a minute).
STARTUP_DEADLINE_S = 600.0

redis_url = redis_test.redis_url


@pytest.fixture(scope="module")
def project(tmp_path_factory, redis_url) -> Iterator[dict]:
    """A race-day project whose online store is the redis-server, materialized."""
    _, days = raceday_test.scoring_run._world()
    root = tmp_path_factory.mktemp("workers") / "project"
    root.mkdir()
    with raceday_test._Chdir(root):
        raceday_test._build(root, days[:-1], days[-1])
        end = materialized_until(get_store("feature_repo"))
    assert end is not None
    shutil.rmtree(root / "feature_repo" / "data")
    shutil.copy2(ROOT / "feature_repo" / "feature_store.redis.yaml", root / "feature_repo" / "feature_store.yaml")
    old_url = os.environ.get(redis_test.URL_VARIABLE)
    os.environ[redis_test.URL_VARIABLE] = redis_url
    try:
        with raceday_test._Chdir(root):
            apply_repo("feature_repo")
            store = get_store("feature_repo")
            assert store.config.online_store.type == "redis"
            materialize(store, end, "feature_repo")
    finally:
        if old_url is None:
            os.environ.pop(redis_test.URL_VARIABLE, None)
        else:
            os.environ[redis_test.URL_VARIABLE] = old_url
    bundle = root / "data" / "06_models" / "bundle.pkl"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes(pickle.dumps(make_bundle()))
    yield {"root": root, "bundle": bundle, "day": days[-1], "redis_url": redis_url}


@pytest.fixture(scope="module")
def server(project) -> Iterator[loopback.Server]:
    """``racecast serve --workers 2`` on the Redis project, stopped by PID."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update({API_KEYS_ENV: API_KEY, redis_test.URL_VARIABLE: project["redis_url"], "PYTHONUNBUFFERED": "1"})
    env[f"{ENV_PREFIX}RATE_LIMIT_PER_MINUTE"] = "100000"
    for attempt in range(1, 4):
        port = loopback._free_port()
        log = project["root"] / f"serve-{attempt}.log"
        command = [
            sys.executable, "-m", "racecast.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--bundle", str(project["bundle"]), "--workers", "2",
        ]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command, cwd=project["root"], env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        srv = loopback.Server(f"http://127.0.0.1:{port}", process, log)
        try:
            if _wait_ready(srv):
                yield srv
                return
            if "address already in use" not in srv.output().lower():
                pytest.fail(f"racecast serve exited with {process.returncode}; log:\n{srv.output()}")
        finally:
            loopback._stop(process)
    pytest.fail("no free loopback port after 3 attempts")


def _wait_ready(server: loopback.Server) -> bool:
    """True once ``/health`` is ready; False if the server exited (it could not bind)."""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            response = httpx.get(f"{server.url}/health", timeout=5.0)
        except httpx.TransportError as exc:  # not listening yet
            last = repr(exc)
        else:
            if response.status_code == 200 and response.json().get("ready") is True:
                return True
            last = f"{response.status_code} {response.text}"
        time.sleep(0.2)
    pytest.fail(f"racecast serve --workers 2 is not ready (last /health: {last}); log:\n{server.output()}")


def _pinned_clients(url: str) -> dict[str, httpx.Client]:
    """One keep-alive connection per worker PID: new connections until both answered
    (the second worker may still be starting when the first is ready)."""
    clients: dict[str, httpx.Client] = {}
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        client = httpx.Client(base_url=url, timeout=60.0, limits=httpx.Limits(max_connections=1))
        pid = client.get("/health").headers[WORKER]
        if pid in clients:
            client.close()
            time.sleep(0.1)
        else:
            clients[pid] = client
        if len(clients) == 2:
            return clients
    for client in clients.values():
        client.close()
    pytest.fail(f"only workers {sorted(clients)} answered new connections within {STARTUP_DEADLINE_S} s")


def _on(clients: dict[str, httpx.Client], pid: str, method: str, path: str, **kwargs) -> httpx.Response:
    """A request answered by worker ``pid``.

    uvicorn closes a connection idle for 5 s, after which the client's next connection
    may reach the other worker: ``/health`` is asked first through the worker's client,
    and new connections are opened until that worker answers; the request follows at
    once on the same connection, and its PID is checked.
    """
    deadline = time.monotonic() + 120
    while clients[pid].get("/health").headers[WORKER] != pid:
        clients[pid].close()
        clients[pid] = httpx.Client(base_url=clients[pid].base_url, timeout=60.0, limits=httpx.Limits(max_connections=1))
        assert time.monotonic() < deadline, f"worker {pid} answers no new connection"
    response = clients[pid].request(method, path, **kwargs)
    assert response.headers[WORKER] == pid
    return response


def _p_win(race: dict) -> dict[str, float]:
    return {r["horse_id"]: r["p_win"] for r in race["runners"]}


def test_a_result_pushed_through_one_worker_is_served_by_the_other(project, server):
    races = raceday_test._race_documents(project["day"])
    assert len(races) >= 4
    (first, _, first_results), (second, _, second_results), (third, _, third_results) = races[:3]
    later = [race_id for race_id, _, _ in races[1:]]
    cards = {race_id: card for race_id, card, _ in races}
    first_horses = [
        r["horse_id"] for r in json.loads(cards[first])["meetings"][0]["races"][0]["runners"] if not r.get("non_runner")
    ]
    clients = _pinned_clients(server.url)
    try:
        a, b = sorted(clients)
        assert server.process.pid not in {int(a), int(b)}, "the supervisor does not answer itself"

        # both workers scored the day at startup from the same store: the same answers
        before = {pid: {rid: _on(clients, pid, "GET", f"/api/v1/races/{rid}", headers=HEADERS) for rid in later}
                  for pid in (a, b)}
        for rid in later:
            assert before[a][rid].status_code == before[b][rid].status_code == 200, before[a][rid].text
            assert _p_win(before[a][rid].json()) == pytest.approx(_p_win(before[b][rid].json()), abs=1e-12)
        horse_before = _on(clients, b, "GET", f"/api/v1/horses/{first_horses[0]}", headers=HEADERS).json()

        # the first race's result goes in through worker A
        pushed = _on(clients, a, "POST", "/api/v1/results", content=first_results, headers=HEADERS)
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["status"] == "added"

        # worker B reads it from the shared store: the race is over, its horses moved on
        refused = _on(clients, b, "POST", "/api/v1/predict", content=cards[first], headers=HEADERS)
        assert refused.status_code == 409, refused.text
        horse_after = _on(clients, b, "GET", f"/api/v1/horses/{first_horses[0]}", headers=HEADERS).json()
        assert horse_after != horse_before

        # B's GET /races answers what B scores now, not its startup predictions
        changed = 0
        for rid in later:
            fresh = _on(clients, b, "POST", "/api/v1/predict", content=cards[rid], headers=HEADERS)
            assert fresh.status_code == 200, fresh.text
            cached = _on(clients, b, "GET", f"/api/v1/races/{rid}", headers=HEADERS)
            assert cached.status_code == 200, cached.text
            want = _p_win(fresh.json()["races"][0])
            assert _p_win(cached.json()) == pytest.approx(want, abs=1e-12), rid
            changed += _p_win(before[b][rid].json()) != pytest.approx(want, abs=1e-12)
        assert changed >= 1, "the push changed no later race's prediction: the check is vacuous"

        # pushes alternate between the workers; none writes from stale tables
        for pid, results in ((b, second_results), (a, third_results)):
            response = _on(clients, pid, "POST", "/api/v1/results", content=results, headers=HEADERS)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "added", response.json()
        again = _on(clients, b, "POST", "/api/v1/results", content=first_results, headers=HEADERS)
        assert again.json()["status"] == "unchanged", again.json()
    finally:
        for client in clients.values():
            client.close()

    paths = raceday_paths(None, project["root"])
    held = set(pd.read_parquet(paths.races)["race_id"])
    assert {first, second, third} <= held
    runners = pd.read_parquet(paths.runners)
    assert set(runners[runners["race_id"].isin([first, second, third])]["race_id"]) == {first, second, third}
    for race_id in (first, second, third):
        assert (Path(paths.raceday) / f"{race_id}.results.json").is_file()
