"""Shared ending of the benchmarks: write the JSON report, print a table and the JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def publish(report: dict, path: Path, title: str, rows: list[str]) -> dict:
    """Write ``report`` to ``path``, print a p50/p95/max table of ``rows`` on stderr and
    the report as JSON on stdout (the benchmark's result).

    Args:
        report: The benchmark's figures; each name of ``rows`` maps to
            ``{"p50_ms", "p95_ms", "max_ms", ...}``.
        path: Where the JSON goes (``data/08_reporting/...``).
        title: The table's title.
        rows: Names of ``report`` shown in the table.

    Returns:
        ``report``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    table = Table(title=title)
    for column in ("", "p50 ms", "p95 ms", "max ms"):
        table.add_column(column)
    for name in rows:
        stats = report[name]
        table.add_row(name, str(stats["p50_ms"]), str(stats["p95_ms"]), str(stats["max_ms"]))
    Console(stderr=True).print(table)
    print(json.dumps(report, indent=2))  # noqa: T201 (the benchmark's result on stdout)
    return report
