"""Node tests of the scoring pipeline: the service's fakes for the bundle and Feast, a real
SQLite signals database per test.

The racecard is the service tests' (``tests/serving/serving_fakes.py``: race R-PRICED
fully priced, R-UNPRICED with one priced runner); results are built with the ingestion
tests' builders and ingested into canonical tables, as the settle node receives them.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from racecast.features.online import RacecardError, racecard_entity_rows
from racecast.inference import service as service_module
from racecast.inference.service import InferenceService
from racecast.pipelines.scoring import nodes
from racecast.project import load_parameters
from racecast.signals import SchemaNotCurrentError, load_bets, load_signals
from tests.catalog_files import ROOT
from tests.pipelines.ingestion.builders import files, finisher, ingest, result, results
from tests.serving.serving_fakes import (
    FakeBundle,
    FakeReader,
    FakeStore,
    fake_online_features,
    racecard,
    racecard_text,
    settings,
)

PARAMETERS = Path(__file__).resolve().parents[3] / "conf" / "base" / "parameters"
#: The project's serving parameters, staking on the fundamental track (the bets below
#: are the runners whose p_win beats the price; the default combined track is
#: tested in test_scored_runners_are_the_service_answer and test_stakeability.py).
SERVING = {
    **load_parameters(None, ROOT)["serving"],
    "staking_track": "fundamental",
}
FEATURES = {"repo_path": "feature_repo", "compute": {}}
DAY = "2025-02-06"
#: First off of the racecard: R-PRICED at 14:30 Hong Kong time.
FIRST_OFF = "2025-02-06T06:30:00+00:00"
MATERIALIZED = {"end": "2025-02-05T12:00:00+00:00", "mode": "incremental", "views": []}


def scoring_params(tmp_path: Path, **overrides) -> dict:
    """The project's scoring parameters with the signals database in ``tmp_path``."""
    params = yaml.safe_load((PARAMETERS / "scoring.yml").read_text())["scoring"]
    params["signals_db_url"] = f"sqlite:///{tmp_path}/signals.db"
    params.update(overrides)
    return params


@pytest.fixture
def feast(monkeypatch):
    """The service's fake online features; the store materialized until ``state["until"]``."""
    state = {"until": pd.Timestamp("2025-02-05T12:00", tz="UTC")}
    monkeypatch.setattr(nodes.feature_store, "get_store", lambda repo_path: FakeStore())
    monkeypatch.setattr(nodes.feature_store, "materialized_until", lambda fs: state["until"])
    monkeypatch.setattr(service_module, "online_features", fake_online_features)
    monkeypatch.setattr(service_module, "OnlineReader", FakeReader)
    return state


def _rows(text: str | None = None) -> pd.DataFrame:
    return racecard_entity_rows(text or racecard_text(), f"{DAY}.racecard.json")


def _score(card: dict | None = None, serving: dict | None = None, bundle=None) -> dict:
    """Predictions of the scoring nodes for a racecard (default: the service tests')."""
    rows = nodes.parse_upcoming_racecards(files({DAY: racecard_text(card)}), {"race_date": None})
    as_of = nodes.scoring_cutoff(rows, {"as_of": None})
    bundle = bundle or FakeBundle()
    serving = serving or SERVING
    features = nodes.online_feature_rows(rows, bundle, as_of, MATERIALIZED, FEATURES, serving)
    return nodes.score_runners(features, rows, bundle, as_of, serving)


def _card_of(day: str, race_id: str) -> str:
    card = racecard()
    meeting = card["meetings"][0]
    meeting["date"] = day
    meeting["races"] = meeting["races"][:1]
    meeting["races"][0]["race_id"] = race_id
    meeting["races"][0]["off_time"] = f"{day}T14:30:00+08:00"
    return racecard_text(card)


# ---------------------------------------------------------------------------- parsing
def test_parse_scores_the_latest_day_as_ingestion_parses_it():
    partitions = files({"2025-02-05": _card_of("2025-02-05", "OLD-1"), DAY: racecard_text()})

    rows = nodes.parse_upcoming_racecards(partitions, {"race_date": None})

    pd.testing.assert_frame_equal(rows, _rows())
    assert list(rows["race_id"].unique()) == ["R-PRICED", "R-UNPRICED"]
    earlier = nodes.parse_upcoming_racecards(partitions, {"race_date": dt.date(2025, 2, 5)})
    assert set(earlier["race_id"]) == {"OLD-1"}
    # texts (an in-memory run of the simulation pipeline) work as well as loaders
    plain = nodes.parse_upcoming_racecards({DAY: racecard_text()}, {"race_date": DAY})
    pd.testing.assert_frame_equal(plain, rows)


