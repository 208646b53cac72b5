"""Race-day benchmark: how long until a pushed result is readable online, race by race.

Run from the repository root after ``make run`` (it reads the synthetic world's raw JSON
in ``data/01_raw/racecards/synthetic/``). In a scratch project (the project's own stores
are left alone) it ingests every race day but the last through the batch parser and
validation, builds the state tables, applies the Feast repo and materializes the online
store; then, for each race of the last day in off-time order, it pushes the race's
results with :class:`racecast.inference.results.RaceDay` (what ``racecast results push``
and ``POST /api/v1/results`` call, in process) and reads the race's runners back from the
online store.

Reported per push, p50 / p95 / max in milliseconds:

* ``readable_online``: validation + state of the entities that ran + the online write,
  i.e. until the next race can be scored with this one's result;
* ``total``: that plus keeping the documents and rewriting the canonical tables and the
  offline state sources.

Prints a table and writes ``data/08_reporting/benchmark_raceday.json`` (with the date,
the machine's load average and core count).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from machine import machine  # noqa: E402 (benchmarks/machine.py)
from report import publish  # noqa: E402 (benchmarks/report.py, beside this script)
from scratch import scratch_project  # noqa: E402 (benchmarks/scratch.py)

from racecast.features import entities, store
from racecast.features.online_read import OnlineReader
from racecast.inference.results import RaceDay, RaceDayPaths, race_ids_by_off, select_races

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "01_raw" / "racecards" / "synthetic"
OUT = ROOT / "data" / "08_reporting" / "benchmark_raceday.json"


def _stats(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples, dtype=float)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p95_ms": round(float(np.percentile(values, 95)), 1),
        "max_ms": round(float(values.max()), 1),
        "n": len(values),
    }


def _scratch_project(work: Path, days: list[str]) -> RaceDayPaths:
    """Ingest ``days`` and build the feature store in ``work``; the race-day paths."""
    files = {}
    for day in days:
        for kind in ("racecard", "results"):
            text = (RAW / f"{day}.{kind}.json").read_text(encoding="utf-8")
            files[f"{day}.{kind}"] = lambda t=text: t
    return scratch_project(work, files)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark.

    Args:
        argv: Command-line arguments (``--races N``: push at most N races).

    Returns:
        The report written to ``data/08_reporting/benchmark_raceday.json``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--races", type=int, default=None, help="Push at most this many races.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    days = sorted({p.name.split(".")[0] for p in RAW.glob("*.racecard.json")})
    if len(days) < 2:
        raise SystemExit(f"no synthetic world in {RAW}: run `make run` first")
    history, last = days[:-1], days[-1]
    old_cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="racecast-raceday-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        paths = _scratch_project(work, history)
        setup_s = time.perf_counter() - start
        card = (RAW / f"{last}.racecard.json").read_text(encoding="utf-8")
        results = (RAW / f"{last}.results.json").read_text(encoding="utf-8")
        paths.upcoming[0].mkdir(parents=True, exist_ok=True)
        (paths.upcoming[0] / f"{last}.racecard.json").write_text(card, encoding="utf-8")
        os.chdir(work)
        try:
            fs = store.get_store(work / "feature_repo")
            raceday = RaceDay(paths, fs)
            start = time.perf_counter()
            raceday._load()  # the service loads the tables once, at its first push
            load_s = time.perf_counter() - start
            reader = OnlineReader(fs, "combined_v1")
            readable, total, phases = [], [], []
            for race_id in race_ids_by_off(card)[: args.races]:
                start = time.perf_counter()
                summary = raceday.push(select_races(results, [race_id]), race_id)
                total.append(1000 * (time.perf_counter() - start))
                t = summary["timings_ms"]
                readable.append(t["validate"] + t["state"] + t["online"])
                phases.append(t)
                # read back: every runner's horse state is now stamped after the off
                race_rows = entities.entity_frame(
                    pd.read_parquet(paths.races).query("race_id == @race_id"),
                    pd.read_parquet(paths.runners).query("race_id == @race_id"),
                )
                _, times = reader.read_with_times(race_rows)
                off = race_rows["off_time"].astype("int64").to_numpy() / 1e9
                assert (times["horse_form"].to_numpy() > off).all(), race_id
        finally:
            os.chdir(old_cwd)
    report = {
        "date": dt.date.today().isoformat(),
        "machine": machine(load_average=[round(x, 2) for x in os.getloadavg()]),
        "history_days": len(history),
        "setup_s": round(setup_s, 1),
        "first_load_s": round(load_s, 2),
        "readable_online": _stats(readable),
        "total": _stats(total),
        "phases_p50_ms": {
            name: round(float(np.median([p[name] for p in phases])), 1) for name in phases[0]
        },
    }
    return publish(
        report,
        OUT,
        f"race day: {len(total)} pushes of {last} ({report['date']})",
        ["readable_online", "total"],
    )


if __name__ == "__main__":
    main()
