"""Feature benchmark: build time on the Hong Kong data and online latency for one race.

Run from the repository root (``make bench``). Measures, in a scratch copy of the Feast
repo (the project's own feature store is left alone):

* feature build: entity rows, state tables, parquet write, ``feast apply``,
  ``get_historical_features`` (ASOF DuckDB store) and ``build_features`` for every runner;
* materialization of the online store;
* online latency for the largest field (14 runners in Hong Kong) over ``--calls`` calls:
  the lean online read (``racecast.features.online_read.OnlineReader.read_state``: one
  SQLite statement for every view, numpy decoding) alone, read + transform (what
  ``racecast.features.online`` and the service do: the reader's columns straight into
  ``build_features_from_state``, with the reader the service keeps: a race asked for
  again reads its entities' kept rows), the same with the kept rows forgotten before
  every call (``cold``: a race read for the first time), the same numbers through
  frames (``reader.read`` + ``build_features``), the same race at moving prices with
  kept races (``kept_race``: what the service does for a race asked for again while
  only its prices move, 64 price variants rotated, ``benchmarks/bodies.py``: the store
  version asked, the race's key built, its kept fundamental rows taken, the market
  features of the new prices computed), the read and read + transform in CPU
  time of the calling thread (``_cpu``: without the waits for a core of a busy
  machine), and for comparison Feast's
  ``get_online_features`` + ``build_features`` (a tenth of the calls); p50 / p95 / p99
  in milliseconds, with the load average before and after the online timing. Each path
  runs in its own loop of ``--calls`` calls, so no path's figures carry the others'
  cache traffic. The online timing runs as the service runs: every object alive once the
  store and reader are ready is frozen out of the cyclic garbage collector's reach
  (``gc.collect(); gc.freeze()``, what ``create_app(freeze_gc=...)`` does at start; here
  the Hong Kong frames the build left behind too), and the collections each path
  triggered are reported (``gc_collections``: per generation).

Prints a table and writes ``data/08_reporting/benchmark_features.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from bodies import VARIANTS, moved_odds, price_factors  # benchmarks/bodies.py
from machine import machine  # benchmarks/machine.py
from rich.console import Console
from rich.table import Table

from racecast.features import entities, state, store, transform
from racecast.features.kept_races import KeptRaces
from racecast.features.online import online_features
from racecast.features.online_read import OnlineReader
from racecast.ingestion.hkjc import adapt_hkjc
from racecast.ingestion.validate import validate_and_split
from racecast.project import load_parameters

ROOT = Path(__file__).resolve().parents[1]
HK_DIRS = (ROOT / "data" / "01_raw" / "hkjc", ROOT.parent / "shared" / "data" / "hkracing")


def _timed(timings: dict[str, float], name: str, func, *args, **kwargs):
    start = time.perf_counter()
    out = func(*args, **kwargs)
    timings[name] = time.perf_counter() - start
    return out


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000.0
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 95, 99)}


def _collections(since: list[int] | None = None) -> list[int]:
    """Cyclic collections so far per generation (minus ``since``)."""
    now = [stats["collections"] for stats in gc.get_stats()]
    return now if since is None else [a - b for a, b in zip(now, since, strict=True)]


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark.

    Args:
        argv: Command-line arguments.

    Returns:
        The results written to ``--output``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hkjc-dir", type=Path, default=None, help="folder with races.csv and runs.csv"
    )
    parser.add_argument("--calls", type=int, default=1000, help="online calls to time")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "data" / "08_reporting" / "benchmark_features.json"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    hk_dir = args.hkjc_dir or next((d for d in HK_DIRS if (d / "runs.csv").is_file()), None)
    if hk_dir is None or not (hk_dir / "runs.csv").is_file():
        raise SystemExit(
            f"Hong Kong data not found ({', '.join(map(str, HK_DIRS))}): run `make hkjc-data`"
        )

    params = {**load_parameters("hkjc", ROOT)["ingestion"], "months": None}
    races, runners, _, _ = validate_and_split(
        *adapt_hkjc(pd.read_csv(hk_dir / "races.csv"), pd.read_csv(hk_dir / "runs.csv"), params),
        params,
    )
    build: dict[str, float] = {}
    scratch = Path(tempfile.mkdtemp(prefix="racecast-bench-"))
    old_cwd = os.getcwd()
    try:
        shutil.copytree(
            ROOT / "feature_repo", scratch / "feature_repo", ignore=shutil.ignore_patterns("data")
        )
        out = scratch / "data" / "04_feature"
        out.mkdir(parents=True)
        os.chdir(scratch)
        entity_rows = _timed(build, "entity_rows", entities.entity_frame, races, runners)
        tables = _timed(build, "state_tables", state.build_state_tables, races, runners)
        _timed(
            build,
            "write_parquet",
            lambda: [t.to_parquet(out / f"{n}.parquet") for n, t in tables.items()],
        )
        _timed(build, "feast_apply", store.apply_repo, "feature_repo")
        fs = store.get_store("feature_repo")
        labelled = entity_rows[entity_rows["won"].notna()].reset_index(drop=True)
        served = _timed(
            build, "historical_join", store.historical_state, fs, labelled, "combined_v1"
        )
        features = _timed(build, "build_features", transform.build_features, labelled, served)
        build_total = sum(build.values())
        start = time.perf_counter()
        store.materialize(fs, entity_rows["event_timestamp"].max() + pd.Timedelta(minutes=1))
        materialize_s = time.perf_counter() - start

        sizes = entity_rows.groupby("race_id").size()
        race_id = sizes.idxmax()
        race = entity_rows[entity_rows["race_id"] == race_id].reset_index(drop=True)
        # the serving path: lean online read (the reader the service keeps) + the transform
        reader = OnlineReader(fs, "combined_v1")
        online_features(race, "combined_v1", reader=reader)  # warm-up
        # as the service does once ready (create_app's freeze_gc): the long-lived objects
        # out of the cyclic collector's reach, so no collection walks them mid-request
        gc.collect()
        gc.freeze()
        frozen = gc.get_freeze_count()
        load_before = [round(x, 2) for x in os.getloadavg()]
        read_only, read_transform, cold_read, cold_transform = [], [], [], []
        frames, cpu, read_cpu = [], [], []
        collections: dict[str, list[int]] = {}
        # each path in its own loop of --calls (a path's figures not inflated by the
        # others' cache traffic in between)
        collections_before = _collections()
        for _ in range(args.calls):
            start, start_cpu = time.perf_counter(), time.thread_time()
            numeric, text, _ = reader.read_state(race)
            read_only.append(time.perf_counter() - start)
            read_cpu.append(time.thread_time() - start_cpu)
            transform.build_features_from_state(race, numeric, text)
            read_transform.append(time.perf_counter() - start)
            # CPU time of this thread: the same call without the time spent waiting for a
            # core (on a busy machine the wall time is mostly that wait)
            cpu.append(time.thread_time() - start_cpu)
        collections["read_and_transform"] = _collections(collections_before)
        collections_before = _collections()
        for _ in range(args.calls):
            reader.clear_cache()
            start = time.perf_counter()
            numeric, text, _ = reader.read_state(race)
            cold_read.append(time.perf_counter() - start)
            transform.build_features_from_state(race, numeric, text)
            cold_transform.append(time.perf_counter() - start)
        collections["read_and_transform_cold"] = _collections(collections_before)
        # the same race at moving prices, its fundamental rows kept between calls
        repriced = [
            race.assign(odds_final=moved_odds(race["odds_final"], price_factors(v, len(race))))
            for v in range(VARIANTS)
        ]
        kept = KeptRaces(16)
        online_features(race, "combined_v1", reader=reader, kept=kept)  # the race is kept
        kept_wall, kept_cpu = [], []
        collections_before = _collections()
        for i in range(args.calls):
            start, start_cpu = time.perf_counter(), time.thread_time()
            online_features(repriced[i % VARIANTS], "combined_v1", reader=reader, kept=kept)
            kept_wall.append(time.perf_counter() - start)
            kept_cpu.append(time.thread_time() - start_cpu)
        collections["kept_race"] = _collections(collections_before)
        for _ in range(args.calls):  # the same through frames: reader.read's state frame
            start = time.perf_counter()
            transform.build_features(race, reader.read(race))
            frames.append(time.perf_counter() - start)
        # for comparison: Feast's own get_online_features + the same transform
        feast_sdk = []
        for _ in range(max(1, args.calls // 10)):
            start = time.perf_counter()
            transform.build_features(race, store.online_state(fs, race, "combined_v1"))
            feast_sdk.append(time.perf_counter() - start)
    finally:
        gc.unfreeze()
        os.chdir(old_cwd)
        shutil.rmtree(scratch, ignore_errors=True)

    result = {
        "data": str(hk_dir),
        "runners": int(len(labelled)),
        "races": int(labelled["race_id"].nunique()),
        "features": int(features.shape[1]),
        "build_seconds": {k: round(v, 3) for k, v in build.items()}
        | {"total": round(build_total, 3)},
        "materialize_seconds": round(materialize_s, 3),
        "online": {
            "race_id": str(race_id),
            "runners": int(len(race)),
            "calls": args.calls,
            "online_read": _percentiles(read_only),
            "online_read_cpu": _percentiles(read_cpu),
            "read_and_transform": _percentiles(read_transform),
            "online_read_cold": _percentiles(cold_read),
            "read_and_transform_cold": _percentiles(cold_transform),
            "read_and_transform_cpu": _percentiles(cpu),
            "read_and_transform_via_frames": _percentiles(frames),
            "kept_race": _percentiles(kept_wall),
            "kept_race_cpu": _percentiles(kept_cpu),
            "feast_sdk_read_and_transform": _percentiles(feast_sdk),
            "gc_frozen_objects": frozen,
            "gc_collections": collections,
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(
            load_average_before_online=load_before,
            load_average=[round(x, 2) for x in os.getloadavg()],
        ),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2), encoding="utf-8")

    table = Table(
        title=f"features benchmark ({result['runners']} runners, {result['races']} races)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in result["build_seconds"].items():
        table.add_row(f"build: {name}", f"{value:.2f} s")
    table.add_row("materialize online", f"{materialize_s:.2f} s")
    for kind in (
        "online_read",
        "online_read_cpu",
        "read_and_transform",
        "online_read_cold",
        "read_and_transform_cpu",
        "read_and_transform_cold",
        "read_and_transform_via_frames",
        "kept_race",
        "kept_race_cpu",
        "feast_sdk_read_and_transform",
    ):
        for q, value in result["online"][kind].items():
            table.add_row(f"online {kind} {q} ({len(race)} runners)", f"{value:.2f} ms")
    Console().print(table)
    Console().print(
        f"gc: {frozen} objects frozen; collections per generation {collections}"
    )
    Console().print(f"written to {args.output}")
    return result


if __name__ == "__main__":
    main()
