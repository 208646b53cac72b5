"""Drift tests, performance window and action rules of racecast.monitoring."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from racecast.evaluation.metrics import log_loss, market_probability, pseudo_r2
from racecast.monitoring import actions, drift, performance
from racecast.monitoring.plots import drift_test_table, monitoring_figure

NUMERIC = ["rating", "weight_carried_kg", "h_ewm_rel_pos", "j_rate_365d", "age", "n_runners"]
CATEGORICAL = ["sex_female", "going_code"]
FEATURES = NUMERIC + CATEGORICAL
RACE_LEVEL = ["n_runners", "going_code"]


def make_runners(n_races: int = 400, seed: int = 0, first_race: int = 0) -> pd.DataFrame:
    """Runner rows of independent random races: features, result, market and a model.

    Runner strength drives the true win probability; the market sees it with a little
    noise (and a 15% overround), the model with more (``p_model``). ``h_ewm_rel_pos``
    is missing for 10% of runners (debutants).
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(6, 13, n_races)
    race_idx = np.repeat(np.arange(n_races), sizes)
    n = len(race_idx)
    start = pd.Timestamp("2024-01-01 12:00", tz="UTC")
    race_no = first_race + np.arange(n_races)
    off = start + pd.to_timedelta(race_no // 8, unit="D") + pd.to_timedelta(race_no % 8 * 30, "min")
    going = rng.choice([0.0, 1.0, 2.0], n_races, p=[0.3, 0.5, 0.2])
    frame = pd.DataFrame(
        {
            "race_id": [f"R{first_race + i:05d}" for i in race_idx],
            "horse_id": [f"H{j:06d}" for j in range(n)],
            "off_time": off[race_idx],
            "rating": rng.normal(70.0, 15.0, n),
            "weight_carried_kg": rng.normal(56.0, 2.0, n),
            "h_ewm_rel_pos": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(0, 1, n)),
            "j_rate_365d": rng.beta(2.0, 18.0, n),
            "age": rng.integers(2, 10, n).astype(float),
            "n_runners": sizes[race_idx].astype(float),
            "sex_female": (rng.random(n) < 0.45).astype(float),
            "going_code": going[race_idx],
        }
    )
    strength = rng.normal(0.0, 1.0, n)
    races = frame["race_id"]

    def softmax(score: np.ndarray) -> np.ndarray:
        e = pd.Series(np.exp(score))
        return (e / e.groupby(races.to_numpy()).transform("sum")).to_numpy()

    p_true = softmax(strength)
    cum = pd.Series(p_true).groupby(race_idx).cumsum().to_numpy()
    u = rng.random(n_races)[race_idx]
    first = pd.Series(cum >= u).groupby(race_idx).transform("idxmax").to_numpy()
    frame["won"] = (np.arange(n) == first).astype("int64")
    p_mkt = softmax(strength + rng.normal(0, 0.2, n))
    frame["odds_final"] = np.maximum(1.01, 1.0 / (p_mkt * 1.15))
    frame["p_model"] = softmax(0.8 * strength + rng.normal(0, 0.5, n))
    return frame


@functools.lru_cache(maxsize=1)
def _base() -> pd.DataFrame:
    return make_runners(n_races=600, seed=0)


