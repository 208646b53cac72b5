"""The ``racecast`` command as a script runs it: a real subprocess, stdout to a file.

``racecast predict CARD --env X > out.json`` must leave valid JSON in ``out.json`` and
the logs on stderr; a missing model or feature store is one ``Error:`` line naming the
``kedro run --env ...`` to run, exit code 2, no traceback. The projects are temporary:
conf/base (without the repo's conf/logging.yml, so Kedro falls back to its own rich
handler, the case that printed to stdout), an env of the test's own, the scoring
pipeline test's small world ingested and materialized, the tiny zoo bundle as a pickle.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from racecast.inference.settings import ENV_PREFIX
from tests.pipelines.scoring import test_pipeline as scoring_run
from tests.serving.serving_fakes import racecard_text

ROOT = scoring_run.ROOT

# The scoring pipeline test's fixtures: a temporary project (cwd) and the tiny bundle.
project = scoring_run.project
bundle = scoring_run.bundle


def _command() -> list[str]:
    """The installed console script (``.venv/bin/racecast``), else ``python -m``."""
    script = Path(sys.executable).parent / "racecast"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "racecast.cli"]


def _racecast(root: Path, *args: str) -> tuple[int, str, str]:
    """Run ``racecast ARGS > out.json`` in ``root``: (exit code, out.json text, stderr)."""
    # mlflow.set_tracking_uri in an earlier in-process test exports MLFLOW_TRACKING_URI:
    # the command must read the temporary project's own store, as a user's shell would
    env = {k: v for k, v in os.environ.items() if not k.startswith((ENV_PREFIX, "MLFLOW_"))}
    env.update(KEDRO_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1", FEAST_USAGE="False")
    env.pop("KEDRO_LOGGING_CONFIG", None)
    out = root / "out.json"
    with out.open("wb") as stdout:
        done = subprocess.run(
            [*_command(), *args],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=300,
        )
    return done.returncode, out.read_text(encoding="utf-8"), done.stderr.decode("utf-8", "replace")


def _conf(root: Path, *envs: str) -> None:
    """conf/base, conf/local and the given envs of the repo, and pyproject.toml."""
    shutil.copytree(ROOT / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local").mkdir(exist_ok=True)
    for env in envs:
        shutil.copytree(ROOT / "conf" / env, root / "conf" / env)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")


def _one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr and "╭" not in stderr, stderr
    return errors[0]


@pytest.fixture
def scripted(project, bundle):
    """A built project (store materialized) with env ``scripted`` serving a bundle pickle;
    tomorrow's racecard file."""
    racecards, days = scoring_run._world()
    history, day = days[:-1], days[-1]
    scoring_run._run(project, bundle, history, [day])  # ingestion + features (+ scoring)
    _conf(project)
    path = project / "data" / "06_models" / "scripted_bundle.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(bundle))
    params = project / "conf" / "scripted" / "parameters"
    params.mkdir(parents=True)
    serving = {"serving": {"bundle_uri": "data/06_models/scripted_bundle.pkl"}}
    (params / "serving.yml").write_text(yaml.safe_dump(serving))
    card = project / f"{day}.racecard.json"
    card.write_text(racecards[f"{day}.racecard"], encoding="utf-8")
    return card


def test_predict_prints_only_json_on_stdout_and_logs_on_stderr(project, scripted, bundle):
    code, out, err = _racecast(project, "-v", "predict", scripted.name, "--env", "scripted")

    assert code == 0, err
    answer = json.loads(out)  # the whole of stdout is one JSON document
    assert answer["model_version"] == bundle.model_version and answer["races"]
    assert {r["race_id"] for r in answer["races"]} == set(
        scoring_run._day_rows(scripted.name.split(".")[0])["race_id"]
    )
    assert "INFO" in err  # -v: the logs are there, on stderr
    assert "as logging configuration" in " ".join(err.split())  # Kedro's line at import


