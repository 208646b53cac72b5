"""benchmarks/scale.py's growth fits, embedded peak and markdown say what its JSON holds."""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import load_script

scale = load_script("scale")


def _world(k: float, runners: int) -> dict:
    stages = {
        "ingest": {"status": "ok", "stage_seconds": 2.0 * runners, "peak_mib": 100.0 + 0 * runners, "races": runners // 10,
                   "runners": runners, "load_1min_max": 3.0},
        "join_duckdb": {"status": "ok", "stage_seconds": 1e-3 * runners**2, "peak_mib": 0.01 * runners, "load_1min_max": 5.0},
        "join_spark": {"status": "ok", "stage_seconds": 1.0, "peak_mib": 99_999.0},
        "train": {"status": "skipped", "reason": "--spark-max-scale"},
    }
    return {"world": f"synthetic x{k:g}", "scale": k, "races": runners // 10, "runners": runners, "stages": stages}


def test_growth_fit_recovers_linear_and_quadratic_stages_from_1x():
    worlds = [_world(0.1, 100), _world(1, 1_000), _world(10, 10_000), _world(30, 30_000)]
    worlds[0]["stages"]["ingest"]["stage_seconds"] = 1e6  # below 1x: left out of the fit
    fits = scale.growth_fit(worlds)
    assert fits["ingest"]["runners"] == [1_000, 10_000, 30_000]
    assert fits["ingest"]["seconds_exponent"] == pytest.approx(1.0)
    assert fits["ingest"]["peak_mib_exponent"] == pytest.approx(0.0)
    assert fits["join_duckdb"]["seconds_exponent"] == pytest.approx(2.0)
    assert "train" not in fits  # never ran


def test_embedded_peak_leaves_out_spark_and_redis_and_markdown_shows_the_figures():
    world = _world(10, 10_000)
    assert scale.embedded_peak(world) == pytest.approx(100.0)  # not Spark's 99,999
    report = {"worlds": [world], "growth_fit_from_1x": {}}
    world["embedded_peak_mib"] = scale.embedded_peak(world)
    text = scale.markdown(report)
    assert "synthetic x10 (10,000 runners)" in text
    assert "| ingest | 20,000.0 s / 100 MiB |" in text
    assert "| train | skipped |" in text and "| simulate | not run |" in text
    assert "3.0-5.0" in text  # the range of the stages' load maxima
