"""The combined track's decision rule, written down before it is run.

Each candidate of the combined track (the Benter blend, the residual booster) is scored
out of sample on the rolling-origin test races of the training period
(:mod:`racecast.evaluation.second_stage`) beside ``market_corrected``. Per single-winner
race ``r`` the gain is

    g_r = log p_candidate(winner of r) - log p_market_corrected(winner of r).

**Rule.** With ``m`` candidates and level ``alpha`` (``model_zoo.second_stage.alpha``):

1. each candidate is tested one-sided, H0: E[g] <= 0, by the t statistic
   ``mean(g) / SE`` with ``SE = sd(g) / sqrt(n)`` (Student t, ``n - 1`` df) at level
   ``alpha / m`` (Bonferroni: the chance that any candidate passes by luck stays below
   ``alpha``);
2. of the candidates that pass, the one with the largest mean gain ships as the
   combined track; if none passes, the combined track is ``market_corrected``.

**Power.** For each test the minimum detectable effect at power ``power`` is
``MDE = (z_{1 - alpha/m} + z_{power}) * SE`` (normal approximation), and the power
against a reference gain ``delta`` is ``Phi(delta / SE - z_{1 - alpha/m})``. ``delta``
is ``reference_pseudo_r2_gain`` times the mean uniform log loss (``log field size``) of
the test races, i.e. a pseudo-R² gain of that size. Both are reported whether or not a
candidate ships.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["RULE", "decide", "gain_test"]

#: The rule in one sentence (copied into evaluation.json).
RULE = (
    "ship the candidate with the largest mean per-race log-likelihood gain over "
    "market_corrected among those whose one-sided t-test (H0: mean gain <= 0) on the "
    "rolling-origin test races of the training period has p < alpha / n_candidates; "
    "otherwise ship market_corrected"
)


def gain_test(
    gain: np.ndarray,
    alpha: float,
    power: float = 0.8,
    reference_gain: float | None = None,
) -> dict[str, Any]:
    """One-sided t-test of a per-race gain, with its minimum detectable effect and power.

    Args:
        gain: Per-race log-likelihood gains.
        alpha: Level of this test (already divided by the number of candidates).
        power: Power at which the minimum detectable effect is stated.
        reference_gain: Per-race gain the power is stated against (None: not stated).

    Returns:
        ``{"n_races", "mean_gain", "se", "t", "p_value", "alpha", "mde",
        "power_at_reference", "reference_gain", "passes"}``.
    """
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    gain = np.asarray(gain, dtype=float)
    n = len(gain)
    mean = float(gain.mean()) if n else float("nan")
    se = float(gain.std(ddof=1) / math.sqrt(n)) if n >= 2 else float("nan")
    if n >= 2 and se > 0:
        t = mean / se
        p_value = float(stats.t.sf(t, df=n - 1))
    else:
        t, p_value = float("nan"), 1.0
    z_alpha = float(stats.norm.isf(alpha))
    mde = (z_alpha + float(stats.norm.ppf(power))) * se if math.isfinite(se) else float("nan")
    power_at = None
    if reference_gain is not None and math.isfinite(se) and se > 0:
        power_at = float(stats.norm.cdf(reference_gain / se - z_alpha))
    return {
        "n_races": n,
        "mean_gain": mean,
        "se": se,
        "t": t,
        "p_value": p_value,
        "alpha": alpha,
        "mde": mde,
        "power": power,
        "reference_gain": reference_gain,
        "power_at_reference": power_at,
        "passes": bool(mean > 0 and p_value < alpha),
    }


def decide(
    gains: Mapping[str, np.ndarray],
    alpha: float,
    power: float = 0.8,
    reference_gain: float | None = None,
) -> dict[str, Any]:
    """Apply :data:`RULE` to the candidates' per-race gains over ``market_corrected``.

    Args:
        gains: Candidate name -> per-race gains on the same test races.
        alpha: Family level (split equally over the candidates).
        power: Power at which the minimum detectable effects are stated.
        reference_gain: Per-race gain the power is stated against.

    Returns:
        ``{"rule", "alpha", "n_candidates", "tests": {name: gain_test(...)}, "choice"}``;
        ``choice`` is a candidate name or ``"market_corrected"``.
    """
    if not gains:
        raise ValueError("no candidate to decide on")
    level = alpha / len(gains)
    tests = {
        name: gain_test(g, level, power=power, reference_gain=reference_gain)
        for name, g in gains.items()
    }
    passing = [name for name, test in tests.items() if test["passes"]]
    choice = max(passing, key=lambda n: tests[n]["mean_gain"]) if passing else "market_corrected"
    return {
        "rule": RULE,
        "alpha": alpha,
        "n_candidates": len(gains),
        "tests": tests,
        "choice": choice,
    }
