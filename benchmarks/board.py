"""Race-day board benchmark: server time to render the board of a 12-race day.

Run from the repository root after ``make run`` (it scores with the run's bundle,
``data/06_models/inference_bundle.pkl``). In a scratch project (the project's stores are
left alone) it simulates a small world whose days have two meetings of six races,
ingests every day with the batch parser and validation, builds the state tables, applies
the Feast repo and materializes the online store; the next day's twelve racecards are
the upcoming folder. The app is ``create_app`` with that bundle, store and race-day
paths, called in process (no socket) after logging in.

Reported in milliseconds (p50 / p95 / max), each the server's time for one request:

* ``day_page``: ``GET /`` with the day's predictions current (the usual request: the
  pages and their polls between two results);
* ``day_page_after_result``: the first ``GET /`` after a race's result is pushed
  (``POST /api/v1/results``): the races still to run are scored again with it known;
* ``race_page``: ``GET /race/{race_id}`` with the predictions current;
* ``status``: ``GET /board/status`` (each open page polls it).

Prints a table and writes ``data/08_reporting/benchmark_board.json`` (with the date, the
machine's load average and core count). The issue's target: the day page under 300 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from fastapi.testclient import TestClient
from machine import machine  # noqa: E402 (benchmarks/machine.py)
from report import publish  # noqa: E402 (benchmarks/report.py, beside this script)
from scratch import scratch_project  # noqa: E402 (benchmarks/scratch.py)

from racecast.features import store
from racecast.inference.results import RaceDayPaths, race_ids_by_off, select_races
from racecast.inference.settings import ServingSettings
from racecast.pipelines.simulation.nodes import simulate_world
from racecast.serving.app import create_app

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "data" / "06_models" / "inference_bundle.pkl"
OUT = ROOT / "data" / "08_reporting" / "benchmark_board.json"
KEY = "board-benchmark-key-0123456789"
#: A world whose every day has two meetings of six races (the next day too).
WORLD = {
    "seed": 7,
    "n_days": 40,
    "start_date": "2024-03-01",
    "meetings_per_day": [2, 2],
    "races_per_meeting": [6, 6],
    "show_progress": False,
}
TARGET_MS = 300.0


def _stats(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples, dtype=float)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p95_ms": round(float(np.percentile(values, 95)), 1),
        "max_ms": round(float(values.max()), 1),
        "n": len(values),
    }


def _scratch_project(work: Path) -> tuple[RaceDayPaths, str, str]:
    """A project in ``work`` with the world's history in every store; the race-day paths,
    the upcoming day's racecard and results texts."""
    racecards, _, upcoming, upcoming_results, _ = simulate_world(WORLD)
    files = {pid: (lambda t=text: t) for pid, text in racecards.items()}
    paths = scratch_project(work, files)
    (day,) = upcoming
    (paths.upcoming[0] / f"{day}.racecard.json").write_text(upcoming[day], encoding="utf-8")
    return paths, upcoming[day], upcoming_results[day]


def _server_ms(response) -> float:
    """The board's own time of a response (its ``Server-Timing``), else the request's."""
    assert response.status_code == 200, response.text[:500]
    return float(response.headers["server-timing"].split("dur=")[1])


def _timed(client: TestClient, path: str) -> float:
    start = time.perf_counter()
    response = client.get(path)
    elapsed = 1000 * (time.perf_counter() - start)
    assert response.status_code == 200, response.text[:500]
    return elapsed


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark.

    Args:
        argv: Command-line arguments (``--repeat N``: requests per warm measurement;
            ``--pushes N``: results pushed, each followed by one day page).

    Returns:
        The report written to ``data/08_reporting/benchmark_board.json``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50, help="Requests per warm measurement.")
    parser.add_argument(
        "--pushes", type=int, default=6, help="Results pushed (one day page after each)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not BUNDLE.is_file():
        raise SystemExit(f"no bundle at {BUNDLE}: run `make run` first")
    with BUNDLE.open("rb") as handle:
        bundle = pickle.load(handle)
    compute = yaml.safe_load((ROOT / "conf" / "base" / "parameters" / "features.yml").read_text())
    compute = compute["features"]["compute"]
    old_cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="racecast-board-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        paths, card, results = _scratch_project(work)
        setup_s = time.perf_counter() - start
        race_ids = race_ids_by_off(card)
        os.chdir(work)
        try:
            settings = ServingSettings(
                api_keys=(KEY,),
                credentials_path=None,
                bundle_uri=str(BUNDLE),
                feature_repo=work / "feature_repo",
                feature_params=compute,
            )
            app = create_app(
                settings,
                bundle=bundle,
                feature_store=store.get_store(work / "feature_repo"),
                raceday_paths=paths,
            )
            with TestClient(app) as client:
                assert (
                    client.post("/login", data={"api_key": KEY}, follow_redirects=False).status_code
                    == 303
                )
                first = client.get("/")
                first_ms = _server_ms(first)
                assert first.text.count('class="race-link"') == len(race_ids) == 12, len(race_ids)
                day = [_server_ms(client.get("/")) for _ in range(args.repeat)]
                race = [
                    _server_ms(client.get(f"/race/{race_ids[i % len(race_ids)]}"))
                    for i in range(args.repeat)
                ]
                status = [_timed(client, "/board/status") for _ in range(args.repeat)]
                after, push = [], []
                headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
                for race_id in race_ids[: args.pushes]:
                    start = time.perf_counter()
                    pushed = client.post(
                        "/api/v1/results", content=select_races(results, [race_id]), headers=headers
                    )
                    push.append(1000 * (time.perf_counter() - start))
                    assert pushed.status_code == 200, pushed.text
                    after.append(_server_ms(client.get("/")))
        finally:
            os.chdir(old_cwd)
    report = {
        "date": dt.date.today().isoformat(),
        "machine": machine(load_average=[round(x, 2) for x in os.getloadavg()]),
        "bundle": str(bundle.model_version),
        "races": len(race_ids),
        "setup_s": round(setup_s, 1),
        "first_day_page_ms": round(first_ms, 1),
        "day_page": _stats(day),
        "day_page_after_result": _stats(after),
        "race_page": _stats(race),
        "status": _stats(status),
        "results_push": _stats(push),
        "target_ms": TARGET_MS,
        "day_page_p95_under_target": _stats(day)["p95_ms"] < TARGET_MS,
    }
    return publish(
        report,
        OUT,
        f"race-day board: {len(race_ids)}-race day ({report['date']})",
        ["day_page", "day_page_after_result", "race_page", "status", "results_push"],
    )


if __name__ == "__main__":
    main()
