"""One small ``kedro run`` in a temporary copy of the project, shared by the tests of what
a user opens after a run: the MLflow run and the notebooks.

The copy holds ``conf/`` (without ``local``), ``pyproject.toml``, ``feature_repo/`` and
``notebooks/``; the package is the installed one. The real command runs there as a
subprocess, on the default (synthetic) env with a small world and every zoo model made
tiny with ``--params``, tracking to the copy's own ``sqlite:///mlflow.db`` (the base
``mlflow.yml``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: A small world (24 race days) and every zoo model tiny: the run must complete with
#: a holdout, a monitoring window and every artifact, not predict well.
PARAMS = {
    "simulation.n_days": 24,
    "simulation.start_date": "2024-01-02",
    "model_zoo.cv.n_folds": 2,
    "model_zoo.stacker.kwargs.n_estimators": 20,
    "model_zoo.models.lgbm_ranker.kwargs.n_estimators": 20,
    "model_zoo.models.lgbm_classifier.kwargs.n_estimators": 20,
    "model_zoo.models.catboost_ranker.kwargs.iterations": 20,
    "model_zoo.models.xgb_ranker.kwargs.n_estimators": 20,
    "model_zoo.models.random_forest.kwargs.n_estimators": 10,
    "model_zoo.models.tabnet.kwargs.max_epochs": 1,
    "model_zoo.models.race_set_attention.kwargs.max_epochs": 1,
    "monitoring.window.last_days": 5,
}
TIMEOUT_S = 900


def project_env() -> dict[str, str]:
    """The Makefile's environment: no telemetry, no usage stats, the Agg backend.

    ``MLFLOW_*`` variables are left out: ``mlflow.set_tracking_uri`` in an earlier
    in-process test exports ``MLFLOW_TRACKING_URI``, and the project's commands must use
    its own ``conf/base/mlflow.yml`` store, as in a user's shell.
    """
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "FEAST_USAGE": "False",
        "MPLBACKEND": "Agg",
    }


def copy_project(root: Path) -> Path:
    """A runnable copy of the project (conf without local, feature repo, notebooks)."""
    shutil.copytree(ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copytree(
        ROOT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("data")
    )
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    (root / "src").mkdir()  # kedro wants one; racecast is imported as installed (-e .)
    return root


def kedro_run(root: Path, params: dict, *args: str, timeout: int = TIMEOUT_S) -> None:
    """``kedro run --params ... ARGS`` in ``root`` as a subprocess; fail with its log tail."""
    joined = ",".join(f"{key}={value}" for key, value in params.items())
    log = root / f"kedro-{len(list(root.glob('kedro-*.log')))}.log"
    with log.open("wb") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "kedro", "run", "--params", joined, *args],
            cwd=root,
            env=project_env(),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-8000:]
        pytest.fail(f"kedro run {' '.join(args)} exited {done.returncode}:\n{tail}")


@pytest.fixture(scope="session")
def run_project(tmp_path_factory) -> Path:
    """A temporary project after one default ``kedro run`` (small world, tiny zoo)."""
    root = copy_project(tmp_path_factory.mktemp("user_facing"))
    kedro_run(root, PARAMS)
    return root
