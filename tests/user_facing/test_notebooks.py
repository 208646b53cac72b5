"""The notebooks in notebooks/: stored without outputs, executed (nbclient) on the outputs
of a small ``kedro run``; ``kedro jupyter notebook`` and ``kedro jupyter lab`` start."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

from tests.user_facing.conftest import ROOT, copy_project, project_env

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_on_the_catalog():
    names = {path.name for path in NOTEBOOKS}
    assert {
        "evaluation_report.ipynb",
        "features_offline_vs_online.ipynb",
        "drift_report.ipynb",
    } <= names
    for path in NOTEBOOKS:
        sources = [cell.source for cell in nbformat.read(path, as_version=4).cells]
        assert any("%load_ext kedro.ipython" in source for source in sources), path.name
        assert any("catalog.load(" in source for source in sources), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_notebook_executes_on_a_runs_outputs(run_project, name):
    path = run_project / "notebooks" / name
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=project_env())  # raises CellExecutionError naming the failing cell
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == "error"
    ]
    assert not errors
    shown = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in shown), "no figure shown"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("app", ["notebook", "lab"])
def test_kedro_jupyter_starts(tmp_path, app):
    project = copy_project(tmp_path / "project")
    port = _free_port()
    env = {
        **project_env(),
        # the server's runtime files (cookie secret, connection files) in the test's folder
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    command = [
        sys.executable,
        "-m",
        "kedro",
        "jupyter",
        app,
        "--no-browser",
        "--port",
        str(port),
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # jupyter refuses root without it (CI containers)
    server = subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        url = None
        while url is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break  # exited
            lines.append(line)
            found = re.search(rf"http://127\.0\.0\.1:{port}/\S*", line)
            url = found.group(0) if found else None
        assert url, f"kedro jupyter {app} printed no server URL:\n" + "".join(lines[-40:])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
