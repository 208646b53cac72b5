"""The scoring pipeline run by Kedro's runner in a temporary project, after ingestion and
features, on a small synthetic world and the serving tests' tiny fitted bundle.

Each run uses the project's own catalog entries (paths relative to the temporary project),
a copy of ``feature_repo/`` and the default SQLite signals database, as ``kedro run``
would; only the parameters and ``inference_bundle`` are in memory. The last simulated
race day is never ingested: it plays tomorrow, the day before it is scored first and
gets its results on the next run.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import kedro.framework.project
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from racecast.features.online import racecard_entity_rows
from racecast.features.store import get_store
from racecast.inference.guard import LookAheadError
from racecast.inference.service import InferenceService
from racecast.inference.settings import ServingSettings
from racecast.pipeline_registry import register_pipelines
from racecast.pipelines.features import create_pipeline as create_features
from racecast.pipelines.ingestion import create_pipeline as create_ingestion
from racecast.pipelines.scoring import create_pipeline
from racecast.pipelines.simulation.nodes import simulate_world
from racecast.project import load_parameters
from racecast.signals import DEFAULT_URL, load_bets, load_signals
from tests.catalog_files import catalog_file
from tests.pipelines.model_zoo.test_pipeline import _feed
from tests.pipelines.simulation.test_pipeline import SMALL
from tests.serving.serving_fakes import STAKEABLE
from tests.serving.tiny_zoo import make_bundle

ROOT = Path(__file__).resolve().parents[3]
#: Six race days starting after the tiny bundle's training races (early 2024).
WORLD = {**SMALL, "n_days": 6, "start_date": "2024-06-03"}
#: Catalog files of the datasets ingestion, features and scoring read and write.
CATALOG_FILES = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "07_model_output_scoring",
    "08_reporting",
)
SCORING_INPUTS = {
    "inference_bundle",
    "raw_upcoming_racecards",
    "feast_materialization",
    "races",
    "runners",
    "params:scoring",
    "params:features",
    "params:serving",
    "params:registry.model_name",
}


@functools.lru_cache(maxsize=1)
def _world() -> tuple[dict[str, str], list[str]]:
    """The simulated racecard/results texts by partition id, and the race days."""
    racecards, _, _, _, _ = simulate_world(WORLD)
    return racecards, sorted({pid.split(".")[0] for pid in racecards})


def _catalog_config() -> dict:
    config: dict = {}
    for name in CATALOG_FILES:
        config.update(catalog_file(name))
    return config


def _parameters() -> dict:
    """``params:...`` entries of the project's parameters, as Kedro feeds them."""
    feed: dict = {}
    parameters = load_parameters(None, ROOT)
    for name in ("ingestion", "features", "serving", "scoring", "registry"):
        _feed(f"params:{name}", parameters[name], feed)
    return feed


