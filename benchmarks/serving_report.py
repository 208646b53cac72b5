"""Markdown tables of ``data/08_reporting/benchmark_serving.json`` (``benchmarks/serving.py``).

The README and docs/results.md figures of the serving benchmark are generated from that
file, never typed::

    .venv/bin/python benchmarks/serving_report.py            # print the tables
    .venv/bin/python benchmarks/serving_report.py --write    # replace them in the docs

``--write`` replaces the text between ``<!-- benchmark_serving:<part>:begin -->`` and
``<!-- benchmark_serving:<part>:end -->`` in README.md (part ``summary``) and
docs/results.md (part ``full``).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "08_reporting" / "benchmark_serving.json"
TARGETS = {"summary": ROOT / "README.md", "full": ROOT / "docs" / "results.md"}


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _pick(runs: list[dict[str, Any]], **want: Any) -> dict[str, Any] | None:
    found = [r for r in runs if all(r.get(k) == v for k, v in want.items())]
    return found[0] if found else None


def _latencies(run: dict[str, Any] | None) -> str:
    """``p50 / p95 / p99`` of a run (dashes when the file has no such run)."""
    lat = run["latency"] if run else {}
    return " / ".join(_ms(lat.get(q)) for q in ("p50_ms", "p95_ms", "p99_ms"))


def _load_range(report: dict[str, Any]) -> str:
    means = [r["load_average"]["mean"] for r in report["runs"]]
    return f"{min(means):.1f}-{max(means):.1f}" if means else "–"


def heading(report: dict[str, Any]) -> str:
    """One line: date, commit, machine, load, payloads."""
    race, card = report["payloads"]["race"], report["payloads"]["card"]
    commit = (report.get("commit") or "unknown")[:10]
    client = (report.get("client") or "httpx").split(" ", 1)[0]  # files before the field: httpx
    variants = race.get("price_variants")
    moving = (
        f"; warm: the same race at {variants} rotating prices (the service keeps what the "
        "prices do not change), cold: a race id the server has not seen in every request"
        if variants
        else ""  # files written before the warm / cold runs: one body sent over and over
    )
    return (
        f"`benchmarks/serving.py` on {report['date']} (commit `{commit}`), "
        f"{_cores(report['machine'])}, 1-minute load average {_load_range(report)} (mean per run), "
        f"`racecast serve` in its own processes, the client ({client}) in another; "
        f"one race = {race['runners']} runners, card = {card['races']} races / {card['runners']} runners "
        f"in one request{moving}."
    )


def _cores(machine: dict[str, Any]) -> str:
    """``2 cores`` and, when the file names it, the processor: ``2 cores (AMD EPYC ...)``."""
    model = machine.get("cpu_model")
    return f"{machine['cpus']} cores" + (f" ({model})" if model else "")


def summary(report: dict[str, Any]) -> str:
    """The README table: per store and worker count, latency at concurrency 1 (one race
    warm at moving prices and cold) and throughput."""
    runs = report["runs"]
    levels = sorted({r["concurrency"] for r in runs})
    lines = [
        heading(report),
        "",
        "| store | workers | one race p50 / p95 / p99 ms, reused connection, warm "
        "| cold race p50 / p95 / p99 ms, reused | one race p95 ms, new connection "
        "| card p95 ms, reused | requests/s (one race, reused) at concurrency "
        + " / ".join(map(str, levels))
        + " | server CPU ms per race, warm / cold | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for online in dict.fromkeys(r["online"] for r in runs):
        for workers in sorted({r["workers"] for r in runs if r["online"] == online}):
            one = functools.partial(_pick, runs, online=online, workers=workers)

            reused = one(payload="race", reuse=True, concurrency=min(levels))
            cold = one(payload="cold", reuse=True, concurrency=min(levels))
            fresh = one(payload="race", reuse=False, concurrency=min(levels))
            card = one(payload="card", reuse=True, concurrency=min(levels))
            rates = [one(payload="race", reuse=True, concurrency=c) for c in levels]
            errors = sum(
                r["errors"] for r in runs if r["online"] == online and r["workers"] == workers
            )
            total = sum(
                r["requests"] for r in runs if r["online"] == online and r["workers"] == workers
            )
            rate = " / ".join(f"{r['requests_per_s']:.1f}" if r else "–" for r in rates)
            cpu = [_ms(r.get("server_cpu_ms_per_request") if r else None) for r in (reused, cold)]
            lines.append(
                f"| {online} | {workers} | {_latencies(reused)} | {_latencies(cold)} "
                f"| {_ms(fresh['latency']['p95_ms'] if fresh else None)} "
                f"| {_ms(card['latency']['p95_ms'] if card else None)} "
                f"| {rate} | {' / '.join(cpu)} | {errors} of {total:,} |"
            )
    return "\n".join(lines)


def full(report: dict[str, Any]) -> str:
    """The docs/results.md tables: every run, then the hostile requests."""
    lines = [
        heading(report),
        "",
        "| store | workers | payload | connection | concurrency | requests | p50 ms | p95 ms | p99 ms "
        "| requests/s | server CPU ms per request | errors | answered by worker "
        "| load average (mean / max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lat = r["latency"]
        answered = " / ".join(str(n) for n in r["answered_by_worker"].values())
        lines.append(
            f"| {r['online']} | {r['workers']} | {r['payload']} | {'reused' if r['reuse'] else 'new'} "
            f"| {r['concurrency']} | {r['requests']:,} | {_ms(lat['p50_ms'])} | {_ms(lat['p95_ms'])} "
            f"| {_ms(lat['p99_ms'])} | {r['requests_per_s']:.1f} "
            f"| {_ms(r.get('server_cpu_ms_per_request'))} | {r['errors']} | {answered} "
            f"| {r['load_average']['mean']:.1f} / {r['load_average']['max']:.1f} |"
        )
    refused = report.get("hostile")
    if refused:
        lines += [
            "",
            f"Hostile requests (issue 13), {refused['online']} store, one worker, each sent "
            f"{next(iter(refused['requests'].values()))['latency']['n']} times with a `/health` probe beside it "
            f"(load average {refused['load_average']['mean']:.1f}); server RSS "
            f"{refused['rss_start_mb']:.0f} MB before, {refused['rss_end_mb']:.0f} MB after:",
            "",
            "| request | status | p50 ms | p95 ms | /health p95 ms meanwhile |",
            "|---|---|---|---|---|",
        ]
        for name, stats in refused["requests"].items():
            lines.append(
                f"| {name} | {', '.join(map(str, stats['status']))} | {_ms(stats['latency']['p50_ms'])} "
                f"| {_ms(stats['latency']['p95_ms'])} | {_ms(stats['health_during']['p95_ms'])} |"
            )
    return "\n".join(lines)


def render(report: dict[str, Any]) -> str:
    """Both parts, as printed by the benchmark."""
    return f"{summary(report)}\n\n{full(report)}\n"


def write(report: dict[str, Any], targets: dict[str, Path] = TARGETS) -> None:
    """Replace each part's marked block in its file."""
    parts = {"summary": summary(report), "full": full(report)}
    for part, path in targets.items():
        text = path.read_text(encoding="utf-8")
        pattern = re.compile(
            rf"(<!-- benchmark_serving:{part}:begin -->\n).*?(<!-- benchmark_serving:{part}:end -->)",
            re.S,
        )
        if not pattern.search(text):
            raise SystemExit(f"{path}: no <!-- benchmark_serving:{part}:begin/end --> markers")
        block = parts[part]
        path.write_text(
            pattern.sub(lambda m, block=block: m[1] + block + "\n" + m[2], text), encoding="utf-8"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument(
        "--write", action="store_true", help="Replace the tables in README.md and docs/results.md."
    )
    args = parser.parse_args()
    report = json.loads(args.source.read_text(encoding="utf-8"))
    if args.write:
        write(report)
    else:
        print(render(report))  # noqa: T201 (the tables on stdout)


if __name__ == "__main__":
    main()
