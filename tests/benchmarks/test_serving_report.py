"""benchmarks/serving_report.py renders the serving benchmark's file, and only it, into the docs."""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import load_script

report_module = load_script("serving_report")


def _run(online, workers, payload, reuse, concurrency, p95, rate, errors=0, server_cpu=None):
    return {
        "online": online, "workers": workers, "payload": payload, "reuse": reuse, "concurrency": concurrency,
        "requests": 2000 if concurrency == 16 else 100, "requests_per_s": rate, "errors": errors,
        **({} if server_cpu is None else {"server_cpu_ms_per_request": server_cpu}),
        "answered_by_worker": {"101": 60, "102": 40}, "load_average": {"start": 1.0, "mean": 2.5, "max": 3.0},
        "latency": {"n": 100, "p50_ms": p95 / 2, "p95_ms": p95, "p99_ms": p95 * 1.5, "mean_ms": p95 / 2},
    }


REPORT = {
    "date": "2026-12-07",
    "commit": "0123456789abcdef",
    "machine": {"cpus": 2},
    "payloads": {"race": {"races": 1, "runners": 14}, "card": {"races": 10, "runners": 120}},
    "runs": [
        _run("redis", 2, "race", True, 1, 9.25, 150.0, server_cpu=7.04),
        _run("redis", 2, "race", False, 1, 12.5, 90.0),
        _run("redis", 2, "card", True, 1, 80.0, 14.0),
        _run("redis", 2, "race", True, 16, 40.0, 321.5, errors=1),
    ],
    "hostile": None,
}


def test_the_tables_carry_the_files_figures_date_and_commit():
    summary = report_module.summary(REPORT)
    assert "on 2026-12-07 (commit `0123456789`)" in summary
    assert "load average 2.5-2.5" in summary
    assert ", 2 cores, 1-minute" in summary  # a file without the processor's name
    named = {**REPORT, "machine": {"cpus": 2, "cpu_model": "AMD EPYC (family 26, model 2)"}}
    assert ", 2 cores (AMD EPYC (family 26, model 2)), 1-minute" in report_module.summary(named)
    row = [line for line in summary.splitlines() if line.startswith("| redis | 2 ")]
    # a file written before the cold runs: dashes in their column
    assert row == ["| redis | 2 | 4.6 / 9.2 / 13.9 | – / – / – | 12.5 | 80.0 | 150.0 / 321.5 | 7.0 / – | 1 of 2,300 |"]
    assert "rotating prices" not in summary
    full = report_module.full(REPORT)
    # a file written before the server's CPU was measured shows a dash
    assert "| redis | 2 | race | new | 1 | 100 | 6.2 | 12.5 | 18.8 | 90.0 | – | 0 | 60 / 40 | 2.5 / 3.0 |" in full
    assert "| redis | 2 | race | reused | 1 | 100 | 4.6 | 9.2 | 13.9 | 150.0 | 7.0 | 0 |" in full


def test_warm_and_cold_races_side_by_side():
    report = {
        **REPORT,
        "payloads": {
            "race": {"races": 1, "runners": 14, "price_variants": 64},
            "card": {"races": 10, "runners": 120, "price_variants": 64},
            "cold": {"races": 1, "runners": 14, "race_id_per_request": True},
        },
        "runs": [*REPORT["runs"], _run("redis", 2, "cold", True, 1, 12.0, 110.0, server_cpu=8.5)],
    }
    summary = report_module.summary(report)
    assert "the same race at 64 rotating prices" in summary and "cold: a race id" in summary
    assert "| one race p50 / p95 / p99 ms, reused connection, warm | cold race p50 / p95 / p99 ms" in summary
    row = [line for line in summary.splitlines() if line.startswith("| redis | 2 ")]
    assert row == ["| redis | 2 | 4.6 / 9.2 / 13.9 | 6.0 / 12.0 / 18.0 | 12.5 | 80.0 | 150.0 / 321.5 | 7.0 / 8.5 | 1 of 2,400 |"]
    assert "| redis | 2 | cold | reused | 1 | 100 | 6.0 | 12.0 | 18.0 | 110.0 | 8.5 | 0 |" in report_module.full(report)


def test_write_replaces_only_the_marked_blocks(tmp_path):
    readme, results = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text(
        "intro\n<!-- benchmark_serving:summary:begin -->\nold figures\n<!-- benchmark_serving:summary:end -->\nend\n"
    )
    results.write_text("<!-- benchmark_serving:full:begin -->\n<!-- benchmark_serving:full:end -->\n")
    report_module.write(REPORT, {"summary": readme, "full": results})
    text = readme.read_text()
    assert text.startswith("intro\n<!-- benchmark_serving:summary:begin -->\n`benchmarks/serving.py` on 2026-12-07")
    assert "old figures" not in text and text.endswith("<!-- benchmark_serving:summary:end -->\nend\n")
    assert "| redis | 2 | card | reused | 1 |" in results.read_text()
    results.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- benchmark_serving:full"):
        report_module.write(REPORT, {"full": results})


def test_the_project_docs_have_the_markers():
    for part, path in report_module.TARGETS.items():
        text = path.read_text(encoding="utf-8")
        assert f"<!-- benchmark_serving:{part}:begin -->" in text and f"<!-- benchmark_serving:{part}:end -->" in text
