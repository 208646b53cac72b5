"""Ingestion throughput benchmark: runners per second, written to data/08_reporting.

Measures, from the repository root (``make bench``):

* the Hong Kong adapter ``racecast.ingestion.hkjc.adapt_hkjc`` on the Kaggle CSVs
  (``--hkjc-dir``; default ``data/01_raw/hkjc``, falling back to ``../shared/data/hkracing``);
* the shared validation step ``racecast.ingestion.validate.validate_and_split`` on the
  adapter's output;
* the synthetic race-world simulator ``racecast.simulation.simulate`` over ``--sim-days``
  race days (runners counted from its oracle: one row per runner of a race with results).

Every measurement is the best of ``--repeat`` runs (CSV reading is timed separately).
The Hong Kong part is recorded as skipped, with the reason, when its CSVs are absent.
Results are printed as a table and written as JSON to ``--output``
(``data/08_reporting/benchmark_ingestion.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from racecast.ingestion.hkjc import adapt_hkjc
from racecast.ingestion.validate import validate_and_split
from racecast.simulation import SimulationConfig, simulate

logger = logging.getLogger("benchmarks.ingestion")

DEFAULT_HKJC_DIR = Path("data/01_raw/hkjc")
FALLBACK_HKJC_DIR = Path("../shared/data/hkracing")
DEFAULT_OUTPUT = Path("data/08_reporting/benchmark_ingestion.json")
PARAMETER_FILES = (
    Path("conf/base/parameters/ingestion.yml"),
    Path("conf/hkjc/parameters/ingestion.yml"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hkjc-dir",
        type=Path,
        default=None,
        help=f"folder with races.csv and runs.csv (default {DEFAULT_HKJC_DIR}, "
        f"then {FALLBACK_HKJC_DIR})",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    parser.add_argument("--sim-days", type=int, default=60, help="race days to simulate")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON report path")
    parser.add_argument("--verbose", action="store_true", help="show racecast INFO logs")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def resolve_hkjc_dir(requested: Path | None) -> Path | None:
    """Return the folder holding the Hong Kong CSVs, or None when none is found.

    Args:
        requested: Folder given on the command line (checked alone when given).

    Returns:
        The first folder with both ``races.csv`` and ``runs.csv``.
    """
    candidates = [requested] if requested is not None else [DEFAULT_HKJC_DIR, FALLBACK_HKJC_DIR]
    for folder in candidates:
        if (folder / "races.csv").is_file() and (folder / "runs.csv").is_file():
            return folder
    return None


def ingestion_params(files: tuple[Path, ...] = PARAMETER_FILES) -> dict[str, Any]:
    """Read the ``ingestion`` parameters of the hkjc env (base, then hkjc overrides).

    Args:
        files: Parameter files, later ones overriding earlier ones.

    Returns:
        The merged ``ingestion`` mapping (empty when no file exists).
    """
    params: dict[str, Any] = {}
    for path in files:
        if path.is_file():
            params.update((yaml.safe_load(path.read_text()) or {}).get("ingestion") or {})
    return params


def best_time(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Run ``func`` ``repeat`` times and keep the fastest wall-clock time.

    Args:
        func: Zero-argument callable to time.
        repeat: Number of runs.

    Returns:
        ``(best_seconds, result_of_last_run)``.
    """
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    return best, result


def rate(count: int, seconds: float) -> float:
    """Return ``count / seconds`` rounded, guarding against a zero duration.

    Args:
        count: Records processed.
        seconds: Wall-clock seconds.

    Returns:
        Records per second.
    """
    return round(count / max(seconds, 1e-9), 1)


def bench_hkjc(hkjc_dir: Path | None, repeat: int) -> dict[str, Any]:
    """Time the Hong Kong adapter and the validation step on its output.

    Args:
        hkjc_dir: Folder with the CSVs, or None when they were not found.
        repeat: Runs per measurement.

    Returns:
        The measurements, or ``{"skipped": reason}``.
    """
    if hkjc_dir is None:
        return {
            "skipped": f"Hong Kong data not found at {DEFAULT_HKJC_DIR} or {FALLBACK_HKJC_DIR}: "
            "run `make hkjc-data`"
        }
    read_s, (races_csv, runs_csv) = best_time(
        lambda: (pd.read_csv(hkjc_dir / "races.csv"), pd.read_csv(hkjc_dir / "runs.csv")), repeat
    )
    params = ingestion_params()
    adapt_s, adapted = best_time(lambda: adapt_hkjc(races_csv, runs_csv, params), repeat)
    runners_in = len(runs_csv)
    result: dict[str, Any] = {
        "data_dir": str(hkjc_dir),
        "races_in": len(races_csv),
        "runners_in": runners_in,
        "runners_parsed": len(adapted[1]),
        "read_csv_s": round(read_s, 4),
        "adapt_s": round(adapt_s, 4),
        "adapt_runners_per_s": rate(runners_in, adapt_s),
    }
    validate_s, _ = best_time(lambda: validate_and_split(*adapted, params), repeat)
    result["validate"] = {
        "validate_s": round(validate_s, 4),
        "validate_runners_per_s": rate(runners_in, validate_s),
    }
    result["adapt_plus_validate_runners_per_s"] = rate(runners_in, adapt_s + validate_s)
    return result


def bench_simulation(n_days: int, seed: int, repeat: int) -> dict[str, Any]:
    """Time the synthetic race-world simulator.

    Args:
        n_days: Race days to simulate.
        seed: Random seed.
        repeat: Runs per measurement.

    Returns:
        The measurements.
    """
    config = SimulationConfig(seed=seed, n_days=n_days, show_progress=False)
    seconds, world = best_time(lambda: simulate(config), repeat)
    runners = len(world.oracle)
    return {
        "n_days": n_days,
        "races": int(world.oracle["race_id"].nunique()),
        "runners": runners,
        "simulate_s": round(seconds, 4),
        "runners_per_s": rate(runners, seconds),
    }


def report_table(report: Mapping[str, Any]) -> Table:
    """Render the measurements as a rich table.

    Args:
        report: The benchmark report.

    Returns:
        A table with one row per measurement.
    """
    table = Table(title="racecast ingestion benchmark")
    table.add_column("stage")
    table.add_column("records", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("runners/s", justify="right")
    hk = report["hkjc"]
    if "skipped" in hk:
        table.add_row("hkjc", "-", "-", f"skipped: {hk['skipped']}")
    else:
        table.add_row("hkjc read_csv", str(hk["runners_in"]), f"{hk['read_csv_s']:.3f}", "")
        table.add_row(
            "hkjc adapt",
            str(hk["runners_in"]),
            f"{hk['adapt_s']:.3f}",
            f"{hk['adapt_runners_per_s']:,.0f}",
        )
        val = hk["validate"]
        table.add_row(
            "validate_and_split",
            str(hk["runners_in"]),
            f"{val['validate_s']:.3f}",
            f"{val['validate_runners_per_s']:,.0f}",
        )
    sim = report["simulation"]
    table.add_row(
        "simulation",
        str(sim["runners"]),
        f"{sim['simulate_s']:.3f}",
        f"{sim['runners_per_s']:,.0f}",
    )
    return table


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table and write the JSON report.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The process exit code (0).
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("racecast").setLevel(logging.INFO if args.verbose else logging.WARNING)
    report = {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "cpu_count": os.cpu_count(),
        "repeat": args.repeat,
        "hkjc": bench_hkjc(resolve_hkjc_dir(args.hkjc_dir), args.repeat),
        "simulation": bench_simulation(args.sim_days, args.seed, args.repeat),
    }
    Console().print(report_table(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    logger.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
