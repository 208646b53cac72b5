"""Behavioural tests of the stacked meta-learner on synthetic races with a known truth.

Each runner has a latent strength ``s ~ N(0, 1)`` and, in the "extra" world, an original
feature ``x_extra ~ N(0, 1)``; the true utility is ``s + BETA_EXTRA * x_extra`` and the
finishing order is Plackett-Luce (utility + Gumbel noise, sorted), so the winner is a
draw from the per-race softmax of the utility. Three base models see only ``s`` through
independent noise: ``p_m{k} = softmax_race(s + N(0, sd_k^2))`` with sd 0.6, 0.9, 1.2, and
``p_noise`` is the softmax of pure noise. Everything uses fixed seeds.

Sizes: 800 training races (~8,000 runners) and 600 held-out races. Tolerances below
quote the standard error (SE) of the *paired* per-race log-loss difference measured on
these sizes over three seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from racecast.models.stacking import StackedMetaLearner

NOISE_SD = (0.6, 0.9, 1.2)
BASE = [f"p_m{k}" for k in range(len(NOISE_SD))] + ["p_noise"]
BETA_EXTRA = 0.7
FAST = {"n_estimators": 60}  # ~1 s per fit (6 LightGBM fits on ~8k rows, 1 thread)


def softmax_race(u: np.ndarray, race: np.ndarray) -> np.ndarray:
    u = pd.Series(u)
    e = np.exp(u - u.groupby(race).transform("max"))
    return (e / e.groupby(race).transform("sum")).to_numpy()


def make_world(n_races: int, seed: int, beta_extra: float) -> pd.DataFrame:
    """One row per runner: race_id, base probabilities, x_extra, won, position, p_true."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(6, 15, n_races)
    race = np.repeat(np.arange(n_races), sizes)
    n = int(sizes.sum())
    s = rng.normal(size=n)
    x = rng.normal(size=n)
    utility = s + beta_extra * x
    noisy = pd.Series(utility + rng.gumbel(size=n))
    position = noisy.groupby(race).rank(ascending=False, method="first").astype(int)
    frame = pd.DataFrame(
        {
            f"p_m{k}": softmax_race(s + rng.normal(scale=sd, size=n), race)
            for k, sd in enumerate(NOISE_SD)
        }
    )
    frame["p_noise"] = softmax_race(rng.normal(size=n), race)
    frame["x_extra"] = x
    frame["position"] = position.to_numpy()
    frame["won"] = (frame["position"] == 1).astype(int)
    frame["race_id"] = [f"S{seed}_{r:04d}" for r in race]
    frame["p_true"] = softmax_race(utility, race)
    return frame


