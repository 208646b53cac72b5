"""Serving benchmark: ``racecast serve`` as deployed, the client in another process.

Needs a real bundle and a materialized feature store, so run it after ``make run``, from
the repository root::

    .venv/bin/python benchmarks/serving.py \\
        --racecard data/01_raw/upcoming/<day>.racecard.json \\
        [--bundle models:/racecast-win@champion | path/to/bundle.pkl] [--env local] \\
        [--online sqlite,redis] [--workers 1,2]

For each online store (``sqlite``: the project's; ``redis``: a ``redis-server`` started
here on a free loopback port, materialized to the same time through a scratch copy of
``feature_repo/feature_store.redis.yaml`` with its own registry, stopped at the end) and
each worker count, ``racecast serve --workers N`` is started in its own process and this
process (the client, no shared interpreter or GIL with the server) sends, from one thread
per request in flight, each with its own standard-library ``http.client`` connection (a
light client, a fraction of a millisecond of CPU a request, its CPU per request in the
JSON; httpx's own cost was several milliseconds of every figure):

* three payloads: **race**, the largest race of the racecard (14 runners in Hong Kong) as
  a one-race racecard at moving prices (64 variants of its odds rotated,
  ``benchmarks/bodies.py``: the race day case, a race scored again and again as its tote
  prices move, the service keeping its fundamental features and recomputing its market
  features); **cold**, the same race under a race id the server has not seen in every
  request (no kept race: the read, the guard and the whole transform each time; the
  reader still has the same horses' decoded rows, so no stored row is decoded again, as
  for the race-day case of a race not scored before); **card**, the
  first ``--card-races`` (10) races of the racecard in one request at moving prices, as a
  client scoring a whole card does (races whose result was pushed to the env's race-day
  folder are left out: the service refuses them);
* with connection reuse (keep-alive: each thread keeps its connection) and without
  (``Connection: close``, a new TCP connection per request);
* at concurrency 1, 4 and 16 (``--concurrency``): p50 / p95 / p99 latency, requests per
  second, errors (any status other than 200, or a transport failure), which worker
  answered (``X-Racecast-Worker``), the client's own CPU time and the server's CPU
  milliseconds per request (every process of ``racecast serve``, from ``/proc``: the
  server's cost whatever else the machine runs);
* the machine's 1-minute load average, sampled every second during each run (start,
  mean, max): the machine is shared, so read every figure beside it.

The run with reuse, the race payload, concurrency 16 and the most workers sends
``--throughput-requests`` (2,000) requests; the others ``--requests`` (race) or
``--card-requests`` (card).

Hostile requests (issue 13) go to the first store's one-worker server: each refused
request's latency (p50 / p95 over ``--hostile-requests``) next to a valid one's, the
latency of a ``/health`` probe sent while it is processed, and the server's RSS before
and after.

Writes ``data/08_reporting/benchmark_serving.json`` (with the date, the commit and the
machine) and prints a summary; ``benchmarks/serving_report.py`` renders the README and
docs/results.md tables from that file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from bodies import ColdRaces, repriced_bodies  # benchmarks/bodies.py
from machine import machine  # benchmarks/machine.py
from services import ServiceUnavailable, free_port, redis_server, stop  # noqa: E402 (benchmarks/services.py)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "08_reporting" / "benchmark_serving.json"
BENCH_KEY = "benchmark-key-not-a-secret"
WORKER_HEADER = "X-Racecast-Worker"
REDIS_YAML = ROOT / "feature_repo" / "feature_store.redis.yaml"
#: Model versions the servers answered /health with.
MODEL_VERSION: list[str | None] = []
#: Seconds a server gets to start every worker (a busy 2-core machine needs minutes).
STARTUP_S = 900
#: What the JSON says about the client.
CLIENT = (
    "http.client (standard library) in the benchmark's own process: one thread per request "
    "in flight, each with its own connection (kept alive with reuse; a new one per request, "
    "Connection: close, without)"
)

logger = logging.getLogger("benchmarks.serving")


# ---------------------------------------------------------------------------- payloads
def _active(race: dict[str, Any]) -> int:
    return sum(not r.get("non_runner", False) for r in race.get("runners", []))


def payloads(
    path: Path, race_id: str | None, card_races: int, run: set[str]
) -> dict[str, dict[str, Any]]:
    """``{"race": ..., "card": ...}``: each ``{"body", "races", "runners", "race_ids"}``.

    Races in ``run`` (their result was pushed: the service refuses them) are left out.
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    pairs = [
        (m, r)
        for m in document.get("meetings", [])
        for r in m.get("races", [])
        if r.get("race_id") not in run
    ]
    chosen = [(m, r) for m, r in pairs if race_id is None or r.get("race_id") == race_id]
    if not chosen:
        raise SystemExit(f"{path}: no race {race_id!r}" if race_id else f"{path}: no races")
    meeting, race = max(chosen, key=lambda mr: _active(mr[1]))

    def card_of(selected: list[tuple[dict, dict]]) -> dict[str, Any]:
        meetings: dict[int, dict[str, Any]] = {}
        for m, r in selected:
            meetings.setdefault(id(m), {**m, "races": []})["races"].append(r)
        return {
            "body": json.dumps({**document, "meetings": list(meetings.values())}),
            "races": len(selected),
            "runners": sum(_active(r) for _, r in selected),
            "race_ids": [r["race_id"] for _, r in selected],
        }

    out = {"race": card_of([(meeting, race)]), "card": card_of(pairs[:card_races])}
    for payload in out.values():  # the race-day case: the same races at moving prices
        payload["bodies"] = repriced_bodies(payload["body"])
    return out


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=float) * 1000.0
    if not ms.size:
        return {"n": 0}
    return {
        "n": int(ms.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


# ---------------------------------------------------------------------------- machine
class LoadSampler:
    """The 1-minute load average, sampled every ``interval_s`` on a thread."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        values = np.asarray(self.samples)
        return {"start": float(values[0]), "mean": float(values.mean()), "max": float(values.max())}


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants alive now (Linux)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        times[child] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        found = [c for c, p in parents.items() if p == parent and c not in tree]
        tree.update(found)
        frontier.extend(found)
    return sum(times.get(p, 0.0) for p in tree)


def _commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# ---------------------------------------------------------------------------- stores
@contextlib.contextmanager
def redis_store(feature_repo: Path) -> Iterator[dict[str, str]]:
    """A redis-server on loopback holding what the SQLite online store holds.

    Yields the environment a server needs to use it (``FEAST_FS_YAML_FILE_PATH`` of a
    scratch copy of ``feature_store.redis.yaml`` with its own registry, and
    ``RACECAST_REDIS_URL``); the project's own Redis registry is left alone.
    """
    from racecast.features.store import apply_repo, get_store, materialize, materialized_until

    end = materialized_until(get_store(feature_repo))
    if end is None:
        raise SystemExit(f"the feature store {feature_repo} is empty: run `kedro run` first")
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="racecast-bench-redis-"))
        try:
            url = stack.enter_context(redis_server(Path(scratch)))
        except ServiceUnavailable as exc:
            raise SystemExit(str(exc)) from None
        text = REDIS_YAML.read_text(encoding="utf-8").replace(
            "registry: data/registry.redis.db", f"registry: {scratch}/registry.db"
        )
        yaml_path = Path(scratch) / "feature_store.yaml"
        yaml_path.write_text(text, encoding="utf-8")
        environ = {"FEAST_FS_YAML_FILE_PATH": str(yaml_path), "RACECAST_REDIS_URL": url}
        saved = {k: os.environ.get(k) for k in environ}
        os.environ.update(environ)
        try:
            start = time.perf_counter()
            apply_repo(feature_repo)
            store = get_store(feature_repo)
            if store.config.online_store.type != "redis":
                raise SystemExit("the scratch Redis configuration was not picked up")
            materialize(store, end, feature_repo)
            logger.warning(
                "redis: materialized up to %s in %.1f s", end, time.perf_counter() - start
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        yield environ


# ---------------------------------------------------------------------------- client
def request(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    connection: http.client.HTTPConnection | None = None,
    timeout_s: float = 120.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request over ``connection`` (kept open) or a new one (closed after it).

    Returns:
        ``(status, headers with lower-case names, body)``.
    """
    own = connection is None
    if own:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout_s)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        content = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, content
    finally:
        if own:
            connection.close()


# ---------------------------------------------------------------------------- server
@contextlib.contextmanager
def served(
    env: str | None, bundle: str | None, workers: int, environ: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``racecast serve --workers N`` in its own process on a free loopback port.

    Ready once ``/health`` answers 200 from every worker (new connections until ``N``
    PIDs answered). The server gets the benchmark key and an unreachable rate limit
    through ``RACECAST_*`` variables. Stopped (by PID) on exit.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "racecast.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if bundle:
        command += ["--bundle", bundle]
    if env:
        command += ["--env", env]
    full_env = {
        **os.environ,
        **environ,
        "RACECAST_API_KEYS": BENCH_KEY,
        "RACECAST_RATE_LIMIT_PER_MINUTE": str(10**9),
    }
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + STARTUP_S
        while len(seen) < workers:
            if process.poll() is not None:
                log.seek(0)
                tail = log.read().decode("utf-8", "replace")[-3000:]
                raise SystemExit(f"racecast serve exited with {process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"racecast serve: {len(seen)} of {workers} workers ready within {STARTUP_S} s"
                )
            try:
                status, headers, content = request(
                    base, "GET", "/health", headers={"Connection": "close"}, timeout_s=5.0
                )
                if status == 200:
                    seen.add(headers[WORKER_HEADER.lower()])
                    MODEL_VERSION.append(json.loads(content).get("model_version"))
            except OSError:  # not listening yet, or a worker restarting
                pass
            time.sleep(0.2)
        yield base, process
    finally:
        stop(process, timeout_s=60)  # uvicorn's workers finish their requests first
        log.close()


def load_run(
    base: str,
    path: str,
    bodies: list[str],
    total: int,
    concurrency: int,
    reuse: bool,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """``total`` POSTs with ``concurrency`` in flight, with or without connection reuse;
    the ``k``-th request sends ``bodies[k % len(bodies)]``.

    One thread per request in flight; with reuse each keeps one keep-alive connection
    (opened again after a transport error), without it each request opens its own and
    asks the server to close it. With ``server_pid`` the server's CPU time (all its
    processes) per request is measured too: its cost, whatever else runs on the machine.
    """
    headers = {"X-API-Key": BENCH_KEY, "Content-Type": "application/json"}
    if not reuse:
        headers["Connection"] = "close"
    contents = [body.encode("utf-8") for body in bodies]
    host, port = base.removeprefix("http://").rsplit(":", 1)
    errors: dict[str, int] = {}
    workers: dict[str, int] = {}
    latencies: list[float] = []
    queue = iter(range(total))
    lock = threading.Lock()

    def sender() -> None:
        connection = None
        while True:
            with lock:
                k = next(queue, None)
                if k is None:
                    break
            content = contents[k % len(contents)]
            if reuse and connection is None:
                connection = http.client.HTTPConnection(host, int(port), timeout=120.0)
            start = time.perf_counter()
            try:
                status, answer, _ = request(base, "POST", path, content, headers, connection)
                key = None if status == 200 else f"http_{status}"
                pid = answer.get(WORKER_HEADER.lower(), "?")
            except (OSError, http.client.HTTPException) as exc:
                key, pid = type(exc).__name__, None
                if connection is not None:
                    connection.close()
                    connection = None
            seconds = time.perf_counter() - start
            with lock:
                latencies.append(seconds)
                if pid is not None:
                    workers[pid] = workers.get(pid, 0) + 1
                if key:
                    errors[key] = errors.get(key, 0) + 1
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=sender) for _ in range(concurrency)]
    server_cpu = tree_cpu_s(server_pid) if server_pid else None
    cpu, start = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if server_pid:
        server_cpu = tree_cpu_s(server_pid) - server_cpu
    return {
        "requests": total,
        "concurrency": concurrency,
        "reuse": reuse,
        "wall_s": wall,
        "requests_per_s": total / wall,
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "answered_by_worker": dict(sorted(workers.items())),
        "client_cpu_s": cpu,
        "client_cpu_ms_per_request": 1000.0 * cpu / total,
        "server_cpu_ms_per_request": None if server_cpu is None else 1000.0 * server_cpu / total,
        "latency": percentiles(latencies),
    }


# ---------------------------------------------------------------------------- hostile
def hostile_bodies(body: str) -> dict[str, tuple[dict[str, str], bytes]]:
    """Requests of issue 13 built from the benchmark racecard: name -> (headers, body)."""
    card = json.loads(body)
    race = card["meetings"][0]["races"][0]
    json_headers = {"X-API-Key": BENCH_KEY, "Content-Type": "application/json"}

    def mutated(change) -> bytes:
        copy = json.loads(body)
        change(copy["meetings"][0]["races"][0])
        return json.dumps(copy).encode()

    def one_meeting(races: list[dict[str, Any]]) -> bytes:
        return json.dumps({**card, "meetings": [{**card["meetings"][0], "races": races}]}).encode()

    minimal = [{"horse_id": f"H{j}"} for j in range(7)]
    return {
        "valid": (json_headers, body.encode()),
        "JSON nested 1,000 deep": (json_headers, b"[" * 1000 + b"]" * 1000),
        "10,000 runners": (
            json_headers,
            one_meeting([{**race, "runners": [{"horse_id": str(i)} for i in range(10_000)]}]),
        ),
        "700 races x 7 runners": (
            json_headers,
            one_meeting(
                [
                    {
                        "race_id": f"R{i}",
                        "off_time": race["off_time"],
                        "distance_m": 1200,
                        "runners": minimal,
                    }
                    for i in range(700)
                ]
            ),
        ),
        "text/plain": ({**json_headers, "Content-Type": "text/plain"}, body.encode()),
        "odds 1e300": (
            json_headers,
            mutated(lambda r: r["runners"][0].__setitem__("odds", {"final": 1e300})),
        ),
        "off time 2099": (
            json_headers,
            mutated(lambda r: r.__setitem__("off_time", "2099-06-01T14:30:00+00:00")),
        ),
        "runner without horse_id": (
            json_headers,
            mutated(lambda r: r["runners"][0].pop("horse_id")),
        ),
        "wrong API key": ({**json_headers, "X-API-Key": "not-the-key"}, body.encode()),
    }


def hostile(base: str, body: str, n: int, pid: int) -> dict[str, Any]:
    """Latency of each hostile request, of /health while it runs, and the server's RSS."""
    out: dict[str, Any] = {"rss_start_mb": rss_mb(pid), "requests": {}}
    host, port = base.removeprefix("http://").rsplit(":", 1)
    probe = http.client.HTTPConnection(host, int(port), timeout=120.0)
    try:
        for name, (headers, content) in hostile_bodies(body).items():
            seconds, health, statuses = [], [], set()
            for _ in range(n):

                def send(headers=headers, content=content, seconds=seconds, statuses=statuses):
                    start = time.perf_counter()
                    status, _, _ = request(base, "POST", "/api/v1/predict", content, headers)
                    seconds.append(time.perf_counter() - start)
                    statuses.add(status)

                sender = threading.Thread(target=send)
                sender.start()
                start = time.perf_counter()
                try:
                    request(base, "GET", "/health", connection=probe)
                except (OSError, http.client.HTTPException):  # the server closed it: again
                    probe.close()
                    request(base, "GET", "/health", connection=probe)
                health.append(time.perf_counter() - start)
                sender.join()
            out["requests"][name] = {
                "status": sorted(statuses),
                "latency": percentiles(seconds),
                "health_during": percentiles(health),
            }
    finally:
        probe.close()
    out["rss_end_mb"] = rss_mb(pid)
    return out


# ---------------------------------------------------------------------------- main
def _csv(kind):
    return lambda text: [kind(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--racecard", type=Path, required=True, help="A *.racecard.json file.")
    parser.add_argument(
        "--bundle", default=None, help="Bundle URI or pickle (default: the champion)."
    )
    parser.add_argument("--env", default=None, help="Kedro env (feature store, parameters).")
    parser.add_argument(
        "--race-id", default=None, help="Race of the race payload (default: the largest field)."
    )
    parser.add_argument("--card-races", type=int, default=10, help="Races of the card payload.")
    parser.add_argument(
        "--online", type=_csv(str), default=["sqlite", "redis"], help="Online stores: sqlite,redis."
    )
    parser.add_argument(
        "--workers", type=_csv(int), default=[1, 2], help="Worker counts, e.g. 1,2."
    )
    parser.add_argument(
        "--concurrency", type=_csv(int), default=[1, 4, 16], help="Requests in flight, e.g. 1,4,16."
    )
    parser.add_argument(
        "--requests", type=int, default=200, help="Requests of each race-payload run."
    )
    parser.add_argument(
        "--card-requests", type=int, default=40, help="Requests of each card-payload run."
    )
    parser.add_argument(
        "--throughput-requests",
        type=int,
        default=2000,
        help="Requests of the reuse, race, highest-concurrency run of the most workers.",
    )
    parser.add_argument(
        "--hostile-requests", type=int, default=20, help="Runs of each hostile request (0: none)."
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    os.chdir(ROOT)
    if set(args.online) - {"sqlite", "redis"}:
        parser.error("--online takes sqlite and/or redis")

    from racecast.inference.results import raceday_paths
    from racecast.inference.settings import ServingSettings

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    settings = ServingSettings.from_project(args.env, bundle_uri=args.bundle, credentials_path=None)
    folder = raceday_paths(args.env).raceday
    run = (
        {p.name.removesuffix(".results.json") for p in folder.glob("*.results.json")}
        if folder.is_dir()
        else set()
    )
    bodies = payloads(args.racecard, args.race_id, args.card_races, run)
    cold = ColdRaces(bodies["race"]["body"])  # a race id no server has seen, per request
    started = dt.datetime.now(dt.UTC)
    runs: list[dict[str, Any]] = []
    refused: dict[str, Any] | None = None
    for online in args.online:
        stores = (
            redis_store(settings.feature_repo) if online == "redis" else contextlib.nullcontext({})
        )
        with stores as environ:
            for workers in args.workers:
                with served(args.env, args.bundle, workers, environ) as (base, process):
                    path = "/api/v1/predict"
                    load_run(base, path, bodies["race"]["bodies"], 10 * workers, workers, True)  # warm-up
                    for payload in ("race", "cold", "card"):
                        for reuse in (True, False):
                            for concurrency in args.concurrency:
                                total = args.card_requests if payload == "card" else args.requests
                                if (
                                    payload == "race"
                                    and reuse
                                    and concurrency == max(args.concurrency)
                                    and workers == max(args.workers)
                                ):
                                    total = args.throughput_requests
                                with LoadSampler() as load:
                                    run = load_run(
                                        base,
                                        path,
                                        cold.take(total)
                                        if payload == "cold"
                                        else bodies[payload]["bodies"],
                                        total,
                                        concurrency,
                                        reuse,
                                        process.pid,
                                    )
                                run.update(
                                    online=online,
                                    workers=workers,
                                    payload=payload,
                                    load_average=load.summary(),
                                )
                                runs.append(run)
                                logger.warning(
                                    "%s workers=%d %s reuse=%s c=%d: p50 %.1f p95 %.1f ms, %.1f req/s, "
                                    "server CPU %.2f ms/request, %d errors, load %.1f",
                                    online,
                                    workers,
                                    payload,
                                    reuse,
                                    concurrency,
                                    run["latency"]["p50_ms"],
                                    run["latency"]["p95_ms"],
                                    run["requests_per_s"],
                                    run["server_cpu_ms_per_request"],
                                    run["errors"],
                                    run["load_average"]["mean"],
                                )
                    if refused is None and workers == 1 and args.hostile_requests > 0:
                        with LoadSampler() as load:
                            refused = hostile(
                                base, bodies["race"]["body"], args.hostile_requests, process.pid
                            )
                        refused.update(online=online, load_average=load.summary())

    result = {
        "date": started.date().isoformat(),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "bundle": args.bundle or settings.bundle_uri,
        "model_versions": sorted({str(v) for v in MODEL_VERSION}),
        "payloads": {
            **{
                k: {key: v[key] for key in ("races", "runners", "race_ids")}
                | {"price_variants": len(v["bodies"])}
                for k, v in bodies.items()
            },
            "cold": {
                key: bodies["race"][key] for key in ("races", "runners", "race_ids")
            }
            | {"race_id_per_request": True},
        },
        "runs": runs,
        "hostile": refused,
        "machine": machine(),
        "client": CLIENT,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serving_report import render

    print(render(result))  # noqa: T201 (the benchmark's summary on stdout)
    logger.warning("written to %s", args.out)


if __name__ == "__main__":
    main()
