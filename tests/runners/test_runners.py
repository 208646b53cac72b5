"""racecast.runners on small pipelines: which nodes go to workers, and the same outputs as
the SequentialRunner from a process pool and from a real 2-worker Dask LocalCluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import ParquetDataset

from racecast.runners import WORKER_TAG, DaskRunner, ParallelRunner, worker_nodes


def make_frame(seed: int) -> pd.DataFrame:
    """A frame that depends on ``seed`` and records the process that made it."""
    return pd.DataFrame({"x": [seed * 1.5 + i / 7 for i in range(50)], "pid": os.getpid()})


def total(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Row-wise sum of two frames' ``x`` (and the process that summed)."""
    return pd.DataFrame({"x": a["x"] + b["x"], "pid": os.getpid()})


def describe(frame: pd.DataFrame) -> dict:
    """A summary kept in memory (this process)."""
    return {"sum": float(frame["x"].sum()), "pid": os.getpid()}


def _pipeline() -> Pipeline:
    return Pipeline(
        [
            node(make_frame, "params:seed_a", "a", name="make_a", tags=[WORKER_TAG]),
            node(make_frame, "params:seed_b", "b", name="make_b", tags=[WORKER_TAG]),
            node(total, ["a", "b"], "ab", name="total", tags=[WORKER_TAG]),
            node(describe, "ab", "summary", name="describe"),
        ]
    )


def _catalog(root) -> DataCatalog:
    catalog = DataCatalog(
        {name: ParquetDataset(filepath=str(root / f"{name}.parquet")) for name in ("a", "b", "ab")}
    )
    catalog["params:seed_a"] = 3
    catalog["params:seed_b"] = 5
    catalog["summary"] = MemoryDataset()
    return catalog


def _run(runner, root) -> tuple[pd.DataFrame, dict]:
    catalog = _catalog(root)
    runner.run(_pipeline(), catalog)
    return catalog.load("ab"), catalog.load("summary")


def test_worker_nodes_are_the_tagged_ones(tmp_path):
    chosen = worker_nodes(_pipeline(), _catalog(tmp_path))
    assert {n.name for n in chosen} == {"make_a", "make_b", "total"}


def test_a_tagged_node_with_an_unpersisted_output_is_refused(tmp_path):
    catalog = _catalog(tmp_path)
    catalog["ab"] = MemoryDataset()
    with pytest.raises(ValueError, match=r"total: dataset ab is not persisted"):
        worker_nodes(_pipeline(), catalog)


def test_a_tagged_node_writing_an_mlflow_dataset_is_refused(tmp_path):
    from kedro_mlflow.io.metrics import MlflowMetricDataset

    catalog = _catalog(tmp_path)
    catalog["ab"] = MlflowMetricDataset(key="ab")
    with pytest.raises(ValueError, match=r"total: dataset ab logs to this process's MLflow run"):
        worker_nodes(_pipeline(), catalog)


def test_parallel_runner_gives_the_sequential_outputs_from_worker_processes(tmp_path):
    (tmp_path / "seq").mkdir()
    (tmp_path / "par").mkdir()
    expected, expected_summary = _run(SequentialRunner(), tmp_path / "seq")
    got, summary = _run(ParallelRunner(max_workers=2), tmp_path / "par")
    pd.testing.assert_series_equal(got["x"], expected["x"], check_exact=True)
    assert summary["sum"] == expected_summary["sum"]
    assert summary["pid"] == os.getpid()  # the untagged node ran here
    assert set(got["pid"]) != {os.getpid()}  # the tagged ones in a worker


def test_dask_runner_on_a_local_two_worker_cluster_gives_the_sequential_outputs(tmp_path):
    from distributed import Client, LocalCluster

    (tmp_path / "seq").mkdir()
    (tmp_path / "dask").mkdir()
    expected, expected_summary = _run(SequentialRunner(), tmp_path / "seq")
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        with Client(cluster) as client:
            worker_pids = set(client.run(os.getpid).values())
        got, summary = _run(DaskRunner(address=cluster.scheduler_address), tmp_path / "dask")
    pd.testing.assert_series_equal(got["x"], expected["x"], check_exact=True)
    assert summary["sum"] == expected_summary["sum"]
    assert summary["pid"] == os.getpid()
    assert set(got["pid"]) <= worker_pids
    assert set(pd.read_parquet(tmp_path / "dask" / "a.parquet")["pid"]) <= worker_pids


def test_limit_threads_holds_blas_and_openmp_to_the_budget():
    code = (
        "import numpy, os\n"
        "from threadpoolctl import threadpool_info\n"
        "from racecast.threads import limit_threads\n"
        "limit_threads(1)\n"
        "print(os.environ['OMP_NUM_THREADS'], max(i['num_threads'] for i in threadpool_info()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["1", "1"]


def test_limit_threads_refuses_a_budget_below_one():
    from racecast.threads import limit_threads

    with pytest.raises(ValueError, match="at least 1"):
        limit_threads(0)


def test_map_processes_keeps_order_and_holds_each_process_to_the_budget():
    code = (
        "import os\n"
        "from racecast.threads import limit_threads, map_processes\n"
        "def probe(i):\n"
        "    import numpy\n"
        "    from threadpoolctl import threadpool_info\n"
        "    return i, os.getpid(), max(p['num_threads'] for p in threadpool_info())\n"
        "if __name__ == '__main__':\n"
        "    limit_threads(3)\n"
        "    out = map_processes(probe, [(i,) for i in range(6)], n_jobs=2)\n"
        "    import glob\n"
        "    kids = [c for f in glob.glob('/proc/self/task/*/children')\n"
        "            for c in open(f).read().split()]\n"
        "    left = [k for k in kids if os.path.exists(f'/proc/{k}/cmdline') and\n"
        "            b'LokyProcess' in open(f'/proc/{k}/cmdline', 'rb').read()]\n"
        "    print([i for i, _, _ in out], os.getpid() in {p for _, p, _ in out},\n"
        "          max(t for _, _, t in out), len(left))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    # 3 threads each, not loky's default of cores // n_jobs (1 on a 2-core machine); no
    # worker outlives the call (an idle one kept a runner's worker process from exiting)
    assert out == "[0, 1, 2, 3, 4, 5] False 3 0"


def test_map_processes_with_one_job_is_the_plain_loop():
    from racecast.threads import map_processes

    assert map_processes(lambda a, b: (a * b, os.getpid()), [(2, 3), (4, 5)]) == [
        (6, os.getpid()),
        (20, os.getpid()),
    ]
    with pytest.raises(ValueError, match="at least 1"):
        map_processes(abs, [(1,)], n_jobs=0)


def _loop_in_daemon(queue) -> None:
    from racecast.threads import map_processes

    queue.put(map_processes(pow, [(2, 3), (3, 2)], n_jobs=2))


def test_map_processes_in_a_daemonic_process_is_the_loop():
    # a Dask worker runs nodes in a daemonic process, which may not start processes
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_loop_in_daemon, args=(queue,), daemon=True)
    process.start()
    result = queue.get(timeout=120)
    process.join(timeout=60)
    assert result == [8, 9] and process.exitcode == 0
