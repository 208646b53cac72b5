"""``kedro run`` under racecast.runners.ParallelRunner and DaskRunner gives the evaluation
figures of the SequentialRunner (within 1e-9), on a small synthetic world.

One temporary copy of the project: a sequential run from the simulation to the
evaluation, then the model zoo and the evaluation again under each parallel runner
(the zoo's branches on workers, reading the same persisted training set), each report
compared with the sequential one. The Dask run uses a real 2-worker
``distributed.LocalCluster`` started and closed by the test.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from tests.user_facing.conftest import PARAMS, copy_project, kedro_run

UPSTREAM = "simulation,ingestion,features,model_zoo,evaluation"
RERUN = "model_zoo,evaluation"
REPORT = "data/08_reporting/evaluation.json"
TOLERANCE = 1e-9


def _max_difference(a, b, path: str = "") -> float:
    """Largest absolute difference between the numbers of two JSON reports (same shape)."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys differ: {sorted(set(a) ^ set(b))}"
        return max((_max_difference(a[k], b[k], f"{path}.{k}") for k in a), default=0.0)
    if isinstance(a, list):
        assert len(a) == len(b), f"{path}: lengths differ"
        return max(
            (
                _max_difference(x, y, f"{path}[{i}]")
                for i, (x, y) in enumerate(zip(a, b, strict=True))
            ),
            default=0.0,
        )
    if isinstance(a, float) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), f"{path}: {a} vs {b}"
            return 0.0
        return abs(a - b)
    assert a == b, f"{path}: {a!r} vs {b!r}"
    return 0.0


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """A project copy after a sequential run, and its evaluation report."""
    root = copy_project(tmp_path_factory.mktemp("runners"))
    kedro_run(root, PARAMS, "--pipelines", UPSTREAM)
    report = json.loads((root / REPORT).read_text())
    assert report["models"], "the sequential run evaluated no model"
    return root, report


def _rerun_report(root, *args: str) -> tuple[dict, str]:
    (root / REPORT).unlink()
    shutil.rmtree(root / "data" / "06_models" / "zoo")
    kedro_run(root, PARAMS, "--pipelines", RERUN, *args)
    log = sorted(root.glob("kedro-*.log"))[-1].read_text(encoding="utf-8", errors="replace")
    return json.loads((root / REPORT).read_text()), log


def test_parallel_runner_gives_the_sequential_figures(sequential):
    root, expected = sequential
    report, log = _rerun_report(
        root, "--runner", "racecast.runners.ParallelRunner", "--runner-params", "max_workers=2"
    )
    assert "node(s) on ProcessPoolExecutor" in log
    assert "model_zoo.tabnet.fit_oof (worker" in log
    assert _max_difference(expected, report) <= TOLERANCE


def test_dask_runner_on_a_local_cluster_gives_the_sequential_figures(sequential):
    from distributed import LocalCluster

    root, expected = sequential
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        report, log = _rerun_report(
            root,
            "--runner",
            "racecast.runners.DaskRunner",
            "--runner-params",
            f"address={cluster.scheduler_address}",
        )
    assert "(2 workers)" in log
    assert "model_zoo.tabnet.fit_oof (worker" in log
    assert _max_difference(expected, report) <= TOLERANCE
