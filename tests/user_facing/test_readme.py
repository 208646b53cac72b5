"""The README's pasteable commands run as written.

Fenced ``bash`` blocks marked ``<!-- runnable -->`` on the line before them are run, in
README order, with ``bash -euo pipefail`` in the temporary project of ``run_project``
(``conftest.py``: a real ``kedro run`` of the synthetic default on a small world; the
package is the installed one and ``.venv`` links to this checkout's). So the README
cannot drift from the commands: a renamed option, a moved folder or a broken race-day
loop fails here. The blocks push the next day's results: this module runs after the
other tests of the shared project (pytest runs the files in name order).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.user_facing.conftest import ROOT, TIMEOUT_S, project_env

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
RUNNABLE = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.S)


def runnable_blocks(text: str) -> list[str]:
    """The shell blocks of a README marked runnable, in order."""
    return [block.strip() for block in RUNNABLE.findall(text)]


@pytest.fixture(scope="module")
def project(run_project) -> Path:
    """The shared project, with ``.venv`` as the README's commands expect it."""
    venv = run_project / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.prefix))
    return run_project


def _bash(block: str, cwd: Path, log: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in project_env().items() if not k.startswith("RACECAST_")}
    with log.open("wb") as sink:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=TIMEOUT_S,
        )


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
        done = _bash(block, project, log)
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