def test_parse_names_what_it_cannot_score():
    with pytest.raises(ValueError, match="no racecard of 2025-02-07"):
        nodes.parse_upcoming_racecards(files({DAY: racecard_text()}), {"race_date": "2025-02-07"})
    with pytest.raises(ValueError, match="scoring.race_date: expected a date"):
        nodes.parse_upcoming_racecards(files({DAY: racecard_text()}), {"race_date": "tomorrow"})
    with pytest.raises(ValueError, match=r"cannot tell the race day of \['card'\]"):
        nodes.parse_upcoming_racecards(files({"card": racecard_text()}), {"race_date": None})
    with pytest.raises(ValueError, match="is empty"):
        nodes.parse_upcoming_racecards({}, {"race_date": None})
    twice = files({f"{DAY}-st": racecard_text(), f"{DAY}-hv": racecard_text()})
    with pytest.raises(ValueError, match="race R-PRICED is in two upcoming racecards"):
        nodes.parse_upcoming_racecards(twice, {"race_date": None})
    card = racecard()
    card["meetings"][0]["races"][0]["runners"][1]["odds"] = {"final": 0.5}
    with pytest.raises(RacecardError, match=f"{DAY}.racecard.json"):
        nodes.parse_upcoming_racecards(files({DAY: racecard_text(card)}), {"race_date": None})


def test_cutoff_is_the_first_off_or_an_earlier_explicit_snapshot():
    rows = _rows()

    assert nodes.scoring_cutoff(rows, {"as_of": None}) == FIRST_OFF
    # the same racecards in another order: the same snapshot
    assert nodes.scoring_cutoff(rows.iloc[::-1], {"as_of": None}) == FIRST_OFF
    explicit = nodes.scoring_cutoff(rows, {"as_of": "2025-02-06T09:00:00+08:00"})
    assert explicit == "2025-02-06T01:00:00+00:00"
    with pytest.raises(ValueError, match="after the off of race R-PRICED"):
        nodes.scoring_cutoff(rows, {"as_of": "2025-02-06T06:31:00+00:00"})
    with pytest.raises(ValueError, match="no time zone"):
        nodes.scoring_cutoff(rows, {"as_of": "2025-02-06T01:00:00"})


# ---------------------------------------------------------------------------- scoring
def test_online_features_get_the_final_odds_and_refuse_a_store_never_materialized(feast):
    rows = _rows()

    features = nodes.online_feature_rows(
        rows, FakeBundle(), FIRST_OFF, MATERIALIZED, FEATURES, SERVING
    )

    assert len(features) == len(rows)
    merged = features.merge(rows[["race_id", "horse_id", "odds_final"]], on=["race_id", "horse_id"])
    np.testing.assert_array_equal(merged["odds_final_x"], merged["odds_final_y"])
    assert features["odds_final"].isna().sum() == 2  # R-UNPRICED's H20 and H22

    feast["until"] = None
    with pytest.raises(ValueError, match="never materialized"):
        nodes.online_feature_rows(rows, FakeBundle(), FIRST_OFF, MATERIALIZED, FEATURES, SERVING)


def test_scored_runners_are_the_service_answer(feast):
    predictions = _score()

    service = InferenceService(settings(**SERVING), FakeBundle(), FakeStore())
    expected = service.score_rows(_rows(), explain=True)  # the signals keep explanations
    assert predictions["races"] == expected["races"]
    assert predictions["as_of"] == FIRST_OFF
    assert (predictions["model_version"], predictions["feature_service"]) == (
        expected["model_version"],
        expected["feature_service"],
    )
    # the serving parameters drive the stakes, as they do the service's
    combined = _score(serving={**SERVING, "staking_track": "combined"})
    top = combined["races"][0]["runners"][0]
    assert combined["races"][0]["staking_track"] == "combined"
    assert top["edge"] == pytest.approx(top["p_win_combined"] * top["market_odds"] - 1)