def winner_log_loss(p: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """Per-race ``-log p_winner`` (every race has exactly one winner here)."""
    return -np.log(np.asarray(p)[frame["won"].to_numpy() == 1])


@pytest.fixture(scope="module")
def plain() -> tuple[pd.DataFrame, pd.DataFrame]:
    """World where the extra feature carries no signal (beta 0)."""
    return make_world(800, seed=10, beta_extra=0.0), make_world(600, seed=20, beta_extra=0.0)


@pytest.fixture(scope="module")
def extra() -> tuple[pd.DataFrame, pd.DataFrame]:
    """World where x_extra carries signal the base models do not see."""
    return (
        make_world(800, seed=11, beta_extra=BETA_EXTRA),
        make_world(600, seed=21, beta_extra=BETA_EXTRA),
    )


@pytest.fixture(scope="module")
def plain_model(plain) -> StackedMetaLearner:
    train, _ = plain
    return StackedMetaLearner(**FAST).fit(train[BASE], train["won"], train["race_id"])


@pytest.fixture(scope="module")
def extra_model(extra) -> StackedMetaLearner:
    train, _ = extra
    columns = BASE + ["x_extra"]
    return StackedMetaLearner(**FAST).fit(train[columns], train["won"], train["race_id"])


def test_stacking_is_at_least_as_good_as_the_best_base_model(plain, plain_model):
    """Pooling three independent noisy views beats the best single view.

    Pooling cuts the noise variance from 0.36 (best view) to ~0.22; measured gain on
    these sizes is 0.055-0.090 nats per race with a paired SE of ~0.017, so requiring
    no loss at all (tolerance 0) sits 3-5 SE below the expected gain.
    """
    _, test = plain
    best = min(winner_log_loss(test[c], test).mean() for c in BASE)
    stage_a = winner_log_loss(plain_model.stage_a_proba(test[BASE], test["race_id"]), test)
    stacked = winner_log_loss(plain_model.predict_proba(test[BASE], test["race_id"]), test)
    assert stage_a.mean() <= best
    assert stacked.mean() <= best
    oracle = winner_log_loss(test["p_true"], test).mean()
    assert stacked.mean() > oracle  # sanity: nothing beats the Bayes limit on fresh races


def test_stage_b_does_not_hurt_without_extra_signal(plain, plain_model):
    """The (a, b) conditional logit nests stage A; with nothing to add, B stays close.

    Measured stacked - stage A: -0.004..+0.004 nats per race, paired SE 0.002-0.003;
    0.01 is three SE above the worst seed.
    """
    _, test = plain
    stage_a = winner_log_loss(plain_model.stage_a_proba(test[BASE], test["race_id"]), test)
    stacked = winner_log_loss(plain_model.predict_proba(test[BASE], test["race_id"]), test)
    assert stacked.mean() - stage_a.mean() <= 0.01


def test_stage_b_uses_an_informative_original_feature(extra, extra_model):
    """x_extra is invisible to the base models and to stage A; stage B must exploit it.

    Measured gain of stacked over stage A: 0.09-0.16 nats per race, paired SE ~0.02, so
    a required gain of 0.05 is >= 2 SE below the smallest measured gain.
    """
    _, test = extra
    columns = BASE + ["x_extra"]
    stage_a = winner_log_loss(extra_model.stage_a_proba(test[columns], test["race_id"]), test)
    stacked = winner_log_loss(extra_model.predict_proba(test[columns], test["race_id"]), test)
    assert stacked.mean() < stage_a.mean() - 0.05
    importance = extra_model.importance()
    assert importance["x_extra"] > importance["p_noise"]
    assert extra_model.coef_[1] > 0  # the ranker's score enters with a positive weight


def test_stage_a_l1_zeroes_the_pure_noise_column(plain_model):
    """L1 drops the pure-noise view and weights the others by their precision.

    At C = 0.01 the noise column's score gradient at 0 (~sqrt(n) scale) is far below
    the penalty 1/C = 100 while the informative ones are O(n); the exact-zero
    assertion is what L1 (unlike L2) delivers.
    """
    coef = plain_model.stage_a_coef_
    assert list(coef.index) == BASE
    assert coef["p_noise"] == 0.0
    assert coef["p_m0"] > coef["p_m1"] > coef["p_m2"] > 0.0


def test_outputs_sum_to_one_per_race(plain, plain_model):
    _, test = plain
    for proba in (
        plain_model.predict_proba(test[BASE], test["race_id"]),
        plain_model.stage_a_proba(test[BASE], test["race_id"]),
    ):
        assert np.all(proba > 0)
        sums = pd.Series(proba).groupby(test["race_id"].to_numpy()).sum()
        np.testing.assert_allclose(sums, 1.0, atol=1e-12)


def test_stage_a_is_calibrated_on_held_out_races(plain, plain_model):
    """Mean predicted vs observed win rate in 5 quantile bins of p_A (~1,200 runners
    each): within 4 binomial SEs (per-bin SE <= 0.011 for rates <= 0.2)."""
    _, test = plain
    p = plain_model.stage_a_proba(test[BASE], test["race_id"])
    bins = pd.qcut(p, 5, labels=False)
    table = pd.DataFrame({"p": p, "won": test["won"].to_numpy(), "bin": bins}).groupby("bin")
    mean_p, rate, count = table["p"].mean(), table["won"].mean(), table.size()
    se = np.sqrt(mean_p * (1 - mean_p) / count)
    assert np.all(np.abs(rate - mean_p) <= 4 * se)


def test_fit_is_invariant_to_row_order(plain):
    """Shuffled rows (and new index labels) give the same model. Without the canonical
    re-sort in ``fit`` the race folds follow first appearance and the held-out
    probabilities below differ by up to 0.09, so the 1e-12 tolerance (rounding) bites."""
    train, test = plain
    train, test = train.iloc[:4000], test.iloc[:2000]
    params = {"n_estimators": 30}
    a = StackedMetaLearner(**params).fit(train[BASE], train["won"], train["race_id"])
    shuffled = train.sample(frac=1.0, random_state=3)
    shuffled.index = shuffled.index + 10_000  # different labels too
    b = StackedMetaLearner(**params).fit(shuffled[BASE], shuffled["won"], shuffled["race_id"])
    # canonical re-sorting makes both fits see identical arrays: equal up to rounding
    np.testing.assert_allclose(a.stage_a_coef_, b.stage_a_coef_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=0, atol=1e-12)
    pa = a.predict_proba(test[BASE], test["race_id"])
    pb = b.predict_proba(test[BASE], test["race_id"])
    np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-12)
    # prediction follows the input rows
    order = np.random.default_rng(4).permutation(len(test))
    moved = test.iloc[order]
    np.testing.assert_allclose(
        a.predict_proba(moved[BASE], moved["race_id"]), pa[order], rtol=0, atol=1e-12
    )


