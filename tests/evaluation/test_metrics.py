"""Metrics against hand-computed values on tiny races, plus the Hong Kong reference figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from racecast.evaluation.metrics import (
    brier_score,
    evaluate,
    expected_calibration_error,
    kelly_simulation,
    log_loss,
    market_probability,
    ndcg_at_k,
    normalise_per_race,
    pseudo_r2,
    race_outcome_counts,
    rank_within_race,
    roi_flat_top1,
    single_winner_races,
    top_k_accuracy,
    uniform_log_loss,
)
from racecast.models.split import holdout_split

HK_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "hkracing"


@pytest.fixture
def races() -> pd.DataFrame:
    """Three single-winner races (2, 3, 4 runners) and one dead heat (D).

    Rows are listed B, A, C, D; off times order the races A (12:00), B (13:00),
    C (14:00), D (15:00). No probability sits on an ECE bin edge.
    """
    rows = [
        # race, off, p, won, position, odds, oracle
        ("B", "13:00", 0.45, 0, 3, 2.0, 0.3),
        ("B", "13:00", 0.33, 1, 1, 4.0, 0.5),
        ("B", "13:00", 0.22, 0, 2, 5.0, 0.2),
        ("A", "12:00", 0.65, 1, 1, 1.5, 0.7),
        ("A", "12:00", 0.35, 0, 2, 3.0, 0.3),
        ("C", "14:00", 0.42, 0, 2, 2.5, 0.3),
        ("C", "14:00", 0.28, 0, 3, 3.0, 0.3),
        ("C", "14:00", 0.18, 0, 4, 6.0, 0.2),
        ("C", "14:00", 0.12, 1, 1, 12.0, 0.2),
        ("D", "15:00", 0.55, 1, 1, 2.0, 0.5),
        ("D", "15:00", 0.45, 1, 1, 2.0, 0.5),
    ]
    frame = pd.DataFrame(
        rows, columns=["race_id", "off", "p", "won", "position", "odds_final", "p_true"]
    )
    frame["off_time"] = pd.to_datetime("2024-03-01 " + frame.pop("off")).dt.tz_localize("UTC")
    frame["position"] = frame["position"].astype("Int64")
    return frame


@pytest.fixture
def single(races: pd.DataFrame) -> pd.DataFrame:
    return races[races["race_id"] != "D"]


# ------------------------------------------------------------------ probabilities


def test_market_probability_normalises_inverse_odds(single: pd.DataFrame) -> None:
    p = market_probability(single)
    # A: 1/1.5 + 1/3 = 1 -> (2/3, 1/3).  B: 0.5 + 0.25 + 0.2 = 0.95 -> 0.5/0.95 ...
    # C: 0.4 + 1/3 + 1/6 + 1/12 = 59/60 -> 0.4 * 60/59, (1/3) * 60/59, (1/6) * 60/59, (1/12) * 60/59
    expected = [
        0.5 / 0.95,
        0.25 / 0.95,
        0.2 / 0.95,
        2 / 3,
        1 / 3,
        24 / 59,
        20 / 59,
        10 / 59,
        5 / 59,
    ]
    np.testing.assert_allclose(p.to_numpy(), expected, rtol=1e-12)
    assert p.index.equals(single.index)


def test_market_probability_missing_odds_blank_the_race(single: pd.DataFrame) -> None:
    frame = single.assign(
        odds_final=single["odds_final"].where(single.index != 6)
    )  # C's 2nd runner
    p = market_probability(frame)
    assert p[frame["race_id"] == "C"].isna().all()
    np.testing.assert_allclose(p[frame["race_id"] == "A"], [2 / 3, 1 / 3])
    assert (
        "odds_final" in single.columns and not single["odds_final"].isna().any()
    )  # input untouched


def test_market_probability_rejects_odds_below_one(single: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="odds_final"):
        market_probability(single.assign(odds_final=0.5))


def test_normalise_per_race() -> None:
    frame = pd.DataFrame({"race_id": [1, 1, 2, 2, 2], "s": [2.0, 6.0, 1.0, 1.0, 2.0]})
    # race 1: 2/8, 6/8; race 2: 1/4, 1/4, 2/4
    np.testing.assert_allclose(normalise_per_race(frame, "s"), [0.25, 0.75, 0.25, 0.25, 0.5])
    with pytest.raises(ValueError, match="'s'"):
        normalise_per_race(frame.assign(s=[-1.0, 1, 1, 1, 1]), "s")


# ---------------------------------------------------------------- bookkeeping


def test_race_outcome_counts_and_single_winner_filter(races: pd.DataFrame) -> None:
    assert race_outcome_counts(races) == {
        "n_races": 4,
        "n_single_winner": 3,
        "n_dead_heat": 1,
        "n_no_winner": 0,
    }
    kept = single_winner_races(races)
    assert sorted(kept["race_id"].unique()) == ["A", "B", "C"]
    assert kept.index.tolist() == list(range(9))


def test_rank_ties_follow_row_order() -> None:
    frame = pd.DataFrame({"race_id": [1, 1, 1, 2, 2], "p": [0.3, 0.4, 0.3, 0.5, 0.5]})
    assert rank_within_race(frame, "p").tolist() == [2, 1, 3, 1, 2]


def test_metrics_reject_dead_heats_and_unnormalised(races: pd.DataFrame, single) -> None:
    with pytest.raises(ValueError, match="exactly one winner"):
        log_loss(races, "p")
    with pytest.raises(ValueError, match="'p'.*sum to 1"):
        log_loss(single.assign(p=single["p"] * 1.1), "p")


# --------------------------------------------------------------------- metrics


def test_log_loss_and_pseudo_r2(single: pd.DataFrame) -> None:
    # winners: A 0.65, B 0.33, C 0.12; sum log = -0.4307829 - 1.1086626 - 2.1202635 = -3.6597091
    assert log_loss(single, "p") == pytest.approx(3.6597090768 / 3, rel=1e-9)
    # uniform: (ln 2 + ln 3 + ln 4) / 3 = ln 24 / 3 = 3.1780538 / 3
    assert uniform_log_loss(single) == pytest.approx(1.0593512768, rel=1e-9)
    # 1 - (-3.6597091) / (-3.1780538) = -0.1515567
    assert pseudo_r2(single, "p") == pytest.approx(-0.1515566671, rel=1e-9)


def test_top_k(single: pd.DataFrame) -> None:
    # winner ranks: A 1, B 2, C 4
    assert top_k_accuracy(single, "p", 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(single, "p", 3) == pytest.approx(2 / 3)
    assert top_k_accuracy(single, "p", 4) == pytest.approx(1.0)


def test_ndcg_known_ranking(single: pd.DataFrame) -> None:
    # gains max(0, 5 - position) in model order: A (4, 3), B (2, 4, 3), C (3, 2, 1, 4)
    # @1: A 4/4, B 2/4, C 3/4 -> 0.75
    assert ndcg_at_k(single, "p", 1) == pytest.approx(0.75)
    # @3: A 1; B (2 + 4/log2 3 + 3/2) / (4 + 3/log2 3 + 2/2) = 6.0237190 / 6.8927893 = 0.8739160;
    #     C (3 + 2/log2 3 + 1/2) / 6.8927893 = 4.7618595 / 6.8927893 = 0.6908465
    assert ndcg_at_k(single, "p", 3) == pytest.approx(
        (1 + 0.8739160282 + 0.6908465248) / 3, rel=1e-9
    )
    # @4: C (4.7618595 + 4/log2 5) / (6.8927893 + 1/log2 5) = 6.4845657 / 7.3234659 = 0.8854504
    assert ndcg_at_k(single, "p", 4) == pytest.approx(
        (1 + 0.8739160282 + 0.8854504001) / 3, rel=1e-9
    )


def test_ndcg_missing_position_has_zero_gain() -> None:
    frame = pd.DataFrame(
        {"race_id": [1, 1, 1], "p": [0.5, 0.3, 0.2], "position": pd.array([pd.NA, 1, 2], "Int64")}
    )
    # model order gains (0, 4, 3): DCG@2 = 0 + 4/log2 3; ideal = 4 + 3/log2 3
    assert ndcg_at_k(frame, "p", 2) == pytest.approx((4 / math.log2(3)) / (4 + 3 / math.log2(3)))


def test_brier(single: pd.DataFrame) -> None:
    # A: 0.35^2 + 0.35^2 = 0.245; B: 0.45^2 + 0.67^2 + 0.22^2 = 0.6998;
    # C: 0.42^2 + 0.28^2 + 0.18^2 + 0.88^2 = 1.0616 -> (0.245 + 0.6998 + 1.0616) / 3
    assert brier_score(single, "p") == pytest.approx(2.0064 / 3, rel=1e-12)


def test_ece(single: pd.DataFrame) -> None:
    # bin 1: p .18 .12, 1 win -> |0.30 - 1| = 0.70;  bin 2: .22 .28, 0 wins -> 0.50
    # bin 3: .35 .33, 1 win -> 0.32;  bin 4: .45 .42, 0 -> 0.87;  bin 6: .65, 1 -> 0.35
    # ECE = (0.70 + 0.50 + 0.32 + 0.87 + 0.35) / 9 runners
    assert expected_calibration_error(single, "p") == pytest.approx(2.74 / 9, rel=1e-12)


def test_roi_flat_top1(single: pd.DataFrame) -> None:
    # top picks: A 0.65 @1.5 wins -> 1.5; B 0.45 @2.0 loses; C 0.42 @2.5 loses -> 1.5/3 - 1
    assert roi_flat_top1(single, "p") == pytest.approx(-0.5)
    # C's top pick unpriced: no bet there -> 1.5 / 2 - 1
    unpriced = single.assign(odds_final=single["odds_final"].where(single.index != 5))
    assert roi_flat_top1(unpriced, "p") == pytest.approx(-0.25)


def test_kelly_bankroll_by_hand(single: pd.DataFrame) -> None:
    result = kelly_simulation(single, "p")
    # A (12:00): p*o = .975, 1.05 -> bet runner 2: f = .25 * .05 / 2 = .00625, loses
    #   bankroll 1 * (1 - .00625) = .99375
    # B (13:00): p*o = .9, 1.32, 1.1 -> f = .25*.32/3 = .0266667 (wins @4), .25*.1/4 = .00625
    #   growth 1 - .0329167 + .0266667*4 = 1.07375 -> 1.0670391
    # C (14:00): p*o = 1.05, .84, 1.08, 1.44 -> f = .25*.05/1.5 = .0083333, .25*.08/5 = .004,
    #   .25*.44/11 = .01 (wins @12): growth 1 - .0223333 + .12 = 1.0976667 -> 1.1712532
    assert result.bankroll.index.tolist() == ["A", "B", "C"]
    np.testing.assert_allclose(
        result.bankroll,
        [0.99375, 0.99375 * 1.07375, 0.99375 * 1.07375 * (1.12 - 0.0223333333333333)],
        rtol=1e-9,
    )
    assert result.final_bankroll == pytest.approx(1.1712532, rel=1e-6)
    assert result.n_bets == 6
    assert result.max_drawdown == pytest.approx(0.00625)  # 1 -> .99375, then new highs
    # per-bet profit / start bankroll: -.00625, .08, -.00625, -.0083333, -.004, .11
    # mean .0275278, sd (ddof 1) .0531355
    assert result.sharpe == pytest.approx(0.0275277778 / 0.0531354837, rel=1e-8)


def test_kelly_first_two_races(single: pd.DataFrame) -> None:
    two = single[single["race_id"].isin(["A", "B"])]
    result = kelly_simulation(two, "p")
    # .99375 after A, then * 1.07375 = 1.06703906 after B
    np.testing.assert_allclose(result.bankroll, [0.99375, 1.0670390625], rtol=1e-12)


# ---------------------------------------------------------------- entry point


def test_evaluate_excludes_dead_heats_but_counts_them(races: pd.DataFrame, single) -> None:
    frame = races.assign(p_market=market_probability(races))
    metrics = evaluate(frame, "p", market_col="p_market", oracle_col="p_true", combined=True)
    assert (metrics["n_races"], metrics["n_single_winner"], metrics["n_dead_heat"]) == (4, 3, 1)
    # every metric equals its value on the single-winner races A-C
    assert metrics["log_loss"] == pytest.approx(3.6597090768 / 3, rel=1e-9)
    assert metrics["brier"] == pytest.approx(2.0064 / 3, rel=1e-12)
    assert metrics["ece"] == pytest.approx(2.74 / 9, rel=1e-12)
    assert (metrics["top1"], metrics["top3"]) == pytest.approx((1 / 3, 2 / 3))
    assert metrics["ndcg_at_1"] == pytest.approx(0.75)
    assert metrics["roi_flat_top1"] == pytest.approx(-0.5)
    assert metrics["kelly_n_bets"] == 6
    # market winners: A 2/3, B 5/19, C 5/59: sum log = -4.2085657 -> R2 1 - 4.2085657/3.1780538
    assert metrics["market_pseudo_r2"] == pytest.approx(-0.3242587857, rel=1e-9)
    assert metrics["delta_r2_vs_market"] == pytest.approx(-0.1515566671 + 0.3242587857, rel=1e-9)
    # LR: 2 * (-3.6597091 + 4.2085657) = 1.0977133; chi2(2) sf = exp(-1.0977133 / 2)
    assert metrics["lr_test_p"] == pytest.approx(0.5776098550, rel=1e-9)
    # oracle winners .7, .5, .2: LL = (0.3566749 + 0.6931472 + 1.6094379) / 3 = 0.8864200
    assert metrics["oracle_log_loss"] == pytest.approx(0.8864200123, rel=1e-9)
    assert metrics["gap_to_oracle"] == pytest.approx(1.2199030256 / 0.8864200123 - 1, rel=1e-9)
    # (1.0593513 - 1.2199030) / (1.0593513 - 0.8864200): worse than uniform -> negative
    assert metrics["signal_recovered"] == pytest.approx(-0.9284136637, rel=1e-9)


def test_evaluate_keys_without_market_or_oracle(single: pd.DataFrame) -> None:
    metrics = evaluate(single, "p")
    assert "delta_r2_vs_market" not in metrics and "oracle_log_loss" not in metrics
    assert "lr_test_p" not in metrics
    with pytest.raises(ValueError, match="market_col"):
        evaluate(single, "p", combined=True)


def test_evaluate_does_not_mutate(races: pd.DataFrame) -> None:
    before = races.copy()
    evaluate(races, "p", oracle_col="p_true")
    pd.testing.assert_frame_equal(races, before)


# ------------------------------------------------------------ Hong Kong reference


def _hk_frame() -> pd.DataFrame:
    """Runner frame straight from the CSVs: off_time = races.date + race_no order."""
    runs = pd.read_csv(HK_DIR / "runs.csv", usecols=["race_id", "horse_no", "result", "win_odds"])
    meta = pd.read_csv(HK_DIR / "races.csv", usecols=["race_id", "date", "race_no"])
    frame = runs.merge(meta, on="race_id", how="left", validate="many_to_one")
    frame["off_time"] = pd.to_datetime(frame["date"]).dt.tz_localize("UTC") + pd.to_timedelta(
        frame["race_no"] * 30, unit="min"
    )
    return frame.assign(
        won=(frame["result"] == 1).astype(int),
        position=frame["result"].astype("Int64"),
        odds_final=frame["win_odds"].astype(float),
    )


@pytest.mark.hkjc
@pytest.mark.skipif(
    not (HK_DIR / "runs.csv").exists(), reason=f"Hong Kong CSVs not found in {HK_DIR}"
)
def test_hong_kong_market_reference_figures() -> None:
    frame = _hk_frame()
    frame["p_market"] = market_probability(frame)
    split = holdout_split(frame)
    assert split.holdout_start == pd.Timestamp("2003-12-28")
    assert (len(split.holdout_race_ids), len(split.train_race_ids)) == (1278, 5070)
    # runs.csv lists each race by horse_no, so joint favourites go to the lower horse_no
    assert frame.groupby("race_id")["horse_no"].diff().dropna().gt(0).all()
    metrics = evaluate(frame[split.holdout_mask(frame)], "p_market")
    assert (metrics["n_races"], metrics["n_single_winner"], metrics["n_dead_heat"]) == (
        1278,
        1276,
        2,
    )
    assert round(metrics["pseudo_r2"], 4) == 0.1881
    assert round(metrics["log_loss"], 4) == 2.0466
    assert round(metrics["top1"], 4) == 0.3103
    assert round(metrics["top3"], 4) == 0.6144
    assert round(metrics["roi_flat_top1"], 4) == -0.1231