def split_same_distribution(seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random split of one frame by races: two samples of the same distribution."""
    frame = _base()
    races = frame["race_id"].unique()
    picked = np.random.default_rng(seed).choice(races, size=len(races) // 3, replace=False)
    current = frame["race_id"].isin(picked)
    return frame[~current].reset_index(drop=True), frame[current].reset_index(drop=True)


def run_feature_drift(reference, current, **kwargs):
    return drift.feature_drift(
        reference,
        current,
        FEATURES,
        CATEGORICAL,
        race_level=RACE_LEVEL,
        seed=0,
        **kwargs,
    )


def holding_performance() -> dict:
    ref, cur = split_same_distribution()
    ref_perf = performance.performance_window(ref, 100, include_rolling=False)
    cur_perf = performance.performance_window(cur, 100)
    return {
        "reference": ref_perf,
        "window": cur_perf,
        "change": performance.compare_performance(ref_perf, cur_perf),
    }


# ------------------------------------------------------------------ feature drift


def test_same_distribution_window_is_quiet():
    reference, current = split_same_distribution()
    result = run_feature_drift(reference, current)
    assert result["is_drift"] is False
    assert result["drifted"] == []
    assert all(0.0 <= e["p_value"] <= 1.0 for e in result["features"].values())
    assert min(e["p_value"] for e in result["features"].values()) > result["threshold"]
    action = actions.decide_action({"features": result}, holding_performance(), {})
    assert action == "none"


def test_injected_numeric_shift_is_flagged_with_the_smallest_p_values():
    reference, current = split_same_distribution()
    shifted = current.copy()
    for col in ("rating", "j_rate_365d"):
        shifted[col] = shifted[col] + reference[col].std()
    result = run_feature_drift(reference, shifted)
    assert result["is_drift"] is True
    assert set(result["drifted"]) == {"rating", "j_rate_365d"}
    p = pd.Series({f: e["p_value"] for f, e in result["features"].items()}).sort_values()
    assert set(p.index[:2]) == {"rating", "j_rate_365d"}
    assert p.iloc[:2].max() < 1e-10 < p.iloc[2]
    assert actions.decide_action({"features": result}, holding_performance(), {}) == "alert"


def test_categorical_mix_change_is_flagged():
    reference, current = split_same_distribution()
    changed = current.copy()
    race_going = changed.groupby("race_id")["going_code"].transform("first")
    flip = changed["race_id"].isin(changed["race_id"].unique()[::2])
    changed["going_code"] = np.where(flip, 2.0, race_going)  # half the races now soft
    result = run_feature_drift(reference, changed)
    assert result["drifted"] == ["going_code"]
    entry = result["features"]["going_code"]
    assert entry["test"] == "chi2" and entry["level"] == "race"


def test_bonferroni_threshold_is_p_val_over_the_number_of_tests():
    reference, current = split_same_distribution()
    complete = [f for f in FEATURES if f != "h_ewm_rel_pos"]  # the only feature with NaN
    result = drift.feature_drift(reference, current, complete, CATEGORICAL, p_val=0.05)
    assert result["n_tests"] == len(complete)
    assert result["threshold"] == pytest.approx(0.05 / len(complete))
    # a numeric feature with missing values adds its missing-rate test
    result = drift.feature_drift(reference, current, FEATURES, CATEGORICAL, p_val=0.01)
    assert result["n_tests"] == len(FEATURES) + 1
    assert result["threshold"] == pytest.approx(0.01 / (len(FEATURES) + 1))


def test_p_value_below_p_val_but_above_the_corrected_threshold_is_not_drift():
    reference, current = split_same_distribution()
    base = run_feature_drift(reference, current)
    p_min = min(e["p_value"] for e in base["features"].values())
    p_val = p_min * np.sqrt(base["n_tests"])  # p_val / n_tests < p_min < p_val
    assert p_val < 1
    result = run_feature_drift(reference, current, p_val=p_val)
    assert result["is_drift"] is False
    assert any(e["p_value"] < p_val for e in result["features"].values())
    flagged = run_feature_drift(reference, current, p_val=min(0.99, p_min * base["n_tests"] * 1.01))
    assert flagged["is_drift"] is True and len(flagged["drifted"]) >= 1


def test_missing_rate_change_is_its_own_test():
    reference, current = split_same_distribution()
    more_missing = current.copy()
    rng = np.random.default_rng(5)
    more_missing.loc[rng.random(len(current)) < 0.4, "h_ewm_rel_pos"] = np.nan
    result = run_feature_drift(reference, more_missing)
    entry = result["features"]["h_ewm_rel_pos"]
    assert entry["missing_rate_reference"] == pytest.approx(0.1, abs=0.02)
    assert entry["missing_rate_current"] == pytest.approx(0.46, abs=0.04)
    assert entry["missing_p_value"] < 1e-10
    assert entry["is_drift"] and "h_ewm_rel_pos" in result["drifted"]
    assert result["features"]["rating"]["missing_p_value"] is None  # never missing
    json.dumps(result, allow_nan=False)


def test_nan_in_a_categorical_feature_is_a_category():
    reference, current = split_same_distribution()
    with_nan = current.copy()
    with_nan.loc[with_nan.index[::3], "sex_female"] = np.nan
    result = run_feature_drift(reference, with_nan)
    entry = result["features"]["sex_female"]
    assert entry["missing_p_value"] is None
    assert entry["p_value"] < 1e-10  # a third of the rows in a new category


def test_features_without_reference_values_are_skipped_and_reported():
    reference, current = split_same_distribution()
    # rating and age as an optional racecard field the feed never gives; sex_female
    # (categorical) and going_code (race level) likewise
    blank = {"rating": np.nan, "age": np.nan, "sex_female": np.nan, "going_code": np.nan}
    result = run_feature_drift(reference.assign(**blank), current.assign(**blank))
    skipped = ["rating", "age", "sex_female", "going_code"]
    assert set(result["skipped"]) == set(skipped)
    assert set(result["skipped"].values()) == {drift.NO_REFERENCE_VALUE}
    assert list(result["features"]) == [f for f in FEATURES if f not in skipped]
    tested = run_feature_drift(reference, current)
    assert tested["skipped"] == {}
    # the other features are tested exactly as before; Bonferroni counts their tests only
    for name, entry in result["features"].items():
        assert {**entry, "is_drift": None} == {**tested["features"][name], "is_drift": None}
    assert result["n_tests"] == tested["n_tests"] - len(skipped)
    assert result["threshold"] == pytest.approx(0.05 / result["n_tests"])
    json.dumps(result, allow_nan=False)


def test_a_feature_missing_only_in_the_window_is_still_tested():
    reference, current = split_same_distribution()
    result = run_feature_drift(reference, current.assign(rating=np.nan))
    assert result["skipped"] == {}
    assert result["features"]["rating"]["missing_p_value"] < 1e-10
    assert "rating" in result["drifted"]


def test_nothing_to_test_is_no_drift():
    reference, current = split_same_distribution()
    result = drift.feature_drift(
        reference.assign(rating=np.nan), current, ["rating"], seed=0, race_level=[]
    )
    assert result["features"] == {} and result["n_tests"] == 0
    assert result["skipped"] == {"rating": drift.NO_REFERENCE_VALUE}
    assert result["is_drift"] is False and result["drifted"] == []
    assert result["threshold"] == 0.05


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"features": []}, ValueError, "no features"),
        ({"categorical": ["draw"]}, ValueError, r"monitoring.categorical: \['draw'\]"),
        ({"features": ["rating", "not_a_column"]}, KeyError, "not_a_column"),
        ({"p_val": 1.5}, ValueError, "p_val"),
    ],
)
def test_feature_drift_errors_name_the_problem(kwargs, error, match):
    reference, current = split_same_distribution()
    args = {"features": ["rating"], "categorical": [], **kwargs}
    with pytest.raises(error, match=match):
        drift.feature_drift(reference, current, **args)


def test_race_level_features_are_tested_on_one_row_per_race():
    reference, current = split_same_distribution()
    result = drift.feature_drift(
        reference, current, ["n_runners"], [], race_level=["n_runners"], max_reference=None
    )
    per_race = [f.groupby("race_id")["n_runners"].first() for f in (reference, current)]
    expected = ks_2samp(per_race[0], per_race[1], mode="asymp")
    entry = result["features"]["n_runners"]
    assert entry["level"] == "race"
    assert entry["p_value"] == pytest.approx(expected.pvalue, rel=1e-5)
    assert entry["distance"] == pytest.approx(expected.statistic, rel=1e-5)


def test_reference_is_sampled_by_whole_races_within_the_budget():
    frame = _base()
    sample = drift.sample_races(frame, 1000, seed=3)
    assert len(sample) <= 1000
    sizes = frame.groupby("race_id").size()
    assert (sample.groupby("race_id").size() == sizes[sample["race_id"].unique()]).all()
    again = drift.sample_races(frame, 1000, seed=3)
    pd.testing.assert_frame_equal(sample, again)
    assert drift.sample_races(frame, None, seed=3) is frame
    result = drift.feature_drift(frame, frame.iloc[:200], ["rating"], max_reference=1000, seed=3)
    assert result["n_reference"] == len(sample)


# --------------------------------------------------------------- prediction drift


def test_prediction_drift_quiet_on_same_distribution_and_flags_sharper_model():
    reference, current = split_same_distribution()
    same = drift.prediction_drift(reference, current, p_col="p_model")
    assert same["is_drift"] is False
    assert same["n_current"] == len(current)
    sharper = current.copy()
    sharper["p_model"] = sharper["p_model"] ** 2
    sharper["p_model"] /= sharper.groupby("race_id")["p_model"].transform("sum")
    result = drift.prediction_drift(reference, sharper, p_col="p_model")
    assert result["is_drift"] is True
    assert result["p_value"] < 1e-6
    assert result["current_median"] < result["reference_median"]


def test_prediction_drift_ignores_field_size_alone():
    """Uniform predictions in bigger fields: raw p moves, log(p * N) does not."""
    reference, current = split_same_distribution()
    ref = reference.assign(p=1.0 / reference["n_runners"])
    big = make_runners(150, seed=9)
    big = big[big["n_runners"] >= 10]
    cur = big.assign(p=1.0 / big["n_runners"])
    assert drift.prediction_drift(ref, cur)["is_drift"] is False
    assert ks_2samp(ref["p"], cur["p"]).pvalue < 1e-6


# -------------------------------------------------------------------- performance


def test_performance_window_matches_the_protocol_metrics():
    frame = _base()
    frame = frame.assign(odds_final=frame["odds_final"].mask(frame["race_id"] == "R00003"))
    result = performance.performance_window(frame, window_races=50)
    scored = frame[frame["race_id"] != "R00003"].copy()
    scored["p_market"] = market_probability(scored)
    assert result["n_races"] == 599 and result["n_excluded_races"] == 1
    assert result["log_loss"] == pytest.approx(log_loss(scored, "p_model"))
    assert result["pseudo_r2"] == pytest.approx(pseudo_r2(scored, "p_model"))
    assert result["market_pseudo_r2"] == pytest.approx(pseudo_r2(scored, "p_market"))
    assert result["delta_r2_vs_market"] == pytest.approx(
        result["pseudo_r2"] - result["market_pseudo_r2"]
    )
    assert len(result["rolling"]["log_loss"]) == 599 - 50 + 1
    winners = scored[scored["won"] == 1].sort_values(["off_time", "race_id"])
    last50 = -np.log(winners["p_model"].to_numpy()[-50:]).mean()
    assert result["rolling_log_loss_last"] == pytest.approx(last50)
    json.dumps(result, allow_nan=False)


def test_performance_window_without_scorable_races_reports_nothing():
    frame = _base().assign(odds_final=np.nan)
    result = performance.performance_window(frame, 100)
    assert result["n_races"] == 0 and result["log_loss"] is None
    assert result["n_excluded_races"] == 600


def degraded_performance() -> dict:
    """The window's model probabilities shuffled within each race."""
    reference, current = split_same_distribution()
    rng = np.random.default_rng(4)
    shuffled = current.copy()
    shuffled["p_model"] = shuffled.groupby("race_id")["p_model"].transform(
        lambda s: rng.permutation(s.to_numpy())
    )
    ref_perf = performance.performance_window(reference, 100, include_rolling=False)
    cur_perf = performance.performance_window(shuffled, 100)
    return {
        "reference": ref_perf,
        "window": cur_perf,
        "change": performance.compare_performance(ref_perf, cur_perf),
    }


def test_degraded_model_triggers_retrain():
    performance = degraded_performance()
    change = performance["change"]
    assert change["log_loss_increase"] > 0.2
    assert change["pseudo_r2_drop"] > 0.08
    assert change["log_loss_increase_z"] > 3
    reference, current = split_same_distribution()
    quiet = run_feature_drift(reference, current)
    action, reasons = actions.action_reasons({"features": quiet}, performance, {})
    assert action == "retrain"
    assert any("log loss up" in r for r in reasons)


def test_action_rules_follow_their_parameters():
    performance = degraded_performance()
    no_drift = {"features": {"is_drift": False}, "predictions": {"is_drift": False}}
    off = {"max_log_loss_increase": None, "max_pseudo_r2_drop": None}
    assert actions.decide_action(no_drift, performance, off) == "none"
    assert actions.decide_action(no_drift, performance, {"min_races": 10_000}) == "none"
    pred = {"features": {"is_drift": False}, "predictions": {"is_drift": True, "p_value": 1e-5}}
    assert actions.decide_action(pred, performance, off) == "alert"
    assert actions.decide_action(pred, performance, {**off, "alert_on_prediction_drift": False}) == (
        "none"
    )
    with pytest.raises(ValueError, match=r"monitoring.action.\['max_loss'\]"):
        actions.decide_action(no_drift, performance, {"max_loss": 1.0})
    assert actions.decide_action({}, holding_performance(), None) == "none"


# -------------------------------------------------------------------------- plots


def test_monitoring_figure_has_one_bar_per_test():
    reference, current = split_same_distribution()
    result = run_feature_drift(reference, current)
    table = drift_test_table(result)
    assert len(table) == result["n_tests"]
    assert table["is_drift"].sum() == 0
    ref_roll = performance.rolling_log_loss(performance.scored_races(reference)[0], 50)
    cur_roll = performance.rolling_log_loss(performance.scored_races(current)[0], 50)
    figure = monitoring_figure(result, ref_roll, cur_roll, 2.0, 2.1)
    bars, lines = figure.axes
    assert len(bars.patches) == result["n_tests"]
    assert len(lines.get_lines()) >= 4
