"""Fair odds, edge, fractional Kelly and stakes, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from racecast.signals.staking import edge, fair_odds, kelly_fraction, stake_units, staking_columns


def test_fair_odds_is_the_inverse_probability():
    assert fair_odds(0.25) == 4.0
    assert fair_odds(1.0) == 1.0
    np.testing.assert_allclose(fair_odds([0.5, 0.2, 0.1]), [2.0, 5.0, 10.0])


def test_edge_by_hand():
    assert edge(0.3, 5.0) == pytest.approx(0.5)
    assert edge(0.2, 5.0) == pytest.approx(0.0)
    assert edge(0.1, 5.0) == pytest.approx(-0.5)
    assert np.isnan(edge(0.3, np.nan))


def test_quarter_kelly_by_hand():
    # f = 0.25 * (p*o - 1) / (o - 1) = 0.25 * 0.5 / 4
    assert kelly_fraction(0.3, 5.0) == pytest.approx(0.03125)
    # p = 0.6 at evens: full Kelly 0.2, quarter 0.05, half 0.1
    assert kelly_fraction(0.6, 2.0) == pytest.approx(0.05)
    assert kelly_fraction(0.6, 2.0, fraction=0.5) == pytest.approx(0.1)
    assert kelly_fraction(0.6, 2.0, fraction=1.0) == pytest.approx(0.2)


def test_kelly_is_zero_without_edge_or_price():
    np.testing.assert_array_equal(
        kelly_fraction([0.2, 0.1, 0.3], [5.0, 5.0, np.nan]), [0.0, 0.0, 0.0]
    )


def test_full_kelly_maximises_expected_log_growth():
    p, odds = 0.35, 4.0
    grid = np.linspace(0.0, 0.5, 50001)
    growth = p * np.log1p(grid * (odds - 1)) + (1 - p) * np.log1p(-grid)
    assert kelly_fraction(p, odds, fraction=1.0) == pytest.approx(grid[np.argmax(growth)], abs=1e-4)


def test_stake_units_scales_and_caps():
    assert stake_units(0.03125) == pytest.approx(3.125)
    assert stake_units(0.2) == pytest.approx(5.0)  # capped at 5% of 100 units
    assert stake_units(0.2, bankroll_units=1000, max_fraction=0.1) == pytest.approx(100.0)
    assert stake_units(0.0) == 0.0
    np.testing.assert_allclose(stake_units(np.array([0.01, 0.07])), [1.0, 5.0])


def test_scalars_give_floats_arrays_give_arrays():
    assert isinstance(kelly_fraction(0.3, 5.0), float)
    assert isinstance(stake_units(0.01), float)
    assert isinstance(edge([0.3], [5.0]), np.ndarray)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fair_odds(0.0), r"p must be in \(0, 1\]"),
        (lambda: fair_odds(1.2), r"p must be in \(0, 1\]"),
        (lambda: fair_odds(np.nan), r"p must be in \(0, 1\]"),
        (lambda: edge(0.5, 1.0), "odds must be decimal odds > 1"),
        (lambda: kelly_fraction(0.5, 3.0, fraction=0.0), r"fraction must be in \(0, 1\]"),
        (lambda: kelly_fraction(0.5, 0.5), "odds must be decimal odds > 1"),
        (lambda: stake_units(-0.1), "kelly must be >= 0"),
        (lambda: stake_units(0.1, bankroll_units=0), "bankroll_units must be > 0"),
        (lambda: stake_units(0.1, max_fraction=1.5), r"max_fraction must be in \(0, 1\]"),
        (lambda: edge("abc", 2.0), "p must be numeric"),
    ],
)
def test_invalid_inputs_are_rejected_with_the_parameter_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_staking_columns_by_hand_and_keeps_the_index():
    p = pd.Series([0.3, 0.6, 0.1, 0.5], index=[10, 11, 12, 13])
    odds = pd.Series([5.0, 2.0, 5.0, np.nan], index=p.index)
    out = staking_columns(p, odds)
    assert list(out.index) == [10, 11, 12, 13]
    assert list(out.columns) == ["fair_odds", "edge", "kelly_fraction", "stake_units"]
    np.testing.assert_allclose(out["fair_odds"], [1 / 0.3, 1 / 0.6, 10.0, 2.0])
    np.testing.assert_allclose(out["edge"], [0.5, 0.2, -0.5, np.nan])
    np.testing.assert_allclose(out["kelly_fraction"], [0.03125, 0.05, 0.0, 0.0])
    np.testing.assert_allclose(out["stake_units"], [3.125, 5.0, 0.0, 0.0])


def test_staking_columns_rejects_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        staking_columns([0.3, 0.4], [5.0])
