"""The README's pasteable commands run as written.

Fenced ``bash`` blocks marked ``<!-- runnable -->`` on the line before them are run, in
README order, with ``bash -euo pipefail`` in a temporary copy of the project after a
real ``kedro run`` of the synthetic default (a small world, every zoo model made tiny
with ``--params``; the package is the installed one and ``.venv`` links to this
checkout's). So the README cannot drift from the commands: a renamed option, a moved
folder or a broken race-day loop fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipelines.test_minimal_feed_run import TINY

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUNNABLE = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.S)
#: A small synthetic world (the default is 300 race days).
SMALL_WORLD = {"simulation.n_days": 24, "simulation.horses": 800}
TIMEOUT_S = 1500


def runnable_blocks(text: str) -> list[str]:
    """The shell blocks of a README marked runnable, in order."""
    return [block.strip() for block in RUNNABLE.findall(text)]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RACECAST_")}
    env.update(
        KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", FEAST_USAGE="False", MPLBACKEND="Agg"
    )
    return env


def _run(command: list[str], cwd: Path, log: Path) -> subprocess.CompletedProcess:
    with log.open("wb") as sink:
        return subprocess.run(
            command,
            cwd=cwd,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=TIMEOUT_S,
        )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project after `kedro run` on a small synthetic world."""
    root = tmp_path_factory.mktemp("readme") / "racecast"
    root.mkdir()
    shutil.copytree(ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    shutil.copy(ROOT / "pyproject.toml", root)
    shutil.copytree(
        ROOT / "feature_repo", root / "feature_repo", ignore=shutil.ignore_patterns("data")
    )
    (root / "src").mkdir()  # kedro wants one; racecast is imported as installed (-e .)
    (root / ".venv").symlink_to(Path(sys.prefix))
    params = ",".join(f"{k}={v}" for k, v in {**SMALL_WORLD, **TINY}.items())
    log = root / "kedro-run.log"
    done = _run([sys.executable, "-m", "kedro", "run", "--params", params], root, log)
    if done.returncode != 0:
        pytest.fail(f"kedro run exited {done.returncode}:\n{log.read_text()[-8000:]}")
    return root


def test_the_readme_marks_the_commands_a_user_pastes():
    blocks = runnable_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    joined = "\n".join(blocks)
    for command in ("racecast predict", "racecast results push", "racecast races"):
        assert command in joined, command


def test_every_runnable_readme_block_runs(project):
    blocks = runnable_blocks(README.read_text(encoding="utf-8"))
    for i, block in enumerate(blocks):
        log = project / f"readme-block-{i}.log"
        done = _run(["bash", "-euo", "pipefail", "-c", block], project, log)
        assert done.returncode == 0, f"README block {i}:\n{block}\n---\n{log.read_text()[-4000:]}"

    # the serving block's outputs are JSON; the race-day loop pushed every race of the day
    predictions = json.loads((project / "predictions.json").read_text())
    assert predictions["races"] and all(r["runners"] for r in predictions["races"])
    assert isinstance(json.loads((project / "features.json").read_text()), list)
    races = [r["race_id"] for r in predictions["races"]]
    for race_id in races:
        one = json.loads((project / f"{race_id}.prediction.json").read_text())
        assert [r["race_id"] for r in one["races"]] == [race_id]
        assert (project / "data" / "01_raw" / "raceday" / f"{race_id}.results.json").is_file()
