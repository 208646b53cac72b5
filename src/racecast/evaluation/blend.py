"""Benter (1994) blend of a fundamental model with the market, and its likelihood-ratio test.

The combined probability of runner ``i`` in race ``r`` is the conditional logit

    p_i = exp(a * log p_fund_i + b * log p_mkt_i) / sum_{j in r} exp(a * log p_fund_j + b * log p_mkt_j)

with ``(a, b)`` fit by maximum likelihood on races with exactly one winner. The market
alone is the special case ``a = 0, b = 1``. In the pipeline the market term is
``market_corrected`` and whether the blend ships is decided by rolling origin
(:mod:`racecast.evaluation.second_stage`, :mod:`racecast.evaluation.decision`).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from racecast.models.market import (
    RaceData,
    RaceGroups,
    fit_conditional_logit,
    single_winner_rows,
)

logger = logging.getLogger(__name__)

__all__ = ["BenterBlend", "likelihood_ratio_test"]


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
    if np.isfinite(values).all() and not ((values < 0) | (values > 1)).any():
        return np.log(np.clip(values, floor, 1.0))
    for j, name in enumerate(names):
        column = values[:, j]
        if not np.isfinite(column).all():
            raise ValueError(
                f"column '{name}' has {int((~np.isfinite(column)).sum())} missing values"
            )
        if (column < 0).any() or (column > 1).any():
            raise ValueError(f"column '{name}' has probabilities outside [0, 1]")
    return np.log(np.clip(values, floor, 1.0))


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
        self, X: pd.DataFrame | np.ndarray, groups: np.ndarray | RaceGroups | None
    ) -> tuple[np.ndarray, np.ndarray | RaceGroups]:
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
        groups = groups if isinstance(groups, RaceGroups) else np.asarray(groups)
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
        if not single_winner_rows(y, groups).any():
            raise ValueError(f"column '{self.won_col}': no race has exactly one winner")
        fitted = fit_conditional_logit(
            x, y, groups, np.array([0.0, 1.0]), max_iter=self.max_iter, tol=self.tol
        )
        self.coef_ = np.asarray(fitted["coef"])
        self.bse_ = np.asarray(fitted["bse"])
        self.n_iter_ = int(fitted["n_iter"])
        self.n_races_ = int(fitted["n_races"])
        self.log_likelihood_ = float(fitted["log_likelihood"])
        self.market_log_likelihood_ = float(fitted["start_log_likelihood"])
        self.lr_test_p_ = likelihood_ratio_test(self.log_likelihood_, self.market_log_likelihood_)
        logger.info(
            "BenterBlend: a=%.4f b=%.4f on %d races, LR test p=%.3g",
            *self.coef_,
            self.n_races_,
            self.lr_test_p_,
        )
        return self

    def predict_proba(
        self, X: pd.DataFrame | np.ndarray, groups: np.ndarray | RaceGroups | None = None
    ) -> pd.Series | np.ndarray:
        """Combined probabilities, normalised within each race.

        Args:
            X: A frame with ``fund_col``, ``market_col`` and ``race_col``, or an (n, 2)
                array of (fundamental, market) probabilities.
            groups: Race ids, or their :class:`~racecast.models.market.RaceGroups`
                (from ``race_col`` when ``X`` is a frame and None).

        Returns:
            A Series ``p_combined`` aligned to the frame's index, or a 1-D array in the
            order of the rows of ``X``.
        """
        if "coef_" not in self.__dict__:
            check_is_fitted(self, "coef_")
        x, groups = self._arrays(X, groups)
        data = RaceData(x, groups)
        p_sorted, _ = data.softmax(self.coef_)
        p = np.empty_like(p_sorted)
        p[data.order] = p_sorted
        if isinstance(X, pd.DataFrame):
            return pd.Series(p, index=X.index, name="p_combined")
        return p