def test_get_params_round_trip():
    model = StackedMetaLearner(C=0.05, use_stage_b=False, ranker_params={"reg_lambda": 1.0})
    params = model.get_params()
    assert params["C"] == 0.05 and params["use_stage_b"] is False
    assert StackedMetaLearner(**params).get_params() == params
    assert clone(model).get_params() == params
    other = StackedMetaLearner().set_params(**params)
    assert other.get_params() == params


def test_stage_a_only(plain):
    train, test = plain
    model = StackedMetaLearner(use_stage_b=False).fit(train[BASE], train["won"], train["race_id"])
    assert not hasattr(model, "ranker_") and not hasattr(model, "coef_")
    assert set(model.cv_log_loss_) == {"stage_a"}
    np.testing.assert_allclose(
        model.predict_proba(test[BASE], test["race_id"]),
        model.stage_a_proba(test[BASE], test["race_id"]),
        rtol=0,
        atol=1e-12,
    )
    assert list(model.feature_names_in_) == BASE


def test_calibration_prior_keeps_isotonic_rates_positive(plain):
    """Plain isotonic (prior 0) has a zero-rate bottom block here (0 winners among its
    runners) and a top block at 0.69; the Beta prior lifts the first and shrinks the second
    towards the logistic probability."""
    train, _ = plain
    fit = {"X": train[BASE], "y": train["won"], "groups": train["race_id"]}
    raw = StackedMetaLearner(use_stage_b=False, calibration_prior=0.0).fit(**fit)
    smoothed = StackedMetaLearner(use_stage_b=False).fit(**fit)
    assert raw.isotonic_.y_thresholds_.min() == 0.0
    assert smoothed.isotonic_.y_thresholds_.min() > 0.0
    assert smoothed.isotonic_.y_thresholds_.max() < raw.isotonic_.y_thresholds_.max()


def test_graded_relevance_changes_the_ranker(plain):
    train, test = plain
    train, test = train.iloc[:4000], test.iloc[:2000]
    columns = BASE + ["x_extra"]
    args = (train[columns], train["won"], train["race_id"])
    relevance = (4 - train["position"]).clip(lower=0)
    won_only = StackedMetaLearner(n_estimators=30).fit(*args)
    graded = StackedMetaLearner(n_estimators=30).fit(*args, relevance=relevance)
    p_won = won_only.predict_proba(test[columns], test["race_id"])
    p_graded = graded.predict_proba(test[columns], test["race_id"])
    assert np.max(np.abs(p_won - p_graded)) > 1e-3
    with pytest.raises(ValueError, match="label_gain"):
        StackedMetaLearner(n_estimators=5).fit(*args, relevance=train["position"] + 30)


def test_input_errors_name_the_problem(plain, plain_model):
    train, test = plain
    with pytest.raises(ValueError, match="base_prefix 'p_'"):
        StackedMetaLearner().fit(train[["x_extra"]], train["won"], train["race_id"])
    broken = train[BASE].copy()
    broken.loc[broken.index[5], "p_m1"] = np.nan
    with pytest.raises(ValueError, match=r"\['p_m1'\]"):
        StackedMetaLearner().fit(broken, train["won"], train["race_id"])
    with pytest.raises(ValueError, match="C must be positive"):
        StackedMetaLearner(C=0.0).fit(train[BASE], train["won"], train["race_id"])
    with pytest.raises(ValueError, match="n_folds"):
        StackedMetaLearner(n_folds=1).fit(train[BASE], train["won"], train["race_id"])
    with pytest.raises(ValueError, match="p_m2"):
        plain_model.predict_proba(test[BASE[:2]], test["race_id"])
