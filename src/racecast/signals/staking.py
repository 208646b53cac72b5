"""Fair odds, edge and fractional-Kelly stakes of a win bet at decimal odds.

Every function is pure and vectorised: scalars in give a ``float`` out, array-likes give a
``numpy.ndarray``. Decimal odds include the stake (a winning bet of 1 at odds 5.0 returns
5.0). A missing price (NaN odds) is allowed and means "no bet": its edge is NaN and its
Kelly fraction 0.

Kelly is applied runner by runner: each bet is sized as if it were the only one, and the
cap ``max_fraction`` bounds the stake of each. Backing several runners of one race this way
stakes slightly more than the simultaneous Kelly solution would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["edge", "fair_odds", "kelly_fraction", "stake_units", "staking_columns"]


def _as_array(values, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {values!r}") from exc
    return array


def _out(array: np.ndarray, scalar: bool) -> float | np.ndarray:
    return float(array) if scalar else array


def _check_probability(p: np.ndarray, name: str = "p") -> None:
    bad = ~((p > 0) & (p <= 1))
    if bad.any():
        raise ValueError(f"{name} must be in (0, 1], got {p[bad].ravel()[:5].tolist()}")


def _check_odds(odds: np.ndarray, name: str = "odds") -> None:
    bad = ~np.isnan(odds) & ~(odds > 1)
    if bad.any():
        raise ValueError(
            f"{name} must be decimal odds > 1 (or NaN for no price), got {odds[bad].ravel()[:5].tolist()}"
        )


def fair_odds(p) -> float | np.ndarray:
    """Decimal odds at which a bet on an outcome of probability ``p`` breaks even: ``1 / p``.

    Args:
        p: Win probability (scalar or array-like), each in (0, 1].

    Returns:
        ``1 / p``, a float for a scalar input, else an array.

    Raises:
        ValueError: If a probability is outside (0, 1] or missing.
    """
    array = _as_array(p, "p")
    _check_probability(array)
    return _out(1.0 / array, array.ndim == 0)


def edge(p, odds) -> float | np.ndarray:
    """Expected profit per unit staked of a win bet: ``p * odds - 1``.

    Args:
        p: Win probability, in (0, 1].
        odds: Decimal odds, > 1, or NaN when there is no price.

    Returns:
        The edge (NaN where the odds are NaN), a float for scalar inputs, else an array.

    Raises:
        ValueError: If a probability is outside (0, 1] or odds are <= 1.
    """
    p_arr, o_arr = _as_array(p, "p"), _as_array(odds, "odds")
    _check_probability(p_arr)
    _check_odds(o_arr)
    result = p_arr * o_arr - 1.0
    return _out(result, result.ndim == 0)


def kelly_fraction(p, odds, fraction: float = 0.25) -> float | np.ndarray:
    """Fractional Kelly share of the bankroll to back an outcome: ``fraction * edge / (odds - 1)``.

    Full Kelly maximises the expected log growth of the bankroll, ``f* = (p * o - 1) / (o - 1)``;
    a fraction of it (a quarter by default) trades growth for a much smaller variance and
    for robustness to an over-confident ``p``.

    Args:
        p: Win probability, in (0, 1].
        odds: Decimal odds, > 1, or NaN when there is no price.
        fraction: Kelly multiplier, in (0, 1].

    Returns:
        The share of the bankroll, 0 where the edge is <= 0 or the odds are NaN.

    Raises:
        ValueError: If ``fraction`` is outside (0, 1], a probability outside (0, 1] or odds <= 1.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    p_arr, o_arr = _as_array(p, "p"), _as_array(odds, "odds")
    _check_probability(p_arr)
    _check_odds(o_arr)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = p_arr * o_arr - 1.0
        full = np.where(e > 0, e / (o_arr - 1.0), 0.0)
    return _out(fraction * full, full.ndim == 0)


def stake_units(
    kelly, bankroll_units: float = 100.0, max_fraction: float = 0.05
) -> float | np.ndarray:
    """Stake in bankroll units: ``bankroll_units * min(kelly, max_fraction)``.

    Args:
        kelly: Kelly share of the bankroll (from :func:`kelly_fraction`), >= 0.
        bankroll_units: Bankroll size in units, > 0.
        max_fraction: Largest share of the bankroll on one bet, in (0, 1].

    Returns:
        The stake, a float for a scalar input, else an array.

    Raises:
        ValueError: If ``kelly`` is negative or missing, ``bankroll_units`` <= 0 or
            ``max_fraction`` outside (0, 1].
    """
    if not bankroll_units > 0:
        raise ValueError(f"bankroll_units must be > 0, got {bankroll_units}")
    if not 0 < max_fraction <= 1:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
    array = _as_array(kelly, "kelly")
    bad = ~(array >= 0)
    if bad.any():
        raise ValueError(f"kelly must be >= 0, got {array[bad].ravel()[:5].tolist()}")
    return _out(bankroll_units * np.minimum(array, max_fraction), array.ndim == 0)


def staking_columns(
    p_win,
    best_odds,
    fraction: float = 0.25,
    bankroll_units: float = 100.0,
    max_fraction: float = 0.05,
) -> pd.DataFrame:
    """The derived signal columns of runners with win probabilities and (optional) prices.

    Args:
        p_win: Win probabilities, each in (0, 1].
        best_odds: Best available decimal odds per runner (NaN: no price, no bet).
        fraction: Kelly multiplier, see :func:`kelly_fraction`.
        bankroll_units: Bankroll in units, see :func:`stake_units`.
        max_fraction: Cap on one stake's share of the bankroll, see :func:`stake_units`.

    Returns:
        A frame with columns ``fair_odds, edge, kelly_fraction, stake_units``, one row per
        runner, indexed like ``p_win`` when it is a Series.
    """
    index = p_win.index if isinstance(p_win, pd.Series) else None
    p_arr = np.atleast_1d(_as_array(p_win, "p_win"))
    o_arr = np.atleast_1d(_as_array(best_odds, "best_odds"))
    if p_arr.shape != o_arr.shape:
        raise ValueError(f"p_win and best_odds differ in length: {p_arr.shape} vs {o_arr.shape}")
    kelly = kelly_fraction(p_arr, o_arr, fraction)
    return pd.DataFrame(
        {
            "fair_odds": fair_odds(p_arr),
            "edge": edge(p_arr, o_arr),
            "kelly_fraction": kelly,
            "stake_units": stake_units(kelly, bankroll_units, max_fraction),
        },
        index=index,
    )
