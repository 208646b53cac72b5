"""The MLflow run of a ``kedro run``: every model's metrics and the reports as artifacts,
read back through ``mlflow.MlflowClient`` from the project's SQLite tracking store; and
``make mlflow-ui`` serving that store, stopped with nothing left running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import mlflow
import pytest

from racecast.pipelines.model_zoo.pipeline import ZOO_MODELS
from tests.user_facing.conftest import ROOT, project_env

pytestmark = pytest.mark.slow

EVALUATION_ARTIFACTS = {
    "evaluation.json",
    "evaluation.md",
    "reliability.png",
    "kelly.png",
    "feature_importance.png",
}
MONITORING_ARTIFACTS = {"monitoring.json", "monitoring.png"}


@pytest.fixture(scope="module")
def client_and_run(run_project):
    """The client of the project's tracking store and the single run of ``kedro run``."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("racecast")
    assert experiment is not None, "kedro run created no 'racecast' experiment"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, f"one run per kedro run, found {len(runs)}"
    return client, runs[0]


def test_the_run_has_every_models_pseudo_r2(run_project, client_and_run):
    _, run = client_and_run
    report = json.loads((run_project / "data" / "08_reporting" / "evaluation.json").read_text())
    combined = {"blend", "market_corrected", "benter", "residual"}  # the combined track's candidates
    served = {"serving_stacked", "serving_blend"}  # what the bundle serves (model_zoo.serving_subset)
    assert set(ZOO_MODELS) | {"stacked", "market"} | combined | served == set(report["models"])
    metrics = run.data.metrics
    for model, values in report["models"].items():
        key = f"evaluation_metrics.{model}.pseudo_r2"
        assert key in metrics, f"{key} missing from the MLflow run"
        assert metrics[key] == pytest.approx(values["pseudo_r2"])
        assert f"evaluation_metrics.{model}.log_loss" in metrics
    assert any(key.startswith("monitoring_metrics.") for key in metrics)


def test_the_run_has_the_reports_and_figures_as_artifacts(run_project, client_and_run, tmp_path):
    client, run = client_and_run
    for folder, expected in (
        ("evaluation", EVALUATION_ARTIFACTS),
        ("monitoring", MONITORING_ARTIFACTS),
    ):
        listed = {Path(a.path).name: a for a in client.list_artifacts(run.info.run_id, folder)}
        assert expected <= set(listed), f"{folder}: {sorted(listed)}"
        assert all(listed[name].file_size > 0 for name in expected)
    local = client.download_artifacts(run.info.run_id, "evaluation/evaluation.json", str(tmp_path))
    written = run_project / "data" / "08_reporting" / "evaluation.json"
    assert json.loads(Path(local).read_text()) == json.loads(written.read_text())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_mlflow_ui_serves_the_store_and_stops_on_sigterm(run_project):
    port = _free_port()
    command = [
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        "-o",
        ".venv/.installed",  # the venv is set up; never reinstall from a test
        "mlflow-ui",
        f"MLFLOW_DB={run_project / 'mlflow.db'}",
        f"MLFLOW_PORT={port}",
    ]
    env = {k: v for k, v in project_env().items() if not k.startswith("VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"  # a fresh shell: the target puts .venv/bin on PATH itself
    make = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert make.poll() is None, f"make mlflow-ui exited {make.returncode}"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the MLflow UI did not answer /health"
            time.sleep(1)
        found = httpx.post(
            f"{base}/api/2.0/mlflow/experiments/search", json={"max_results": 10}, timeout=30
        ).json()
        assert "racecast" in {e["name"] for e in found["experiments"]}

        make.send_signal(signal.SIGTERM)  # to make only, as a supervisor would
        make.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _alive(make.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(make.pid), "a process of make mlflow-ui outlived SIGTERM"
    finally:
        if _alive(make.pid):
            os.killpg(make.pid, signal.SIGKILL)
        make.wait(timeout=10)