def test_a_bundle_trained_after_the_cutoff_is_refused(feast):
    class LaterBundle(FakeBundle):
        trained_until = pd.Timestamp("2025-02-06T08:00", tz="UTC")

    with pytest.raises(ValueError, match="trained on races until 2025-02-06T08:00"):
        _score(bundle=LaterBundle())


def test_signals_frame_keeps_the_answer_and_prices_only_priced_runners(feast):
    predictions = _score()

    frame = nodes.signals_frame(predictions)

    assert list(frame.columns) == nodes.SIGNAL_COLUMNS
    assert len(frame) == 7
    by_horse = frame.set_index("horse_id")
    runners = {r["horse_id"]: r for race in predictions["races"] for r in race["runners"]}
    for horse, runner in runners.items():
        row = by_horse.loc[horse]
        assert row["p_win"] == runner["p_win"] and row["fair_odds"] == runner["fair_odds"]
        assert row["stake_units"] == runner["stake_units"]
        assert row["reasons"]["explanation"] == runner["explanation"]
        assert row["reasons"]["rank"] == runner["rank"]
    assert by_horse.loc["H30", "best_odds"] == 2.5
    assert np.isnan(by_horse.loc["H20", "best_odds"]) and np.isnan(by_horse.loc["H20", "edge"])
    assert by_horse.loc["H20", "stake_units"] == 0.0
    json.dumps(frame["reasons"].tolist(), allow_nan=False)


def test_model_identity_uses_the_registry_version_or_the_fingerprint():
    registered = {"model_version": "racecast-win/7", "feature_service": "combined_v1"}
    pickled = {"model_version": "cef6215af2db", "feature_service": "combined_v1"}

    assert nodes.model_identity(registered, "racecast-win") == {
        "name": "racecast-win",
        "version": "7",
        "feature_service": "combined_v1",
    }
    assert nodes.model_identity(pickled, "racecast-win")["version"] == "cef6215af2db"


def test_select_bundle_keeps_this_runs_bundle_or_loads_the_named_one(tmp_path):
    bundle = FakeBundle()
    assert nodes.select_bundle(bundle, {"bundle_uri": None}) is bundle

    from tests.serving.tiny_zoo import make_bundle

    tiny = make_bundle()
    path = tmp_path / "bundle.pkl"
    path.write_bytes(pickle.dumps(tiny))
    loaded = nodes.select_bundle(bundle, {"bundle_uri": str(path)})
    assert loaded.fingerprint == tiny.fingerprint
    with pytest.raises(FileNotFoundError):
        nodes.select_bundle(bundle, {"bundle_uri": str(tmp_path / "missing.pkl")})


