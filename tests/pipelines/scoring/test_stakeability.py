"""The scoring pipeline publishes the signals of a track that is not stakeable with stake 0
and the reason, and backs no bet; a stakeable track's signals are staked and backed.

The nodes run on the service's fakes (``test_nodes.py``'s ``feast`` fixture) and a real
SQLite signals database; the project's serving parameters stake on the default track.
The last test is a Kedro run of ingestion, features and scoring (``test_pipeline.py``).
"""

from __future__ import annotations

import json

import pytest

from racecast.pipelines.scoring import nodes
from racecast.project import load_parameters
from racecast.signals import DEFAULT_URL, load_bets, load_signals
from tests.catalog_files import ROOT
from tests.pipelines.scoring.test_nodes import (  # noqa: F401 (feast is a fixture)
    _score,
    feast,
    scoring_params,
)
from tests.pipelines.scoring.test_pipeline import project  # noqa: F401 (a fixture)
from tests.serving.serving_fakes import NOT_STAKEABLE, STAKEABLE, FakeBundle, settings


class _Bundle(FakeBundle):
    def __init__(self, combined: dict) -> None:
        super().__init__()
        self.staking_validation = {"fundamental": STAKEABLE, "combined": combined}


def _publish(tmp_path, combined: dict):
    params = scoring_params(tmp_path)
    predictions = _score(serving=nodes_serving(), bundle=_Bundle(combined))
    report = nodes.publish_scored_signals(predictions, "racecast-win", params)
    url = params["signals_db_url"]
    return predictions, report, load_signals(url), load_bets(url)


def nodes_serving() -> dict:
    """The project's ``serving`` parameters (no staking_track: the default, combined)."""
    serving = load_parameters(None, ROOT)["serving"]
    assert "staking_track" not in serving and settings(**serving).staking_track == "combined"
    return serving


def test_signals_of_a_losing_track_are_published_with_stake_0_and_the_reason(feast, tmp_path):  # noqa: F811
    predictions, report, signals, bets = _publish(tmp_path, NOT_STAKEABLE)

    reason = f"combined track not stakeable: {NOT_STAKEABLE['reason']}"
    assert all(race["stake_reason"] == reason for race in predictions["races"])
    assert report["signals"]["inserted"] == len(signals) == 7  # every signal is published
    assert (signals["stake_units"] == 0).all() and (signals["kelly_fraction"] == 0).all()
    assert (signals["edge"].dropna() > 0).any()  # with the edges the model sees
    for text in signals["reasons_json"]:
        stored = json.loads(text)
        assert stored["staking_track"] == "combined" and stored["stake_reason"] == reason
    assert report["bets"]["placed"] == 0 and bets.empty


def test_signals_of_a_winning_track_are_staked_and_backed(feast, tmp_path):  # noqa: F811
    _, report, signals, bets = _publish(tmp_path, STAKEABLE)

    staked = signals[signals["stake_units"] > 0]
    assert len(staked) > 0 and report["bets"]["placed"] == len(bets) == len(staked)
    for text in staked["reasons_json"]:
        assert json.loads(text)["stake_reason"] is None
    unstaked = signals[signals["stake_units"] == 0]
    assert all(json.loads(t)["stake_reason"] for t in unstaked["reasons_json"])


@pytest.mark.parametrize("combined", [NOT_STAKEABLE, STAKEABLE])
def test_the_published_signal_is_the_service_answer(feast, combined):  # noqa: F811
    predictions = _score(serving=nodes_serving(), bundle=_Bundle(combined))
    frame = nodes.signals_frame(predictions)

    runners = {r["horse_id"]: r for race in predictions["races"] for r in race["runners"]}
    for row in frame.itertuples():
        assert row.stake_units == runners[row.horse_id]["stake_units"]
        assert row.reasons["stake_reason"] == runners[row.horse_id]["stake_reason"]


def test_a_kedro_run_with_a_bundle_whose_tracks_are_not_stakeable_stakes_nothing(project):  # noqa: F811
    """The whole scoring pipeline (Kedro's runner, real Feast store) on the tiny zoo's own
    bundle: its validation found no stakeable track, so every signal has stake 0 and the
    reason, and no bet is placed."""
    from tests.pipelines.scoring.test_pipeline import _day_rows, _run, _world
    from tests.serving.tiny_zoo import make_bundle

    bundle = make_bundle()
    assert bundle.staking_validation["combined"]["stakeable"] is False
    _, days = _world()
    history, day = days[:-2], days[-2]

    catalog = _run(project, bundle, history, [day])

    report = catalog.load("scoring_report")
    signals, bets = load_signals(DEFAULT_URL), load_bets(DEFAULT_URL)
    assert report["signals"]["inserted"] == len(signals) == len(_day_rows(day))
    assert (signals["stake_units"] == 0).all() and bets.empty
    assert report["bets"]["placed"] == 0
    reasons = {json.loads(t)["stake_reason"] for t in signals["reasons_json"]}
    assert len(reasons) == 1 and reasons.pop().startswith("combined track not stakeable: ")
    for race in catalog.load("scoring_predictions")["races"]:
        assert race["stakeable"] is False and race["staking_track"] == "combined"
