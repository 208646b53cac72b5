"""Inference service benchmark: latency of one race and throughput at concurrency 16.

Needs a real bundle and a materialized feature store, so run it after ``make run``, from
the repository root::

    .venv/bin/python benchmarks/serving.py \\
        --racecard data/01_raw/upcoming/<day>.racecard.json \\
        [--bundle models:/racecast-win@champion | path/to/bundle.pkl] [--env local]

The largest race of the racecard (14 runners in Hong Kong) is posted as a one-race
racecard. Measured, with the bundle and the FeatureStore loaded once and the GC frozen
afterwards (as ``racecast serve`` does):

* stages: the service's steps called in process, p50 / p95 of each over ``--requests``
  races: parse (racecard -> entity rows: the request fast path and ``entity_frame``),
  features (Feast online read + ``build_features``), predict (every model, stacker,
  blend), explain (LightGBM contributions; the service computes them on a worker thread
  while the models predict) and score (probabilities -> answer);
* in-process: ``POST /api/v1/predict`` through FastAPI's ``TestClient`` (no network),
  p50 / p95 / p99 over ``--requests`` sequential requests;
* over HTTP: ``racecast serve`` started in its own process (as deployed, so the client
  does not share its interpreter) on a free loopback port, sequential requests
  (p50 / p95 / p99), then ``--throughput-requests`` (at most 2,000) requests from an
  ``httpx.AsyncClient`` with ``--concurrency`` (16) in flight: requests per second and
  errors (any status other than 200, or a transport failure);
* hostile requests (issue 13) against the same server: each refused request's latency
  (p50 / p95 over ``--hostile-requests``) next to a valid one's, the latency of a
  ``/health`` probe sent while it is processed, and the server's RSS before and after.

Prints a table and writes ``data/08_reporting/benchmark_serving.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from racecast.features.store import get_store
from racecast.inference.registry import load_bundle
from racecast.inference.scoring import score_races
from racecast.inference.service import InferenceService, parse_racecard
from racecast.inference.settings import ServingSettings
from racecast.serving.app import create_app

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "08_reporting" / "benchmark_serving.json"
BENCH_KEY = "benchmark-key-not-a-secret"
MAX_THROUGHPUT_REQUESTS = 2000
STAGES = ("parse", "features", "predict", "explain", "score")


def one_race_racecard(path: Path, race_id: str | None) -> tuple[str, str, int]:
    """The racecard of one race (the largest unless named) as JSON text.

    Returns:
        ``(text, race_id, runners)``.
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    candidates = [
        (meeting, race)
        for meeting in document.get("meetings", [])
        for race in meeting.get("races", [])
        if race_id is None or race.get("race_id") == race_id
    ]
    if not candidates:
        raise SystemExit(f"{path}: no race {race_id!r}" if race_id else f"{path}: no races")

    def active(race: dict[str, Any]) -> int:
        return sum(not r.get("non_runner", False) for r in race.get("runners", []))

    meeting, race = max(candidates, key=lambda mr: active(mr[1]))
    card = {**document, "meetings": [{**meeting, "races": [race]}]}
    return json.dumps(card), race["race_id"], active(race)


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {
        "n": int(ms.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def stage_latencies(service: InferenceService, body: str, n: int) -> dict[str, dict[str, float]]:
    """p50 / p95 of each step of the service over ``n`` runs of the same racecard."""
    seconds: dict[str, list[float]] = {name: [] for name in STAGES}
    for _ in range(n):
        start = time.perf_counter()
        rows = parse_racecard(body)
        parsed = time.perf_counter()
        features = service.features(rows)
        featured = time.perf_counter()
        predictions = service.bundle.predict(features)
        predicted = time.perf_counter()
        explanations = service.bundle.explain(features, top_k=service.settings.explain_top_k)
        explained = time.perf_counter()
        score_races(predictions, rows, features, explanations, "benchmark", service.scoring)
        scored = time.perf_counter()
        marks = [start, parsed, featured, predicted, explained, scored]
        for name, begin, end in zip(STAGES, marks[:-1], marks[1:], strict=True):
            seconds[name].append(end - begin)
    return {name: percentiles(values) for name, values in seconds.items()}


def timed(call, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        response = call()
        out.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise SystemExit(
                f"benchmark request failed: {response.status_code} {response.text[:500]}"
            )
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(
    settings: ServingSettings, env: str | None, bundle: str | None, port: int
) -> Iterator[subprocess.Popen]:
    """``racecast serve`` in its own process on ``port``, as it is deployed.

    The client then does not share the server's interpreter (and GIL). The server loads
    the same bundle (``settings.bundle_uri``) and gets the benchmark key and an
    unreachable rate limit through ``RACECAST_*`` variables. Stopped on exit.
    """
    command = [
        sys.executable,
        "-m",
        "racecast.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    command += ["--bundle", str(bundle or settings.bundle_uri)]
    if env:
        command += ["--env", env]
    environ = {
        **os.environ,
        "RACECAST_API_KEYS": BENCH_KEY,
        "RACECAST_RATE_LIMIT_PER_MINUTE": str(10**9),
    }
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log.seek(0)
                tail = log.read().decode("utf-8", "replace")[-2000:]
                raise SystemExit(f"racecast serve exited with {process.returncode}:\n{tail}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("racecast serve was not ready within 120 s")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


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


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hostile(base: str, body: str, n: int, pid: int) -> dict[str, Any]:
    """Latency of each hostile request, of /health while it runs, and the server's RSS."""
    import threading

    out: dict[str, Any] = {"rss_start_mb": rss_mb(pid), "requests": {}}
    with httpx.Client(base_url=base, timeout=120.0) as client:
        for name, (headers, content) in hostile_bodies(body).items():
            seconds, health, statuses = [], [], set()
            for _ in range(n):

                def send(headers=headers, content=content, seconds=seconds, statuses=statuses):
                    start = time.perf_counter()
                    with httpx.Client(base_url=base, timeout=120.0) as other:
                        response = other.post("/api/v1/predict", content=content, headers=headers)
                    seconds.append(time.perf_counter() - start)
                    statuses.add(response.status_code)

                sender = threading.Thread(target=send)
                sender.start()
                start = time.perf_counter()
                client.get("/health")
                health.append(time.perf_counter() - start)
                sender.join()
            out["requests"][name] = {
                "status": sorted(statuses),
                "latency": percentiles(seconds),
                "health_during": percentiles(health),
            }
    out["rss_end_mb"] = rss_mb(pid)
    return out


async def throughput(url: str, body: str, total: int, concurrency: int) -> dict[str, Any]:
    """``total`` POSTs with ``concurrency`` in flight: wall time, rate, errors."""
    headers = {"X-API-Key": BENCH_KEY, "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    errors: dict[str, int] = {}
    latencies: list[float] = []

    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:

        async def one() -> None:
            async with semaphore:
                start = time.perf_counter()
                try:
                    response = await client.post(url, content=body, headers=headers)
                    key = None if response.status_code == 200 else f"http_{response.status_code}"
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - start)
                if key:
                    errors[key] = errors.get(key, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(total)))
        wall = time.perf_counter() - start
    return {
        "requests": total,
        "concurrency": concurrency,
        "wall_s": wall,
        "requests_per_s": total / wall,
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "latency": percentiles(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--racecard", type=Path, required=True, help="A *.racecard.json file.")
    parser.add_argument(
        "--bundle", default=None, help="Bundle URI or pickle (default: the champion)."
    )
    parser.add_argument("--env", default=None, help="Kedro env (feature store, parameters).")
    parser.add_argument(
        "--race-id", default=None, help="Race to post (default: the largest field)."
    )
    parser.add_argument(
        "--requests", type=int, default=200, help="Sequential requests per latency run."
    )
    parser.add_argument("--throughput-requests", type=int, default=MAX_THROUGHPUT_REQUESTS)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--hostile-requests", type=int, default=20, help="Runs of each hostile request."
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.chdir(ROOT)
    total = min(args.throughput_requests, MAX_THROUGHPUT_REQUESTS)

    body, race_id, runners = one_race_racecard(args.racecard, args.race_id)
    settings = ServingSettings.from_project(
        args.env,
        bundle_uri=args.bundle,
        api_keys=(BENCH_KEY,),
        credentials_path=None,
        rate_limit_per_minute=10**9,
    )
    start = time.perf_counter()
    bundle = load_bundle(settings.bundle_uri)
    load_s = time.perf_counter() - start
    store = get_store(settings.feature_repo)
    headers = {"X-API-Key": BENCH_KEY, "Content-Type": "application/json"}

    app = create_app(settings, bundle=bundle, feature_store=store, freeze_gc=True)
    with TestClient(app) as client:
        post = lambda: client.post("/api/v1/predict", content=body, headers=headers)  # noqa: E731
        timed(post, 5)
        stages = stage_latencies(app.state.service, body, args.requests)
        in_process = percentiles(timed(post, args.requests))

    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/predict"
    with served(settings, args.env, args.bundle, port) as process:
        with httpx.Client(timeout=120.0) as http:
            post = lambda: http.post(url, content=body, headers=headers)  # noqa: E731
            timed(post, 5)
            over_http = percentiles(timed(post, args.requests))
        concurrent = asyncio.run(throughput(url, body, total, args.concurrency))
        refused = hostile(f"http://127.0.0.1:{port}", body, args.hostile_requests, process.pid)

    result = {
        "race_id": race_id,
        "runners": runners,
        "model_version": str(bundle.model_version),
        "bundle_load_s": load_s,
        "stages": stages,
        "in_process": in_process,
        "http_loopback": over_http,
        "throughput": concurrent,
        "hostile": refused,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    table = Table(
        title=f"racecast serving: race {race_id} ({runners} runners), {bundle.model_version}"
    )
    for column in ("path", "n", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="right" if column != "path" else "left")
    for name, stats in (
        ("in-process (TestClient)", in_process),
        ("HTTP loopback, sequential", over_http),
        (f"HTTP loopback, concurrency {args.concurrency}", concurrent["latency"]),
    ):
        table.add_row(
            name, str(stats["n"]), *(f"{stats[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms"))
        )
    steps = Table(title="in-process steps (explain overlaps predict in the service)")
    for column in ("step", "p50 ms", "p95 ms"):
        steps.add_column(column, justify="right" if column != "step" else "left")
    for name, stats in stages.items():
        steps.add_row(name, f"{stats['p50_ms']:.1f}", f"{stats['p95_ms']:.1f}")
    bad = Table(title="hostile requests over HTTP (issue 13)")
    for column in ("request", "status", "p50 ms", "p95 ms", "/health p95 ms"):
        bad.add_column(column, justify="right" if column != "request" else "left")
    for name, stats in refused["requests"].items():
        bad.add_row(
            name,
            ",".join(map(str, stats["status"])),
            f"{stats['latency']['p50_ms']:.1f}",
            f"{stats['latency']['p95_ms']:.1f}",
            f"{stats['health_during']['p95_ms']:.1f}",
        )
    console = Console()
    console.print(steps)
    console.print(table)
    console.print(bad)
    console.print(
        f"server RSS {refused['rss_start_mb']:.0f} MB before the hostile requests, "
        f"{refused['rss_end_mb']:.0f} MB after"
    )
    console.print(
        f"throughput: {concurrent['requests_per_s']:.1f} requests/s over {total} requests, "
        f"{concurrent['errors']} errors; written to {args.out}"
    )


if __name__ == "__main__":
    main()
