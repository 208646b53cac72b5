"""score_races: the per-runner answer built from predictions, racecard rows and features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.inference.scoring import (
    DEFAULT_STAKING_TRACK,
    ScoringConfig,
    feature_staleness_days,
    score_races,
)
from racecast.inference.settings import ServingSettings
from tests.serving.serving_fakes import NOT_STAKEABLE, STAKEABLE

OFF = pd.Timestamp("2025-02-06 06:30", tz="UTC")
#: A bundle's staking validation where both tracks returned money.
BOTH = {"fundamental": STAKEABLE, "combined": STAKEABLE}
FUNDAMENTAL = ScoringConfig(staking_track="fundamental")


def _inputs():
    keys = pd.DataFrame(
        {"race_id": ["A", "A", "A", "B", "B"], "horse_id": ["a1", "a2", "a3", "b1", "b2"]}
    )
    predictions = keys.assign(
        p_fundamental=[0.5, 0.25, 0.25, 0.9, 0.1],
        p_market=[0.4, 0.4, 0.2, np.nan, np.nan],
        p_combined=[0.45, 0.35, 0.2, np.nan, np.nan],
    )
    rows = keys.assign(
        off_time=[OFF] * 3 + [OFF + pd.Timedelta(hours=1)] * 2,
        course="ST",
        n_runners=[3, 3, 3, 2, 2],
        odds_final=[2.5, 2.5, 5.0, np.nan, 1.5],
    )
    features = keys.assign(
        off_time=rows["off_time"], days_since_last_run=[10.0, 200.0, np.nan, 5.0, 7.0]
    )
    explanations = {("A", "a1"): [{"feature": "rating", "value": 70.0, "contribution": 0.3}]}
    return predictions, rows, features, explanations


def test_runners_get_probability_rank_fair_odds_edge_and_quarter_kelly_stakes():
    predictions, rows, features, explanations = _inputs()
    before = [f.copy() for f in (predictions, rows, features)]

    races = score_races(predictions, rows, features, explanations, "m/1", FUNDAMENTAL, BOTH)

    for frame, copy in zip((predictions, rows, features), before, strict=True):
        pd.testing.assert_frame_equal(frame, copy)
    assert [r["race_id"] for r in races] == ["A", "B"]
    a = races[0]
    assert a["off_time"] == "2025-02-06T06:30:00+00:00" and a["course"] == "ST"
    assert a["model_version"] == "m/1" and a["n_runners"] == 3 and a["market"] is True
    assert [r["horse_id"] for r in a["runners"]] == ["a1", "a2", "a3"]
    assert [r["rank"] for r in a["runners"]] == [1, 2, 2]  # tie shares the rank
    a1 = a["runners"][0]
    assert a1["p_win"] == 0.5 and a1["fair_odds"] == 2.0
    assert a1["edge"] == pytest.approx(0.25)
    assert a1["kelly_fraction"] == pytest.approx(0.25 * 0.25 / 1.5)
    assert a1["stake_units"] == pytest.approx(100 * 0.25 * 0.25 / 1.5)
    assert a1["explanation"] == explanations[("A", "a1")]
    assert a["runners"][1]["explanation"] == []
    a2 = a["runners"][1]
    assert a2["edge"] == pytest.approx(-0.375) and a2["kelly_fraction"] == 0 and a2["stake_units"] == 0
    assert a2["stale"] is True and a["runners"][2]["feature_staleness_days"] is None


def test_partly_priced_race_has_no_market_track_but_prices_its_priced_runner():
    predictions, rows, features, explanations = _inputs()

    b = score_races(predictions, rows, features, explanations, "m/1", FUNDAMENTAL, BOTH)[1]

    assert b["market"] is False
    b1, b2 = b["runners"]
    assert b1["market_odds"] is None and b1["edge"] is None and b1["stake_units"] == 0
    assert b1["p_market"] is None and b1["p_win_combined"] is None
    assert b2["edge"] == pytest.approx(0.1 * 1.5 - 1)


def test_stake_is_capped_and_configurable():
    predictions, rows, features, _ = _inputs()
    config = ScoringConfig(
        kelly_fraction=1.0, bankroll_units=1000, max_stake_fraction=0.1, staking_track="fundamental"
    )

    a1 = score_races(predictions, rows, features, None, "m/1", config, BOTH)[0]["runners"][0]

    assert a1["kelly_fraction"] == pytest.approx(0.25 / 1.5)
    assert a1["stake_units"] == pytest.approx(100.0)  # 1000 * min(0.1667, 0.1)


def test_combined_track_stakes_on_the_blend_and_falls_back_without_market():
    predictions, rows, features, _ = _inputs()
    races = score_races(predictions, rows, features, None, "m/1", ScoringConfig(), BOTH)

    assert races[0]["staking_track"] == "combined" and races[0]["stakeable"] is True
    a1 = races[0]["runners"][0]
    assert a1["edge"] == pytest.approx(0.45 * 2.5 - 1)
    assert a1["stake_units"] == pytest.approx(100 * 0.25 * (0.45 * 2.5 - 1) / 1.5)
    assert a1["stake_reason"] is None
    assert races[1]["runners"][1]["edge"] == pytest.approx(0.1 * 1.5 - 1)


def test_the_combined_track_is_the_one_default():
    assert DEFAULT_STAKING_TRACK == "combined"
    assert ScoringConfig().staking_track == DEFAULT_STAKING_TRACK
    assert ServingSettings(bundle_uri="unused.pkl").staking_track == DEFAULT_STAKING_TRACK


@pytest.mark.parametrize("track", ["fundamental", "combined"])
def test_a_track_whose_validation_lost_money_stakes_nothing_and_says_why(track):
    predictions, rows, features, _ = _inputs()
    validation = {**BOTH, track: NOT_STAKEABLE}

    races = score_races(
        predictions, rows, features, None, "m/1", ScoringConfig(staking_track=track), validation
    )

    staked = score_races(
        predictions, rows, features, None, "m/1", ScoringConfig(staking_track=track), BOTH
    )
    assert any(r["stake_units"] > 0 for race in staked for r in race["runners"])
    for race in races:
        assert race["stakeable"] is False
        assert race["stake_reason"] == f"{track} track not stakeable: {NOT_STAKEABLE['reason']}"
        for runner in race["runners"]:
            assert runner["stake_units"] == 0 and runner["kelly_fraction"] == 0
            assert runner["stake_reason"] == race["stake_reason"]
    # the edge is still reported: the signal is published, only the stake is withheld
    assert races[0]["runners"][0]["edge"] > 0


def test_a_bundle_without_staking_validation_stakes_nothing():
    predictions, rows, features, _ = _inputs()

    for validation in (None, {}):
        races = score_races(predictions, rows, features, None, "m/1", None, validation)
        assert all(r["stake_units"] == 0 for race in races for r in race["runners"])
        assert races[0]["stakeable"] is False and "no staking validation" in races[0]["stake_reason"]


def test_runners_of_a_stakeable_track_say_why_they_get_no_stake():
    predictions, rows, features, _ = _inputs()

    a, b = score_races(predictions, rows, features, None, "m/1", FUNDAMENTAL, BOTH)

    assert a["stakeable"] is True and a["stake_reason"] is None
    reasons = {r["horse_id"]: r["stake_reason"] for race in (a, b) for r in race["runners"]}
    assert reasons == {"a1": None, "a2": "edge <= 0", "a3": None, "b1": "no market price", "b2": "edge <= 0"}


def test_staleness_from_last_run_timestamp_when_days_are_absent():
    features = pd.DataFrame(
        {
            "off_time": [OFF, OFF],
            "h_last_off_ts": [(OFF - pd.Timedelta(days=12)).timestamp(), np.nan],
        }
    )
    np.testing.assert_allclose(feature_staleness_days(features), [12.0, np.nan])
    assert feature_staleness_days(pd.DataFrame({"x": [1]})).isna().all()


def test_bad_probabilities_and_unknown_runners_are_rejected():
    predictions, rows, features, _ = _inputs()
    with pytest.raises(ValueError, match=r"runner \['A', 'a1'\]"):
        score_races(predictions.assign(p_fundamental=[0.0, 0.5, 0.5, 0.9, 0.1]), rows, features, None, "m")
    with pytest.raises(KeyError, match="not on the racecard"):
        score_races(predictions, rows.iloc[1:], features, None, "m")
    with pytest.raises(ValueError, match="odds"):
        score_races(predictions, rows.assign(odds_final=[0.9, 2, 2, 2, 2]), features, None, "m")
    with pytest.raises(ValueError, match="staking_track"):
        ScoringConfig(staking_track="market")


@pytest.mark.parametrize("track", ["fundamental", "combined"])
def test_typed_columns_score_as_their_text_and_object_forms(track):
    """The float64 odds / staleness columns (read as they are) give the answer of the
    same values as text, objects or a nullable column (converted by pd.to_numeric)."""
    predictions, rows, features, explanations = _inputs()
    # shuffled racecard rows and feature rows: every lookup goes through positions
    rows, features = rows.iloc[[4, 0, 3, 2, 1]], features.iloc[[2, 4, 1, 0, 3]]
    config = ScoringConfig(staking_track=track)
    typed = score_races(predictions, rows, features, explanations, "m/1", config, BOTH)
    assert typed[0]["runners"][0]["market_odds"] == 2.5
    assert typed[1]["runners"][1]["feature_staleness_days"] == 7.0
    text_odds = rows.assign(odds_final=[None if np.isnan(x) else str(x) for x in rows["odds_final"]])
    variants = [
        (text_odds, features.assign(days_since_last_run=features["days_since_last_run"].astype(object))),
        (rows.assign(odds_final=rows["odds_final"].astype("Float64")),
         features.assign(days_since_last_run=features["days_since_last_run"].astype("Float64"))),
        (rows.assign(off_time=rows["off_time"].astype(object)), features),
    ]
    for other_rows, other_features in variants:
        assert score_races(
            predictions, other_rows, other_features, explanations, "m/1", config, BOTH
        ) == typed


def test_runner_positions_in_the_same_or_another_order_and_duplicates():
    from racecast.inference.scoring import runner_positions

    frame = pd.DataFrame({"race_id": ["A", "A", "B"], "horse_id": ["a1", "a2", "b1"]})
    same = [("A", "a1"), ("A", "a2"), ("B", "b1")]
    assert runner_positions(frame, same, "x").tolist() == [0, 1, 2]
    shuffled = [("B", "b1"), ("A", "x9"), ("A", "a1")]
    assert runner_positions(frame, shuffled, "x").tolist() == [2, -1, 0]
    twice = pd.DataFrame({"race_id": ["A", "A"], "horse_id": ["a1", "a1"]})
    for keys in ([("A", "a1"), ("A", "a1")], [("A", "a1")]):  # same order, or not
        with pytest.raises(pd.errors.MergeError, match="not unique"):
            runner_positions(twice, keys, "x")


def test_ranks_and_staleness_do_not_depend_on_the_rows_order():
    predictions, rows, features, explanations = _inputs()
    expected = score_races(predictions, rows, features, explanations, "m", FUNDAMENTAL, BOTH)
    order = [4, 2, 0, 3, 1]  # predictions and features in another order than the racecard
    got = score_races(
        predictions.iloc[order],
        rows,
        features.iloc[order[::-1]],
        explanations,
        "m",
        FUNDAMENTAL,
        BOTH,
    )
    by_race = {race["race_id"]: race for race in expected}
    for race in got:
        assert race["runners"] == by_race[race["race_id"]]["runners"]
    ranks = {r["horse_id"]: r["rank"] for race in got for r in race["runners"]}
    assert ranks == {"a1": 1, "a2": 2, "a3": 2, "b1": 1, "b2": 2}
    stale = {r["horse_id"]: r["feature_staleness_days"] for race in got for r in race["runners"]}
    assert stale == {"a1": 10.0, "a2": 200.0, "a3": None, "b1": 5.0, "b2": 7.0}
