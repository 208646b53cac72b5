"""The market as a model: per-race conditional logit on the market's own log-probability.

``market_corrected`` is the combined track's baseline and its market term. The
protocol's plain ``market`` (normalised ``1 / odds``) is taken at face value; this model
re-weights it per race as

    p_i = exp(theta . t_i) / sum_{j in r} exp(theta . t_j)

where ``t_i`` are the terms of :data:`MARKET_TERMS` (``log p``, ``(log p)^2``, the
odds-cap flag, ...) computed from the plain market probability ``p`` of runner ``i``.
``theta = (1, 0, 0, ...)`` is the plain market. The fit is maximum likelihood on races
with exactly one winner (L-BFGS with the analytic gradient); the same solver fits the
Benter blend (:class:`racecast.evaluation.blend.BenterBlend`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import optimize
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from racecast.data.races import race_code_array

logger = logging.getLogger(__name__)

__all__ = [
    "MARKET_TERMS",
    "MarketCorrection",
    "RaceData",
    "RaceGroups",
    "fit_conditional_logit",
    "single_winner_rows",
]

PROB_FLOOR = 1e-12


def _log_p(p: np.ndarray, capped: np.ndarray, field: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, PROB_FLOOR, 1.0))


#: Term name -> function of (plain market probability, cap flag 0/1, field size) per
#: runner. ``log_p``: the market's log-probability (its coefficient is the market's
#: "temperature"); ``log_p_sq``: its square (a favourite-longshot bend); ``capped``: the
#: price is at the source's display cap (Hong Kong's 99: such runners win less often than
#: 1/99 implies); ``log_p_by_field``: ``log p`` times ``log(field size)`` (a temperature
#: that changes with the number of runners; kept only when it earns its place, see
#: :func:`racecast.evaluation.second_stage.select_market_terms`).
MARKET_TERMS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "log_p": _log_p,
    "log_p_sq": lambda p, c, f: _log_p(p, c, f) ** 2,
    "capped": lambda p, c, f: c.astype(float),
    "log_p_by_field": lambda p, c, f: _log_p(p, c, f) * np.log(np.maximum(f, 1.0)),
}


class RaceGroups:
    """The races of a set of rows, worked out once: every per-race step of a prediction
    (market terms, market correction, blend) reads the same one instead of re-coding the
    race ids.

    Attributes:
        codes: Race code per row (:func:`~racecast.data.races.race_code_array`).
        order: Stable sort of the rows by race.
        starts: Position of each race's first row in the sorted rows.
        lengths: Runners per race, in sorted order.
    """

    def __init__(self, groups: np.ndarray) -> None:
        self.codes = race_code_array(groups, "groups")
        self.order = np.argsort(self.codes, kind="mergesort")
        sorted_codes = self.codes[self.order]
        # np.concatenate, not np.r_ (whose indexing machinery costs ~5 us a call)
        self.starts = np.flatnonzero(
            np.concatenate(([True], sorted_codes[1:] != sorted_codes[:-1]))
        )
        self.lengths = np.concatenate((self.starts[1:], [len(sorted_codes)])) - self.starts

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @classmethod
    def of(cls, groups: RaceGroups | np.ndarray) -> RaceGroups:
        """``groups`` when already a :class:`RaceGroups`, else the races of these race ids."""
        return groups if isinstance(groups, RaceGroups) else cls(np.asarray(groups))


class RaceData:
    """Per-runner terms sorted by race, with the race boundaries (for per-race softmax).

    ``groups``: the race ids of the rows, or their :class:`RaceGroups`.
    """

    def __init__(self, x: np.ndarray, groups: RaceGroups | np.ndarray) -> None:
        races = RaceGroups.of(groups)
        self.order = races.order
        self.x = x[self.order]
        self.starts = races.starts
        self.lengths = races.lengths

    def softmax(
        self, theta: np.ndarray, offset: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-race probabilities (sorted order) and per-race log-sum-exp of the utilities."""
        u = self.x @ theta
        if offset is not None:
            u = u + offset
        peak = np.maximum.reduceat(u, self.starts)
        e = np.exp(u - np.repeat(peak, self.lengths))
        total = np.add.reduceat(e, self.starts)
        return e / np.repeat(total, self.lengths), peak + np.log(total)

    def unsort(self, values: np.ndarray) -> np.ndarray:
        """Values of the sorted rows back in input order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out


def single_winner_rows(won: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of races with exactly one winner."""
    codes = race_code_array(groups, "groups")
    winners = np.bincount(codes, weights=np.asarray(won, dtype=float))
    return winners[codes] == 1


