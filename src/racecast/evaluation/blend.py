"""Benter (1994) blend of a fundamental model with the market, and its likelihood-ratio test.

The combined probability of runner ``i`` in race ``r`` is the conditional logit

    p_i = exp(a * log p_fund_i + b * log p_mkt_i) / sum_{j in r} exp(a * log p_fund_j + b * log p_mkt_j)

with ``(a, b)`` fit by maximum likelihood on races with exactly one winner. The market
alone is the special case ``a = 0, b = 1``. :func:`validate_blend` checks, on later
training races, that a blend beats the market convincingly (else the combined track
falls back to the market) and assesses each track's staking there.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from racecast.evaluation.stakeability import TRACKS, not_assessed, staking_validation
from racecast.models.split import compute_race_days

logger = logging.getLogger(__name__)

__all__ = ["BenterBlend", "likelihood_ratio_test", "one_sided_p", "validate_blend"]


def likelihood_ratio_test(ll_combined: float, ll_market: float, df: int = 2) -> float:
    """P-value of the likelihood-ratio test of the combined model against the market alone.

    The statistic is ``2 * (ll_combined - ll_market)``, referred to a chi-square
    distribution with ``df`` degrees of freedom. ``df = 2`` by default: the market
    alone is the combined model with both coefficients fixed (``a = 0`` and ``b = 1``),
    so the null hypothesis imposes two restrictions. (Use ``df = 1`` against a
    re-fitted "market with its own temperature" model ``exp(b log p_mkt)``, which
    frees ``b``.) A negative statistic (the combined model fits worse, possible only
    out of sample) is clipped to 0, giving p = 1.

    Args:
        ll_combined: Total log-likelihood (sum over races of ``log p_winner``) of the
            combined model.
        ll_market: Total log-likelihood of the market alone on the same races.
        df: Degrees of freedom (number of restrictions), >= 1.

    Returns:
        The p-value in [0, 1].

    Raises:
        ValueError: If ``df < 1`` or a log-likelihood is not finite.
    """
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if not (np.isfinite(ll_combined) and np.isfinite(ll_market)):
        raise ValueError(
            f"log-likelihoods must be finite, got ll_combined={ll_combined}, ll_market={ll_market}"
        )
    statistic = max(0.0, 2.0 * (ll_combined - ll_market))
    return float(stats.chi2.sf(statistic, df))


def _log_features(values: np.ndarray, names: tuple[str, str], floor: float) -> np.ndarray:
    """``log(clip(p, floor, 1))`` of an (n, 2) probability array, validated."""
    for j, name in enumerate(names):
        column = values[:, j]
        if not np.isfinite(column).all():
            raise ValueError(
                f"column '{name}' has {int((~np.isfinite(column)).sum())} missing values"
            )
        if (column < 0).any() or (column > 1).any():
            raise ValueError(f"column '{name}' has probabilities outside [0, 1]")
    return np.log(np.clip(values, floor, 1.0))


class _RaceData:
    """Log-probability features sorted by race, with the race boundaries."""

    def __init__(self, x: np.ndarray, groups: np.ndarray) -> None:
        codes, _ = pd.factorize(groups, sort=False)
        if (codes < 0).any():
            raise ValueError("race ids (groups) have missing values")
        self.order = np.argsort(codes, kind="mergesort")
        self.x = x[self.order]
        sorted_codes = codes[self.order]
        self.starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        self.lengths = np.diff(np.r_[self.starts, len(sorted_codes)])

    def softmax(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-race probabilities (sorted order) and per-race log-sum-exp of the utilities."""
        u = self.x @ theta
        peak = np.maximum.reduceat(u, self.starts)
        e = np.exp(u - np.repeat(peak, self.lengths))
        total = np.add.reduceat(e, self.starts)
        return e / np.repeat(total, self.lengths), peak + np.log(total)


