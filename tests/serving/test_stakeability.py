"""Staking that cannot ruin a user by default: a track is staked only if its staking rule
returned money on the validation races (never the holdout), on every path that answers.

* :func:`racecast.evaluation.stakeability.staking_validation` on hand-made races;
* the model_zoo blend records the figures on training races only and the bundle keeps them;
* the HTTP service answers stake 0 with the reason for a bundle whose validation lost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from racecast.evaluation.stakeability import (
    MIN_BETS,
    TRACKS,
    not_assessed,
    stake_decision,
    staking_validation,
)
from racecast.inference import service as service_module
from racecast.inference.bundle import build_bundle
from racecast.serving.app import create_app
from racecast.serving.auth import API_KEYS_ENV
from tests.serving.serving_fakes import (
    API_KEY,
    NOT_STAKEABLE,
    STAKEABLE,
    FakeBundle,
    FakeReader,
    FakeStore,
    fake_online_features,
    racecard_text,
    settings,
)

START = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def _races(n_races: int, p_first: float, odds_first: float, first_wins_every: int) -> pd.DataFrame:
    """Two-runner races: runner 1 has ``p_first`` at ``odds_first`` (an edge when
    ``p_first * odds_first > 1``) and wins every ``first_wins_every``-th race; runner 2
    (``1 - p_first`` at odds 1.01) never has an edge."""
    rows = []
    for i in range(n_races):
        won_first = int(i % first_wins_every == 0)
        off = START + pd.Timedelta(hours=i)
        rows.append((f"R{i}", "first", off, p_first, odds_first, won_first))
        rows.append((f"R{i}", "second", off, 1 - p_first, 1.01, 1 - won_first))
    return pd.DataFrame(rows, columns=["race_id", "horse_id", "off_time", "p", "odds_final", "won"])


def test_a_track_whose_bets_won_money_is_stakeable():
    # 40 bets at odds 5 with p 0.25 (edge 0.25), a winner every 4th race: returns 10 * 5 = 50
    frame = _races(40, 0.25, 5.0, 4)

    figures = staking_validation(frame, "p")

    assert figures["n_bets"] == 40 and figures["n_races"] == 40
    assert figures["roi_flat"] == pytest.approx(50 / 40 - 1)
    assert figures["roi"] == pytest.approx(50 / 40 - 1)  # equal Kelly weights
    assert figures["stakeable"] is True and figures["reason"] is None
    assert figures["period_start"] == START.isoformat()
    assert figures["period_end"] == (START + pd.Timedelta(hours=39)).isoformat()


def test_a_track_whose_bets_lost_money_is_not_stakeable_and_says_why():
    # the same bets winning every 6th race: 7 winners * 5 = 35 back on 40 staked
    frame = _races(40, 0.25, 5.0, 6)

    figures = staking_validation(frame, "p")

    assert figures["roi"] == pytest.approx(35 / 40 - 1) and figures["stakeable"] is False
    assert figures["reason"].startswith(
        "validation ROI -0.1250 <= 0 on 40 bets (40 validation races"
    )
    assert "after the take" in figures["reason"]


def test_roi_weights_bets_by_their_kelly_fraction():
    # a winning bet with a big edge and a losing one with a small edge: flat ROI 0, Kelly ROI > 0
    frame = pd.DataFrame(
        {
            "race_id": ["A", "A", "B", "B"],
            "horse_id": ["a", "x", "b", "y"],
            "off_time": [START] * 4,
            "p": [0.5, 0.5, 0.21, 0.79],
            "odds_final": [3.0, 1.5, 5.0, 1.1],
            "won": [1, 0, 0, 1],
        }
    )
    figures = staking_validation(frame, "p")

    w_a, w_b = (0.5 * 3 - 1) / 2, (0.21 * 5 - 1) / 4
    assert figures["n_bets"] == 2
    assert figures["roi_flat"] == pytest.approx(((3 - 1) + (0 - 1)) / 2)
    assert figures["roi"] == pytest.approx((w_a * 2 - w_b) / (w_a + w_b))
    assert figures["stakeable"] is False and "only 2 bets" in figures["reason"]


def test_too_few_bets_unpriced_runners_and_dead_heats_are_no_evidence():
    few = staking_validation(_races(MIN_BETS - 1, 0.25, 5.0, 1), "p")
    assert few["n_bets"] == MIN_BETS - 1 and few["roi"] > 0 and few["stakeable"] is False
    assert few["reason"].startswith(f"only {MIN_BETS - 1} bets")

    unpriced = _races(40, 0.25, 5.0, 1).assign(odds_final=np.nan)
    none = staking_validation(unpriced, "p")
    assert none["n_bets"] == 0 and none["roi"] is None and none["stakeable"] is False

    dead_heat = _races(40, 0.25, 5.0, 1).assign(won=1)  # two winners in every race
    assert staking_validation(dead_heat, "p")["n_races"] == 0

    with pytest.raises(ValueError, match="column 'p' has 1 values outside"):
        staking_validation(_races(3, 0.25, 5.0, 1).assign(p=[0.0, 1, 0.5, 0.5, 0.5, 0.5]), "p")
    with pytest.raises(KeyError, match="odds_final"):
        staking_validation(_races(3, 0.25, 5.0, 1).drop(columns="odds_final"), "p")


def test_stake_decision_never_stakes_without_figures():
    assert stake_decision({"combined": STAKEABLE}, "combined") == (True, None)
    ok, reason = stake_decision({"combined": NOT_STAKEABLE}, "combined")
    assert not ok and reason == f"combined track not stakeable: {NOT_STAKEABLE['reason']}"
    assert stake_decision({"combined": STAKEABLE}, "fundamental")[0] is False
    assert stake_decision(None, "combined")[0] is False
    assert not_assessed("no validation races")["stakeable"] is False


# ---------------------------------------------------------------------------- the bundle
def test_the_blend_records_both_tracks_on_training_races_and_the_bundle_keeps_them():
    from tests.serving.tiny_zoo import fitted_zoo, make_bundle

    zoo = fitted_zoo()
    bundle = make_bundle()

    assert set(bundle.staking_validation) == set(TRACKS)
    assert bundle.staking_validation == zoo["blend"].validation_["staking"]
    holdout_start = pd.Timestamp(zoo["split_info"]["holdout_start"], tz="UTC")
    test_races = zoo["blend"].decision_["tests"]["benter"]["n_races"]
    assessed = {
        track: figures
        for track, figures in bundle.staking_validation.items()
        if figures.get("period_end") is not None
    }
    assert "fundamental" in assessed
    for figures in assessed.values():
        # the rolling-origin test races of the training period, never the holdout
        assert figures["n_races"] == test_races > 0
        assert pd.Timestamp(figures["period_end"]) < holdout_start
    for figures in bundle.staking_validation.values():
        assert isinstance(figures["stakeable"], bool)
        assert (figures["reason"] is None) == figures["stakeable"]
    if zoo["blend"].choice_ == "market_corrected":
        assert "no edge over the market" in bundle.staking_validation["combined"]["reason"]


def test_a_bundle_can_be_given_its_figures_and_defaults_to_the_blends():
    from tests.serving.tiny_zoo import fitted_zoo

    zoo = fitted_zoo()
    given = {"combined": NOT_STAKEABLE}
    bundle = build_bundle(
        zoo["models"],
        zoo["stacker"],
        zoo["blend"],
        feature_service="combined_v1",
        trained_until=zoo["train"]["off_time"].max(),
        staking_validation=given,
    )
    assert bundle.staking_validation == given


# ---------------------------------------------------------------------------- HTTP
class _LosingBundle(FakeBundle):
    staking_validation = {"fundamental": STAKEABLE, "combined": NOT_STAKEABLE}


class _OldBundle(FakeBundle):
    """A bundle pickled before staking validation was recorded (no attribute)."""

    def __getattribute__(self, name):
        if name == "staking_validation":
            raise AttributeError(name)
        return super().__getattribute__(name)


def _answer(bundle, monkeypatch, **overrides) -> dict:
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    monkeypatch.setattr(service_module, "online_features", fake_online_features)
    monkeypatch.setattr(service_module, "OnlineReader", FakeReader)
    app = create_app(settings(**overrides), bundle=bundle, feature_store=FakeStore())
    with TestClient(app) as client:
        response = client.post(
            "/api/v1/predict",
            content=racecard_text(),
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("bundle", [_LosingBundle(), _OldBundle()], ids=["losing", "old"])
def test_the_service_answers_stake_0_with_the_reason_for_a_track_that_is_not_stakeable(
    bundle, monkeypatch
):
    body = _answer(bundle, monkeypatch)

    for race in body["races"]:
        assert race["staking_track"] == "combined" and race["stakeable"] is False
        assert race["stake_reason"]
        for runner in race["runners"]:
            assert runner["stake_units"] == 0 and runner["kelly_fraction"] == 0
            assert runner["stake_reason"] == race["stake_reason"]
    priced = body["races"][0]
    assert any(r["edge"] > 0 for r in priced["runners"])  # an edge, withheld
    if isinstance(bundle, _LosingBundle):
        assert priced["stake_reason"] == f"combined track not stakeable: {NOT_STAKEABLE['reason']}"


def test_the_service_stakes_a_track_whose_validation_won(monkeypatch):
    body = _answer(_LosingBundle(), monkeypatch, staking_track="fundamental")

    priced = body["races"][0]
    assert priced["stakeable"] is True and priced["stake_reason"] is None
    staked = [r for r in priced["runners"] if r["stake_units"] > 0]
    assert staked and all(r["stake_reason"] is None for r in staked)