# ---------------------------------------------------------------------------- publishing
def _tables(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_signals(url), load_bets(url)


def test_publishing_the_same_scoring_again_changes_nothing(feast, tmp_path):
    params = scoring_params(tmp_path)
    predictions = _score()

    first = nodes.publish_scored_signals(predictions, "racecast-win", params)
    signals, bets = _tables(params["signals_db_url"])
    again = nodes.publish_scored_signals(predictions, "racecast-win", params)

    assert first["signals"]["inserted"] == 7 and first["runners"] == 7
    assert first["model"] == {
        "name": "racecast-win",
        "version": "7",
        "feature_service": "combined_v1",
    }
    assert first["signals_db"] == params["signals_db_url"]
    # backed: positive stake with a price (H30, D1, H12 in R-PRICED and H21 in R-UNPRICED)
    assert first["bets"]["placed"] == 4
    assert set(bets["horse_id"]) == {"H30", "D1", "H12", "H21"}
    assert (signals["as_of"] == pd.Timestamp(FIRST_OFF)).all()
    assert again["signals"] == {**first["signals"], "inserted": 0, "unchanged": 7}
    assert again["bets"] == {**first["bets"], "placed": 0, "existing": 4}
    reloaded, rebets = _tables(params["signals_db_url"])
    pd.testing.assert_frame_equal(reloaded, signals)
    pd.testing.assert_frame_equal(rebets, bets)
    stored = json.loads(signals.set_index("horse_id").loc["H30", "reasons_json"])
    assert stored["staking_track"] == "fundamental" and stored["explanation"]


def test_a_changed_racecard_updates_its_signals_but_not_the_struck_bets(feast, tmp_path):
    params = scoring_params(tmp_path)
    nodes.publish_scored_signals(_score(), "racecast-win", params)
    signals, bets = _tables(params["signals_db_url"])
    card = racecard()
    card["meetings"][0]["races"][0]["runners"][0]["odds"] = {"final": 3.0}  # H30 drifts

    report = nodes.publish_scored_signals(_score(card), "racecast-win", params)

    # every runner of R-PRICED has a new market probability, hence a new blend
    assert report["as_of"] == FIRST_OFF
    assert report["signals"]["updated"] == 4 and report["signals"]["inserted"] == 0
    assert report["bets"] == {"as_of": FIRST_OFF, "eligible": 4, "placed": 0, "existing": 4}
    after, rebets = _tables(params["signals_db_url"])
    assert after.set_index("horse_id").loc["H30", "best_odds"] == 3.0
    pd.testing.assert_frame_equal(rebets, bets)  # struck at 2.5, never repriced
    pd.testing.assert_series_equal(after["id"], signals["id"])


def test_an_unmigrated_database_is_refused_without_migrate(feast, tmp_path):
    with pytest.raises(SchemaNotCurrentError, match="upgrade"):
        nodes.publish_scored_signals(
            _score(), "racecast-win", scoring_params(tmp_path, migrate=False)
        )


# ---------------------------------------------------------------------------- settlement
def _results_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical tables of the racecard with results: H30 wins R-PRICED, R-UNPRICED void."""
    priced = result(
        "R-PRICED",
        [
            finisher("H30", 1, starting_price=2.2),
            finisher("D1", 2, starting_price=9.0),
            finisher("H400", 3, starting_price=4.0),
            finisher("H12", 4, starting_price=21.0),
        ],
    )
    void = result("R-UNPRICED", [], status="void")
    raw = files({f"{DAY}.racecard": racecard_text(), f"{DAY}.results": results(priced, void)})
    _, (races, runners, quarantine, _) = ingest(raw)
    assert quarantine.empty
    return races, runners


def test_settlement_fills_pnl_and_clv_once(feast, tmp_path):
    params = scoring_params(tmp_path)
    scoring_report = nodes.publish_scored_signals(_score(), "racecast-win", params)
    races, runners = _results_tables()
    url = params["signals_db_url"]

    report = nodes.settle_bets(races, runners, scoring_report, params)

    assert report["settled"] == 4 and report["matched"] == 4 and report["unresolved"] == 0
    bets = load_bets(url).set_index("horse_id")
    h30 = bets.loc["H30"]
    assert h30["result"] == "won" and h30["odds"] == 2.5
    assert h30["pnl"] == pytest.approx(h30["stake"] * 1.5)
    assert h30["clv"] == pytest.approx(2.5 / 2.2 - 1)
    for horse, closing in (("D1", 9.0), ("H12", 21.0)):
        assert bets.loc[horse, "result"] == "lost"
        assert bets.loc[horse, "pnl"] == pytest.approx(-bets.loc[horse, "stake"])
        assert bets.loc[horse, "clv"] == pytest.approx(bets.loc[horse, "odds"] / closing - 1)
    assert bets.loc["H21", "result"] == "void" and bets.loc["H21", "pnl"] == 0.0
    totals = report["totals"]
    assert totals["bets"] == totals["settled"] == 4 and totals["open"] == 0
    decided = bets[bets["result"] != "void"]
    assert totals["staked"] == pytest.approx(decided["stake"].sum())
    assert totals["pnl"] == pytest.approx(bets["pnl"].sum())
    assert totals["roi"] == pytest.approx(bets["pnl"].sum() / decided["stake"].sum())
    json.dumps(report, allow_nan=False)

    settled = load_bets(url)
    again = nodes.settle_bets(races, runners, scoring_report, params)
    assert again["unchanged"] == 4 and again["settled"] == again["corrected"] == 0
    assert again["totals"] == totals
    pd.testing.assert_frame_equal(load_bets(url), settled)


def test_settlement_without_results_leaves_bets_open(feast, tmp_path):
    params = scoring_params(tmp_path)
    scoring_report = nodes.publish_scored_signals(_score(), "racecast-win", params)
    races, runners = _results_tables()
    pending = races.assign(status="pending")

    report = nodes.settle_bets(pending, runners, scoring_report, params)

    assert report["results"] == 0 and report["matched"] == 0
    assert report["totals"]["open"] == 4 and report["totals"]["roi"] is None
    assert load_bets(params["signals_db_url"])["result"].isna().all()