def test_features_online_prints_only_json_on_stdout(project, scripted):
    code, out, err = _racecast(project, "-v", "features", "online", scripted.name)

    assert code == 0, err
    rows = json.loads(out)
    assert rows and {"race_id", "horse_id"} <= set(rows[0])
    assert "INFO" in err


@pytest.mark.parametrize(("env", "run_env"), [(None, "local"), ("racecards", "racecards")])
def test_a_missing_model_names_the_kedro_run_to_build_it(tmp_path, env, run_env):
    _conf(tmp_path, "racecards", "hkjc")
    shutil.copytree(
        ROOT / "feature_repo", tmp_path / "feature_repo", ignore=shutil.ignore_patterns("data")
    )
    (tmp_path / "card.json").write_text("{}")
    args = ["predict", "card.json", *(["--env", env] if env else [])]

    code, out, err = _racecast(tmp_path, *args)

    assert code == 2 and out == ""
    line = _one_error_line(err)
    assert f"`kedro run --env {run_env}`" in line
    assert "racecast-win" in line and "not found" in line
    if env is None:  # trained with another env? the line lists them
        assert "racecards" in line


def test_an_empty_feature_store_names_the_kedro_run_to_build_it(tmp_path, bundle):
    _conf(tmp_path)
    shutil.copytree(
        ROOT / "feature_repo", tmp_path / "feature_repo", ignore=shutil.ignore_patterns("data")
    )
    (tmp_path / "bundle.pkl").write_bytes(pickle.dumps(bundle))
    (tmp_path / "card.json").write_text(racecard_text())  # a valid racecard

    for args in (
        ["predict", "card.json", "--bundle", "bundle.pkl"],
        ["features", "online", "card.json"],
    ):
        code, out, err = _racecast(tmp_path, *args)
        assert code == 2 and out == "", err
        line = _one_error_line(err)
        assert "feature store" in line and "is empty" in line
        assert "`kedro run --env local`" in line


def test_every_command_documents_env():
    from click.testing import CliRunner

    from racecast.cli import cli

    for command in (["predict"], ["serve"], ["features", "online"]):
        result = CliRunner().invoke(cli, [*command, "--help"])
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        assert "--env" in text and "kedro run --env ENV" in text, text


def test_docs_and_messages_use_kedro_run_pipelines_not_the_deprecated_option():
    """``kedro run --pipeline`` is deprecated in Kedro 1.x: every command shown to a user
    (READMEs, docs, conf comments, messages in code) uses ``--pipelines``."""
    import re

    deprecated = re.compile(r"--pipeline(?![s\w])")
    paths = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "conf").rglob("*.yml")]
    paths += [
        *(ROOT / "src" / "racecast").rglob("*.py"),
        *(ROOT / "src" / "racecast").rglob("*.md"),
    ]
    paths += [*(ROOT / "feature_repo").glob("*.yaml"), ROOT / "Makefile"]
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in paths
        if path.is_file()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if deprecated.search(line)
    ]
    assert found == []


def test_a_command_run_in_process_leaves_the_callers_logging_as_it_was():
    import logging

    from click.testing import CliRunner

    from racecast.cli import cli

    names = (None, "kedro", "racecast")
    root = logging.getLogger()
    before = (list(root.handlers), [logging.getLogger(n).level for n in names])

    result = CliRunner().invoke(cli, ["-v", "api-key-hash", "k" * 24])

    assert result.exit_code == 0 and result.stdout.startswith("sha256:")
    assert (list(root.handlers), [logging.getLogger(n).level for n in names]) == before


def test_races_names_the_race_and_field_of_a_bad_off_time(tmp_path):
    _conf(tmp_path)
    card = json.loads(racecard_text())
    race = card["meetings"][0]["races"][0]
    race["off_time"] = "tea time"
    (tmp_path / "bad.racecard.json").write_text(json.dumps(card), encoding="utf-8")
    code, out, err = _racecast(tmp_path, "races", "bad.racecard.json")
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and f"race {race['race_id']}: off_time 'tea time'" in lines[0], err
    assert "Traceback" not in err
