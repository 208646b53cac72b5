"""``kedro run --env racecards`` on a feed that omits every optional contract field.

Optional means optional: a small synthetic world is written with the simulator's JSON
writer, then every field the contract marks optional is stripped from its racecard and
results files (read off the pydantic models, so a new optional field is stripped too):
rating, age, sex, gear, weights, body weight, draw, cloth number, jockey and trainer,
prize, class, going, surface, comments, morning odds, every optional result field, ...
Only the final price stays (the market track and the evaluation's yardstick are built
on it). The feed goes into a temporary copy of the project (its ``conf/`` and
``feature_repo/``; the package is the installed one), and the real command runs there as
a subprocess:
``kedro run --env racecards`` (the default pipeline of that env: ingestion, features,
model_zoo, evaluation, registry, monitoring), then ``--pipelines scoring`` on the next
day's stripped racecard. The zoo keeps every model, made tiny with ``--params``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from racecast.ingestion.contract import Finisher, MeetingHeader, RaceHeader, RunnerCard
from racecast.monitoring.drift import NO_REFERENCE_VALUE
from racecast.pipelines.simulation.nodes import simulate_world
from tests.user_facing.conftest import PARAMS, copy_project, kedro_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORLD = {"seed": 11, "n_days": 20, "start_date": "2024-01-02", "show_progress": False}
#: Every model of the zoo, tiny (the run must complete, not predict well).
TINY = {key: value for key, value in PARAMS.items() if key.startswith("model_zoo.")}
#: Kept although optional: the outcome of a finisher needs its position, and a runner
#: is withdrawn only when it says so (non_runner), priced at the off (odds.final).
KEPT = {"position", "non_runner", "odds"}
TIMEOUT_S = 1500


def _optional(model: type) -> set[str]:
    return {name for name, field in model.model_fields.items() if not field.is_required()} - KEPT


def _strip(text: str) -> str:
    """A racecard or results document without its optional fields (final price kept)."""
    doc = json.loads(text)
    for meeting in doc.get("meetings", []):
        for name in _optional(MeetingHeader):
            meeting.pop(name, None)
        for race in meeting["races"]:
            for name in _optional(RaceHeader):
                race.pop(name, None)
            for runner in race["runners"]:
                for name in _optional(RunnerCard):
                    runner.pop(name, None)
                final = (runner.get("odds") or {}).get("final")
                runner["odds"] = {"final": final} if final is not None else None
    for result in doc.get("results", []):
        for finisher in result["finishers"]:
            for name in _optional(Finisher):
                finisher.pop(name, None)
    return json.dumps(doc, indent=1)


@functools.lru_cache(maxsize=1)
def _feed() -> tuple[dict[str, str], dict[str, str]]:
    """History files and the next day's racecard, stripped, by partition id / day."""
    history, _, upcoming, _, _ = simulate_world(WORLD)
    return (
        {pid: _strip(text) for pid, text in history.items()},
        {day: _strip(text) for day, text in upcoming.items()},
    )


def _kedro(project: Path, *args: str) -> None:
    """Run ``kedro run --env racecards`` (tiny zoo) in ``project``; fail with its log tail."""
    kedro_run(project, TINY, "--env", "racecards", *args, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A temporary project holding the stripped feed, after the default racecards run."""
    root = copy_project(tmp_path_factory.mktemp("minimal_feed"))
    history, upcoming = _feed()
    raw = root / "data" / "01_raw" / "racecards"
    (raw / "upcoming").mkdir(parents=True)
    for pid, text in history.items():
        (raw / f"{pid}.json").write_text(text, encoding="utf-8")
    for day, text in upcoming.items():
        (raw / "upcoming" / f"{day}.racecard.json").write_text(text, encoding="utf-8")
    _kedro(root)
    return root


def _report(project: Path, name: str) -> dict:
    return json.loads((project / "data" / "08_reporting" / name).read_text(encoding="utf-8"))


def test_the_feed_has_no_optional_field():
    history, upcoming = _feed()
    texts = [*history.values(), *upcoming.values()]
    for needle in ('"rating"', '"age"', '"sex"', '"gear"', '"body_weight_kg"', '"prize"'):
        assert all(needle not in text for text in texts), needle
    assert all('"comment"' not in t and '"morning"' not in t for t in texts)
    assert all('"finish_time_s"' not in t and '"race_class"' not in t for t in texts)
    assert any('"final"' in t for t in texts)


def test_the_default_racecards_run_completes(project):
    ingestion = _report(project, "ingestion_report.json")
    assert ingestion["source"] == "racecards" and not ingestion["files"]["rejected"]
    for table in ("races", "runners"):
        counts = ingestion[table]
        assert counts["in"] == counts["primary"] + counts["quarantined"]
        assert counts["quarantined"] == 0 and counts["primary"] > 0
    runners = pd.read_parquet(project / "data" / "03_primary" / "runners.parquet")
    for column in ("rating", "age", "sex", "gear", "body_weight_kg", "odds_morning", "draw"):
        assert runners[column].isna().all(), column
    assert runners["odds_final"].notna().any()

    evaluation = _report(project, "evaluation.json")
    assert {"market", "stacked", "blend"} <= set(evaluation["models"])
    assert _report(project, "registry.json")
    assert (project / "data" / "06_models" / "inference_bundle.pkl").is_file()


def test_monitoring_reports_the_features_without_reference_values(project):
    monitoring = _report(project, "monitoring.json")
    drift = monitoring["feature_drift"]
    configured = yaml.safe_load(
        (ROOT / "conf" / "base" / "parameters" / "monitoring.yml").read_text()
    )
    features = configured["monitoring"]["features"]
    assert {"rating", "age"} <= set(drift["skipped"])
    assert set(drift["skipped"].values()) == {NO_REFERENCE_VALUE}
    # every monitored feature is either tested or listed as skipped, never both
    assert set(drift["features"]) | set(drift["skipped"]) == set(features)
    assert not set(drift["features"]) & set(drift["skipped"])
    assert monitoring["action"] in ("none", "alert", "retrain")


def test_scoring_runs_on_the_stripped_racecard(project):
    _kedro(project, "--pipelines", "scoring")
    scoring = _report(project, "scoring.json")
    (card,) = _feed()[1].values()
    runners = [
        r
        for meeting in json.loads(card)["meetings"]
        for race in meeting["races"]
        for r in race["runners"]
        if not r.get("non_runner")
    ]
    assert scoring["runners"] == len(runners) > 0
