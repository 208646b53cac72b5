"""Benter blend: recovery of known coefficients, predictions by hand, LR test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from racecast.evaluation.blend import BenterBlend, likelihood_ratio_test

TRUE_A, TRUE_B = 0.6, 0.9


def _softmax_rows(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    """3,000 races of 8 runners drawn from the blend with a = 0.6, b = 0.9 (seed 20240301)."""
    rng = np.random.default_rng(20240301)
    n_races, field = 3000, 8
    ability = rng.normal(size=(n_races, field))
    p_fund = _softmax_rows(ability + rng.normal(scale=0.8, size=ability.shape))
    p_market = _softmax_rows(1.2 * (ability + rng.normal(scale=0.6, size=ability.shape)))
    p_true = _softmax_rows(TRUE_A * np.log(p_fund) + TRUE_B * np.log(p_market))
    winner = (p_true.cumsum(axis=1) > rng.random((n_races, 1))).argmax(axis=1)
    won = np.zeros_like(p_true, dtype=int)
    won[np.arange(n_races), winner] = 1
    return pd.DataFrame(
        {
            "race_id": np.repeat(np.arange(n_races), field),
            "p_fund": p_fund.ravel(),
            "p_market": p_market.ravel(),
            "won": won.ravel(),
        }
    )


def test_recovers_known_coefficients(simulated: pd.DataFrame) -> None:
    blend = BenterBlend().fit(simulated)
    # The MLE is asymptotically normal with the reported standard errors; 3,000 races
    # give SEs of about 0.027. 4 SEs leave a two-sided miss chance of ~6e-5 per
    # coefficient (and the seed is fixed), while an absolute bound of 0.2 still
    # catches a wrong gradient or a sign error.
    assert np.all(blend.bse_ < 0.08)
    assert abs(blend.coef_[0] - TRUE_A) < min(4 * blend.bse_[0], 0.2)
    assert abs(blend.coef_[1] - TRUE_B) < min(4 * blend.bse_[1], 0.2)
    assert blend.n_races_ == 3000
    # the fundamental model adds information: the blend beats the market alone
    assert blend.log_likelihood_ > blend.market_log_likelihood_
    statistic = 2 * (blend.log_likelihood_ - blend.market_log_likelihood_)
    assert blend.lr_test_p_ == pytest.approx(stats.chi2.sf(statistic, 2))
    assert blend.lr_test_p_ < 1e-6


def test_gradient_is_zero_at_the_fit(simulated: pd.DataFrame) -> None:
    blend = BenterBlend().fit(simulated)

    # the log-likelihood must not improve by moving either coefficient a little
    def ll(a: float, b: float) -> float:
        probe = BenterBlend()
        probe.coef_ = np.array([a, b])
        p = probe.predict_proba(simulated)
        return float(np.log(p[simulated["won"] == 1]).sum())

    a, b = blend.coef_
    assert ll(a, b) == pytest.approx(blend.log_likelihood_, rel=1e-9)
    for da, db in [(0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        assert ll(a + da, b + db) < blend.log_likelihood_


def test_array_interface_matches_frame(simulated: pd.DataFrame) -> None:
    first = simulated[simulated["race_id"] < 500]
    from_frame = BenterBlend().fit(first)
    from_arrays = BenterBlend().fit(
        first[["p_fund", "p_market"]].to_numpy(),
        first["won"].to_numpy(),
        groups=first["race_id"].to_numpy(),
    )
    np.testing.assert_allclose(from_frame.coef_, from_arrays.coef_, rtol=1e-8)


def test_predict_proba_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "race_id": ["r2", "r1", "r1", "r2"],
            "p_fund": [0.25, 0.5, 0.5, 0.75],
            "p_market": [0.5, 0.8, 0.2, 0.5],
        },
        index=[10, 11, 12, 13],
    )
    blend = BenterBlend()
    blend.coef_ = np.array([0.5, 2.0])
    p = blend.predict_proba(frame)
    # r1: 0.5^0.5 * 0.8^2 : 0.5^0.5 * 0.2^2 = 0.64 : 0.04 -> 0.64/0.68, 0.04/0.68
    # r2: 0.25^0.5 * 0.25 : 0.75^0.5 * 0.25 = 0.5 : 0.8660254 -> 0.5/1.3660254, 0.8660254/1.3660254
    np.testing.assert_allclose(
        p.loc[[11, 12, 10, 13]],
        [0.64 / 0.68, 0.04 / 0.68, 0.5 / 1.3660254038, 0.8660254038 / 1.3660254038],
        rtol=1e-9,
    )
    assert p.index.tolist() == [10, 11, 12, 13]


def test_dead_heats_are_dropped_from_the_fit(simulated: pd.DataFrame) -> None:
    first = simulated[simulated["race_id"] < 300]
    dead_heat = first["race_id"] == 0
    with_dh = first.assign(won=first["won"].where(~dead_heat, 1))  # every runner of race 0 wins
    a = BenterBlend().fit(with_dh)
    b = BenterBlend().fit(first[~dead_heat])
    assert a.n_races_ == 299
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-8)


def test_fit_errors(simulated: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="p_market"):
        BenterBlend().fit(simulated.assign(p_market=np.nan))
    with pytest.raises(KeyError, match="p_fund"):
        BenterBlend().fit(simulated.drop(columns="p_fund"))
    with pytest.raises(ValueError, match="groups"):
        BenterBlend().fit(simulated[["p_fund", "p_market"]].to_numpy(), simulated["won"].to_numpy())


def test_likelihood_ratio_test_against_chi2() -> None:
    # statistic 2 * (-100 + 103) = 6; chi2 with 2 df has sf(x) = exp(-x / 2) = exp(-3)
    assert likelihood_ratio_test(-100.0, -103.0) == pytest.approx(np.exp(-3.0), rel=1e-12)
    assert likelihood_ratio_test(-100.0, -103.0, df=2) == pytest.approx(stats.chi2.sf(6.0, 2))
    assert likelihood_ratio_test(-100.0, -101.5, df=1) == pytest.approx(stats.chi2.sf(3.0, 1))
    # combined worse than the market (out of sample): statistic clipped to 0 -> p = 1
    assert likelihood_ratio_test(-105.0, -103.0) == 1.0
    with pytest.raises(ValueError, match="df"):
        likelihood_ratio_test(-1.0, -2.0, df=0)