def fit_conditional_logit(
    x: np.ndarray,
    won: np.ndarray,
    groups: np.ndarray,
    start: np.ndarray,
    *,
    max_iter: int = 500,
    tol: float = 1e-8,
) -> dict[str, object]:
    """Maximum-likelihood conditional logit ``softmax_race(x @ theta)`` on single-winner races.

    Args:
        x: (n, k) terms per runner.
        won: 0/1 winners.
        groups: Race ids.
        start: Starting ``theta`` (k,).
        max_iter: Maximum optimiser iterations.
        tol: Tolerance on the projected gradient.

    Returns:
        ``{"coef", "bse", "log_likelihood", "start_log_likelihood", "n_races", "n_iter"}``.

    Raises:
        ValueError: If no race has exactly one winner.
        RuntimeError: If the optimiser fails.
    """
    keep = single_winner_rows(won, groups)
    n_dropped = int(pd.Series(groups[~keep]).nunique())
    if n_dropped:
        logger.info("conditional logit: dropped %d races without exactly one winner", n_dropped)
    if not keep.any():
        raise ValueError("no race has exactly one winner")
    data = RaceData(x[keep], groups[keep])
    is_winner = np.asarray(won, dtype=float)[keep][data.order] == 1
    winner_x_sum = data.x[is_winner].sum(axis=0)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        p, lse = data.softmax(theta)
        expected = (p[:, None] * data.x).sum(axis=0)
        return float(lse.sum() - winner_x_sum @ theta), expected - winner_x_sum

    start = np.asarray(start, dtype=float)
    result = optimize.minimize(
        objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "gtol": tol}
    )
    if not result.success:
        raise RuntimeError(f"conditional logit did not converge: {result.message}")
    return {
        "coef": result.x,
        "bse": _standard_errors(data, result.x),
        "log_likelihood": -float(result.fun),
        "start_log_likelihood": -objective(start)[0],
        "n_races": len(data.starts),
        "n_iter": int(result.nit),
    }


def _standard_errors(data: RaceData, theta: np.ndarray) -> np.ndarray:
    """Square roots of the diagonal of the inverse observed information at ``theta``."""
    p, _ = data.softmax(theta)
    mean_x = np.add.reduceat(p[:, None] * data.x, data.starts)
    second = np.add.reduceat(
        p[:, None, None] * data.x[:, :, None] * data.x[:, None, :], data.starts
    )
    information = (second - mean_x[:, :, None] * mean_x[:, None, :]).sum(axis=0)
    try:
        return np.sqrt(np.diag(np.linalg.inv(information)))
    except np.linalg.LinAlgError:
        logger.warning("conditional logit: singular information matrix, standard errors are NaN")
        return np.full(len(theta), np.nan)


def market_terms(
    terms: Sequence[str],
    p_market: np.ndarray,
    capped: np.ndarray,
    groups: RaceGroups | np.ndarray,
) -> np.ndarray:
    """(n, len(terms)) matrix of the named :data:`MARKET_TERMS` (``groups``: race ids or
    their :class:`RaceGroups`)."""
    unknown = [t for t in terms if t not in MARKET_TERMS]
    if unknown:
        raise ValueError(f"unknown market terms {unknown}; known: {sorted(MARKET_TERMS)}")
    p = np.asarray(p_market, dtype=float)
    if not np.isfinite(p).all():
        raise ValueError(f"p_market has {int((~np.isfinite(p)).sum())} missing values")
    codes = RaceGroups.of(groups).codes
    field = np.bincount(codes)[codes].astype(float)
    flag = np.nan_to_num(np.asarray(capped, dtype=float), nan=0.0)
    return np.column_stack([MARKET_TERMS[t](p, flag, field) for t in terms])