class BenterBlend(BaseEstimator):
    """Conditional-logit blend ``exp(a log p_fund + b log p_mkt)`` normalised per race.

    Fit by maximum likelihood (L-BFGS-B with the analytic gradient) on the races with
    exactly one winner; other races are dropped with a log message.

    Args:
        fund_col: Fundamental probability column (when fitting on a DataFrame).
        market_col: Market probability column.
        race_col: Race id column.
        won_col: 0/1 winner column.
        prob_floor: Probabilities are clipped to ``[prob_floor, 1]`` before the log.
        max_iter: Maximum optimiser iterations.
        tol: Optimiser tolerance on the projected gradient.

    Attributes:
        coef_: ``array([a, b])``.
        bse_: Standard errors of ``coef_`` from the observed information.
        log_likelihood_: Maximised total log-likelihood on the fitted races.
        market_log_likelihood_: Log-likelihood of the market alone (``a=0, b=1``) there.
        lr_test_p_: In-sample likelihood-ratio test p-value of the blend against the
            market alone (2 degrees of freedom, see :func:`likelihood_ratio_test`).
        n_races_: Number of single-winner races fitted.
        n_iter_: Optimiser iterations.
    """

    def __init__(
        self,
        fund_col: str = "p_fund",
        market_col: str = "p_market",
        race_col: str = "race_id",
        won_col: str = "won",
        prob_floor: float = 1e-12,
        max_iter: int = 500,
        tol: float = 1e-8,
    ) -> None:
        self.fund_col = fund_col
        self.market_col = market_col
        self.race_col = race_col
        self.won_col = won_col
        self.prob_floor = prob_floor
        self.max_iter = max_iter
        self.tol = tol

    def _arrays(
        self, X: pd.DataFrame | np.ndarray, groups: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(log features (n, 2), race ids) from a frame or arrays."""
        if isinstance(X, pd.DataFrame):
            names = (self.fund_col, self.market_col)
            for col in (*names, self.race_col):
                if col not in X.columns:
                    raise KeyError(f"column '{col}' is missing from the frame")
            values = X[list(names)].to_numpy(dtype=float, na_value=np.nan)
            if groups is None:
                groups = X[self.race_col].to_numpy()
        else:
            names = ("X[:, 0] (fundamental)", "X[:, 1] (market)")
            values = np.asarray(X, dtype=float)
            if values.ndim != 2 or values.shape[1] != 2:
                raise ValueError(f"X must have shape (n, 2), got {values.shape}")
            if groups is None:
                raise ValueError("groups (race ids) are required when X is an array")
        groups = np.asarray(groups)
        if len(groups) != len(values):
            raise ValueError(f"groups has {len(groups)} rows, X has {len(values)}")
        return _log_features(values, names, self.prob_floor), groups

    def _winners(self, X: pd.DataFrame | np.ndarray, y: np.ndarray | None) -> np.ndarray:
        """0/1 winners from ``y`` or, for a frame, its ``won_col``; validated."""
        if y is None:
            if not isinstance(X, pd.DataFrame) or self.won_col not in X.columns:
                raise ValueError(f"winners are required: pass y or a '{self.won_col}' column")
            y = X[self.won_col].to_numpy(dtype=float, na_value=np.nan)
        y = np.asarray(y, dtype=float)
        if len(y) != len(X):
            raise ValueError(f"y has {len(y)} rows, X has {len(X)}")
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError(f"column '{self.won_col}' (y) must hold only 0/1 (no missing values)")
        return y

    def fit(
        self,
        X: pd.DataFrame | np.ndarray,
        y: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> BenterBlend:
        """Fit ``(a, b)`` by maximum likelihood on the single-winner races.

        Args:
            X: A frame with ``fund_col``, ``market_col``, ``race_col`` and ``won_col``;
                or an (n, 2) array of (fundamental, market) probabilities.
            y: 0/1 winners (taken from ``won_col`` when ``X`` is a frame and y is None).
            groups: Race ids (taken from ``race_col`` when ``X`` is a frame and None).

        Returns:
            self.

        Raises:
            ValueError: On invalid inputs or when no race has exactly one winner.
            RuntimeError: If the optimiser fails to converge.
        """
        x, groups = self._arrays(X, groups)
        y = self._winners(X, y)
        codes, _ = pd.factorize(groups, sort=False)
        winners = np.bincount(codes, weights=y)
        keep = winners[codes] == 1
        n_dropped = int((winners != 1).sum())
        if n_dropped:
            logger.info("BenterBlend.fit: dropped %d races without exactly one winner", n_dropped)
        if not keep.any():
            raise ValueError(f"column '{self.won_col}': no race has exactly one winner")
        data = _RaceData(x[keep], groups[keep])
        won = y[keep][data.order] == 1
        winner_x_sum = data.x[won].sum(axis=0)

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            p, lse = data.softmax(theta)
            expected = np.add.reduceat(p[:, None] * data.x, data.starts).sum(axis=0)
            nll = lse.sum() - winner_x_sum @ theta
            return float(nll), expected - winner_x_sum

        start = np.array([0.0, 1.0])
        result = optimize.minimize(
            objective,
            start,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter, "gtol": self.tol},
        )
        if not result.success:
            raise RuntimeError(f"BenterBlend.fit did not converge: {result.message}")
        self.coef_ = result.x
        self.n_iter_ = int(result.nit)
        self.n_races_ = len(data.starts)
        self.log_likelihood_ = -float(result.fun)
        self.market_log_likelihood_ = -objective(start)[0]
        self.lr_test_p_ = likelihood_ratio_test(self.log_likelihood_, self.market_log_likelihood_)
        self.bse_ = self._standard_errors(data)
        logger.info(
            "BenterBlend: a=%.4f b=%.4f on %d races, LR test p=%.3g",
            *self.coef_,
            self.n_races_,
            self.lr_test_p_,
        )
        return self

    def _standard_errors(self, data: _RaceData) -> np.ndarray:
        """Square roots of the diagonal of the inverse observed information at ``coef_``."""
        p, _ = data.softmax(self.coef_)
        mean_x = np.add.reduceat(p[:, None] * data.x, data.starts)
        second = np.add.reduceat(
            p[:, None, None] * data.x[:, :, None] * data.x[:, None, :], data.starts
        )
        information = (second - mean_x[:, :, None] * mean_x[:, None, :]).sum(axis=0)
        try:
            return np.sqrt(np.diag(np.linalg.inv(information)))
        except np.linalg.LinAlgError:
            logger.warning("BenterBlend: singular information matrix, standard errors are NaN")
            return np.full(2, np.nan)

    def predict_proba(
        self, X: pd.DataFrame | np.ndarray, groups: np.ndarray | None = None
    ) -> pd.Series | np.ndarray:
        """Combined probabilities, normalised within each race.

        Args:
            X: A frame with ``fund_col``, ``market_col`` and ``race_col``, or an (n, 2)
                array of (fundamental, market) probabilities.
            groups: Race ids (from ``race_col`` when ``X`` is a frame and None).

        Returns:
            A Series ``p_combined`` aligned to the frame's index, or a 1-D array in the
            order of the rows of ``X``.
        """
        check_is_fitted(self, "coef_")
        x, groups = self._arrays(X, groups)
        data = _RaceData(x, groups)
        p_sorted, _ = data.softmax(self.coef_)
        p = np.empty_like(p_sorted)
        p[data.order] = p_sorted
        if isinstance(X, pd.DataFrame):
            return pd.Series(p, index=X.index, name="p_combined")
        return p


def validate_blend(
    late: pd.DataFrame, columns: list[str], blend_params: dict[str, Any]
) -> dict[str, Any]:
    """Does the blend beat the market, convincingly, on later training races?

    A blend is fitted on the earlier ``1 - validation_fraction`` of the race days of
    ``late`` and scored on the rest (single-winner races). The per-race gain
    ``log p_blend(winner) - log p_market(winner)`` is tested one-sided (paired t-test,
    H0: mean gain <= 0). Unless the mean gain is positive and its p-value is below
    ``validation_alpha``, ``fallback`` is True: the combined track then uses the market
    alone, so it departs from the market only on evidence. Training races only.

    Args:
        late: Rows with out-of-sample ``p_fund``, ``p_market``, ``won``, ``off_time``.
        columns: The blend's input columns.
        blend_params: ``model_zoo.blend``: ``validation_fraction`` (0 or null = no
            check) and ``validation_alpha`` (null = any positive mean gain is enough).

    The same check races are the staking validation period: ``staking`` holds
    :func:`~racecast.evaluation.stakeability.staking_validation` of the inner stacker's
    ``p_fund`` (track ``fundamental``) and of the trial blend (track ``combined``), both
    out of sample there. Without check races no track is stakeable.

    Returns:
        ``{"n_races", "blend_log_loss", "market_log_loss", "gain_p_value", "fallback",
        "staking"}`` (just ``{"fallback": False, "staking"}`` when the check is off or
        there are too few days).

    Raises:
        ValueError: If ``validation_fraction`` or ``validation_alpha`` is out of (0, 1).
    """
    fraction = blend_params.get("validation_fraction")
    if not fraction:
        return {
            "fallback": False,
            "staking": _not_staked(
                "model_zoo.blend.validation_fraction is null: no validation races"
            ),
        }
    alpha = blend_params.get("validation_alpha")
    for name, value in (("validation_fraction", fraction), ("validation_alpha", alpha)):
        if value is not None and not 0.0 < float(value) < 1.0:
            raise ValueError(f"parameter model_zoo.blend.{name} must be in (0, 1), got {value}")
    days = compute_race_days(late)
    unique_days = np.sort(days.unique())
    cut_index = math.floor((1.0 - float(fraction)) * len(unique_days))
    if cut_index < 1 or cut_index >= len(unique_days):
        return {
            "fallback": False,
            "staking": _not_staked(
                f"{len(unique_days)} blend race days are too few for validation races"
            ),
        }
    fit_rows = late[days < unique_days[cut_index]]
    check = late[days >= unique_days[cut_index]]
    check = check[check.groupby("race_id")["won"].transform("sum") == 1]
    trial = BenterBlend(fund_col="p_fund", market_col="p_market").fit(fit_rows[columns])
    p_blend = np.asarray(trial.predict_proba(check[columns]), dtype=float)
    won = check["won"].to_numpy(dtype=float) == 1
    gain = np.log(p_blend[won]) - np.log(check["p_market"].to_numpy(dtype=float)[won])
    p_value = one_sided_p(gain)
    beats = gain.mean() > 0 and (alpha is None or p_value < float(alpha))
    return {
        "n_races": int(check["race_id"].nunique()),
        "blend_log_loss": float(-np.log(p_blend[won]).mean()),
        "market_log_loss": float(-np.log(check["p_market"].to_numpy(dtype=float)[won]).mean()),
        "gain_p_value": p_value,
        "fallback": not beats,
        "staking": {
            "fundamental": staking_validation(check, "p_fund"),
            "combined": staking_validation(check.assign(p_combined=p_blend), "p_combined"),
        },
    }


def _not_staked(reason: str) -> dict[str, dict[str, Any]]:
    """Staking validation of every track when there are no validation races."""
    return {track: not_assessed(reason) for track in TRACKS}


def one_sided_p(gain: np.ndarray) -> float:
    """One-sided paired t-test p-value of H0: mean(gain) <= 0 (1.0 when undefined)."""
    if len(gain) < 2 or not np.ptp(gain) > 0:
        return 1.0
    return float(stats.ttest_1samp(gain, 0.0, alternative="greater").pvalue)