def _pipeline() -> Pipeline:
    """Ingestion, features and scoring; the training set is left out (not needed)."""
    full = create_ingestion(source="synthetic") + create_features() + create_pipeline()
    return full.to_outputs("settlement_report")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project with the Feast repo, as the working directory."""
    shutil.copytree(
        ROOT / "feature_repo", tmp_path / "feature_repo", ignore=shutil.ignore_patterns("data")
    )
    (tmp_path / "data" / "04_feature").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def bundle():
    """The tiny bundle, its tracks judged stakeable (its own few validation races make
    neither stakeable, see test_stakeability.py)."""
    return make_bundle({"fundamental": STAKEABLE, "combined": STAKEABLE})


#: Serving parameters of the runs that place bets: the tiny blend falls back to the
#: market, so only the fundamental track has edges.
FUNDAMENTAL = {"staking_track": "fundamental"}


def _run(
    project: Path, bundle, history: list[str], upcoming: list[str], serving: dict | None = None
) -> DataCatalog:
    """``kedro run`` of ingestion + features + scoring on the given race days (``serving``:
    overrides of the serving parameters)."""
    racecards, _ = _world()
    raw = project / "data" / "01_raw" / "racecards" / "synthetic"
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    for day in history:
        for kind in ("racecard", "results"):
            (raw / f"{day}.{kind}.json").write_text(racecards[f"{day}.{kind}"])
    folder = project / "data" / "01_raw" / "upcoming"
    folder.mkdir(parents=True, exist_ok=True)
    for day in upcoming:
        (folder / f"{day}.racecard.json").write_text(racecards[f"{day}.racecard"])
    catalog = DataCatalog.from_config(_catalog_config())
    for name, value in _parameters().items():
        catalog[name] = MemoryDataset(value)
    catalog["params:serving"] = MemoryDataset({**_parameters()["params:serving"], **(serving or {})})
    catalog["inference_bundle"] = MemoryDataset(bundle, copy_mode="assign")
    SequentialRunner().run(_pipeline(), catalog)
    return catalog


def _day_rows(day: str) -> pd.DataFrame:
    racecards, _ = _world()
    return racecard_entity_rows(racecards[f"{day}.racecard"], f"{day}.racecard.json")


# ---------------------------------------------------------------------------- shape
def test_pipeline_shape_and_catalog():
    pipeline = create_pipeline()

    assert pipeline.inputs() == SCORING_INPUTS
    assert pipeline.outputs() == {"settlement_report"}
    assert [n.name for n in pipeline.nodes][-2:] == ["scoring.publish_signals", "scoring.settle_bets"]
    for n in pipeline.nodes:
        assert "scoring" in n.tags
        assert n.tags & {"publish", "settle"} == (
            {"settle"} if n.name == "scoring.settle_bets" else {"publish"}
        )
    config = catalog_file("07_model_output_scoring")
    # every output but the as_of string is a catalog dataset; all but the ones built from
    # the bundle (which follows the evaluation report) carry a kedro-viz layer
    assert set(config) == pipeline.all_outputs() - {"scoring_as_of"}
    unlayered = {"scoring_bundle", "scoring_features", "scoring_predictions"}
    for name, entry in config.items():
        layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
        assert (layer is None) == (name in unlayered), name


def test_default_run_orders_scoring_by_datasets_for_the_synthetic_world_only(monkeypatch):
    monkeypatch.setattr(kedro.framework.project, "PACKAGE_NAME", "racecast")
    pipelines = register_pipelines()
    default = pipelines["__default__"]
    scoring = {n.name for n in pipelines["scoring"].nodes}
    assert scoring <= {n.name for n in default.nodes}
    # every scoring input is produced upstream in the same run (or a parameter)
    assert not {i for i in default.inputs() if not i.startswith("params:")} & SCORING_INPUTS
    producers = {out: n.name for n in default.nodes for out in n.outputs}
    assert producers["inference_bundle"] == "registry.build_inference_bundle"
    assert producers["feast_materialization"] == "features.feast_materialize"
    assert producers["raw_upcoming_racecards"] == "simulation.simulate_world"
    assert producers["races"] == producers["runners"] == "ingestion.validate_and_split_node"
    for source in ("racecards", "hkjc"):
        assert not scoring & {n.name for n in pipelines[f"{source}:__default__"].nodes}


# ---------------------------------------------------------------------------- runs
def test_republishing_the_same_day_leaves_the_signals_table_unchanged(project, bundle):
    racecards, days = _world()
    history, day = days[:-2], days[-2]
    rows = _day_rows(day)

    first = _run(project, bundle, history, [day], FUNDAMENTAL)
    report = first.load("scoring_report")
    signals, bets = load_signals(DEFAULT_URL), load_bets(DEFAULT_URL)

    as_of = rows["off_time"].min()
    assert report["as_of"] == as_of.isoformat()
    assert report["signals"]["inserted"] == len(rows) == len(signals) == report["runners"]
    assert set(signals["race_id"]) == set(rows["race_id"])
    assert (signals["as_of"] == as_of).all()
    assert report["bets"]["placed"] == len(bets) > 0
    assert (bets["stake"] > 0).all() and bets["result"].isna().all()
    assert first.load("settlement_report")["matched"] == 0  # no results for the day yet
    # what was published is the inference service's answer for the same racecard
    serving = {**_parameters()["params:serving"], **FUNDAMENTAL}
    settings = ServingSettings.build(
        {**serving, "feature_repo": project / "feature_repo", "credentials_path": None}
    )
    service = InferenceService(settings, bundle, get_store("feature_repo"))
    answer = service.score_text(racecards[f"{day}.racecard"], f"{day}.racecard.json", explain=True)
    assert first.load("scoring_predictions")["races"] == answer["races"]

    again = _run(project, bundle, history, [day], FUNDAMENTAL).load("scoring_report")

    assert again["signals"] == {**report["signals"], "inserted": 0, "unchanged": len(rows)}
    assert again["bets"] == {**report["bets"], "placed": 0, "existing": len(bets)}
    pd.testing.assert_frame_equal(load_signals(DEFAULT_URL), signals)  # updated_at included
    pd.testing.assert_frame_equal(load_bets(DEFAULT_URL), bets)


def test_a_day_whose_results_the_store_holds_is_refused_by_the_point_in_time_guard(
    project, bundle
):
    _, days = _world()
    day = days[-2]
    with pytest.raises(LookAheadError, match=r"race SYN-\S+ \(off .*\): .* holds state from"):
        _run(project, bundle, days[:-1], [day])  # the day is ingested: its results are known


def test_results_settle_the_days_bets_once(project, bundle):
    _, days = _world()
    history, day, tomorrow = days[:-2], days[-2], days[-1]
    first = _run(project, bundle, history, [day], FUNDAMENTAL).load("scoring_report")
    placed = load_bets(DEFAULT_URL)

    # a day later: the day's results are ingested and tomorrow's racecards arrive
    catalog = _run(project, bundle, [*history, day], [day, tomorrow], FUNDAMENTAL)
    settlement = catalog.load("settlement_report")
    scoring = catalog.load("scoring_report")

    assert scoring["as_of"] == _day_rows(tomorrow)["off_time"].min().isoformat()
    assert scoring["signals"]["inserted"] == len(_day_rows(tomorrow))
    assert settlement["matched"] == settlement["settled"] == len(placed)
    assert settlement["unresolved"] == settlement["corrected"] == 0
    bets = load_bets(DEFAULT_URL)
    settled = bets[bets["as_of"] == pd.Timestamp(first["as_of"])]
    assert len(settled) == len(placed) and settled["result"].notna().all()
    runners = catalog.load("runners")
    outcome = settled.merge(
        runners[["race_id", "horse_id", "post_won", "post_starting_price", "non_runner"]],
        on=["race_id", "horse_id"],
        validate="one_to_one",
    )
    winners = runners.groupby("race_id")["post_won"].sum()
    for bet in outcome.itertuples():
        if bet.result == "won":
            assert bet.post_won
            k = winners[bet.race_id]
            assert bet.pnl == pytest.approx(bet.stake * (bet.odds / k - 1))
        elif bet.result == "lost":
            assert not bet.post_won and bet.pnl == pytest.approx(-bet.stake)
        else:
            assert bet.result == "void" and bet.pnl == 0.0
        if pd.notna(bet.post_starting_price):
            assert bet.clv == pytest.approx(bet.odds / bet.post_starting_price - 1)
    assert settlement["totals"]["pnl"] == pytest.approx(settled["pnl"].sum())
    assert settlement["totals"]["open"] == len(bets) - len(placed)  # tomorrow's bets
    signals = load_signals(DEFAULT_URL)

    rerun = _run(project, bundle, [*history, day], [day, tomorrow], FUNDAMENTAL)

    assert rerun.load("settlement_report")["unchanged"] == len(placed)
    assert rerun.load("scoring_report")["signals"]["unchanged"] == scoring["runners"]
    pd.testing.assert_frame_equal(load_bets(DEFAULT_URL), bets)  # settled_at included
    pd.testing.assert_frame_equal(load_signals(DEFAULT_URL), signals)