class MarketCorrection(BaseEstimator):
    """Conditional logit of the plain market probability on :data:`MARKET_TERMS`.

    Args:
        terms: Names of the terms (``log_p`` first: it starts at 1, the others at 0, so
            the optimiser starts from the plain market).
        max_iter: Maximum optimiser iterations.

    Attributes:
        coef_: One fitted value per term.
        bse_: Their standard errors (observed information); NaN for a term that is 0
            on every fit runner (fixed at 0, e.g. ``capped`` without capped prices).
        log_likelihood_: Maximised log-likelihood; ``market_log_likelihood_``: the plain
            market's on the same races.
        n_races_: Single-winner races fitted.
    """

    def __init__(self, terms: Sequence[str] = ("log_p", "log_p_sq", "capped"), max_iter: int = 500):
        self.terms = terms
        self.max_iter = max_iter

    def fit(
        self, p_market: np.ndarray, capped: np.ndarray, won: np.ndarray, groups: np.ndarray
    ) -> MarketCorrection:
        """Fit the coefficients on the single-winner races of the given runners."""
        terms = list(self.terms)
        if not terms or terms[0] != "log_p":
            raise ValueError(f"terms must start with 'log_p', got {terms}")
        groups = np.asarray(groups)
        x = market_terms(terms, p_market, capped, groups)
        # a term that is 0 on every fit runner (no capped price) carries no information
        active = np.flatnonzero((x != 0).any(axis=0))
        for j in np.setdiff1d(np.arange(len(terms)), active):
            logger.info("market correction: term %s is 0 on every runner: fixed at 0", terms[j])
        start = (np.array(terms)[active] == "log_p").astype(float)
        fitted = fit_conditional_logit(
            x[:, active], np.asarray(won), groups, start, max_iter=self.max_iter
        )
        self.coef_ = np.zeros(len(terms))
        self.bse_ = np.full(len(terms), np.nan)
        self.coef_[active] = fitted["coef"]
        self.bse_[active] = fitted["bse"]
        self.log_likelihood_ = float(fitted["log_likelihood"])
        self.market_log_likelihood_ = float(fitted["start_log_likelihood"])
        self.n_races_ = int(fitted["n_races"])
        logger.info(
            "market correction on %d races: %s (LL %.2f vs plain market %.2f)",
            self.n_races_,
            ", ".join(f"{t}={c:.4f}" for t, c in zip(terms, self.coef_, strict=True)),
            self.log_likelihood_,
            self.market_log_likelihood_,
        )
        return self

    def utility(
        self, p_market: np.ndarray, capped: np.ndarray, groups: RaceGroups | np.ndarray
    ) -> np.ndarray:
        """Per-runner linear predictor ``theta . t`` (log-probability up to a per-race constant)."""
        if "coef_" not in self.__dict__:
            check_is_fitted(self, "coef_")
        return market_terms(list(self.terms), p_market, capped, RaceGroups.of(groups)) @ self.coef_

    def predict_proba(
        self, p_market: np.ndarray, capped: np.ndarray, groups: RaceGroups | np.ndarray
    ) -> np.ndarray:
        """Corrected market probabilities, normalised per race, in input order
        (``groups``: race ids or their :class:`RaceGroups`)."""
        groups = RaceGroups.of(groups)
        u = self.utility(p_market, capped, groups)
        data = RaceData(u[:, None], groups)
        p, _ = data.softmax(np.ones(1))
        return data.unsort(p)

    def describe(self) -> dict[str, dict[str, float]]:
        """``{term: {"coef", "se"}}`` of the fitted terms (for the report)."""
        check_is_fitted(self, "coef_")
        return {
            t: {"coef": float(c), "se": float(s)}
            for t, c, s in zip(self.terms, self.coef_, self.bse_, strict=True)
        }
