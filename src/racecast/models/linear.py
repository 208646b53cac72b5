"""Linear race models: the conditional (multinomial) logit and an L2 logistic regression."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from racecast.models.base import (
    ClassifierRaceModel,
    GroupLayout,
    RaceModel,
    fold_indicator_importance,
    imputed_feature_names,
    make_impute_scale,
    merge_params,
    segment_log_softmax,
    winner_weights,
)
from racecast.models.fastpath import logistic_positive_proba, transform

logger = logging.getLogger(__name__)


def conditional_logit_loss(
    beta: np.ndarray,
    Z: np.ndarray,
    weights: np.ndarray,
    race_weight: np.ndarray,
    layout: GroupLayout,
    alpha: float,
) -> tuple[float, np.ndarray]:
    """Penalised mean negative log-likelihood of the conditional logit and its gradient.

    ``loss = -(1/R) * sum_i w_i * log p_i + alpha/2 * |beta|^2`` with
    ``p_i = exp(z_i.beta) / sum_{j in race(i)} exp(z_j.beta)``, ``w_i`` the winner
    weights (:func:`~racecast.models.base.winner_weights`) and ``R`` the total race weight.
    The gradient is ``-(1/R) * Z^T (w - W_race * p) + alpha * beta`` where ``W_race`` is
    the race's total winner weight; everything is segment sums, no per-race loop.

    Args:
        beta: Coefficients, one per column of ``Z``.
        Z: Standardised design matrix, rows sorted by race.
        weights: Winner weight per row.
        race_weight: Total winner weight of each row's race (0 or 1), per row.
        layout: Row layout of ``Z``.
        alpha: L2 penalty strength.

    Returns:
        The loss and its gradient with respect to ``beta``.
    """
    total = max(float(weights.sum()), 1e-12)
    log_p = segment_log_softmax(Z @ beta, layout)
    loss = -float(weights @ log_p) / total + 0.5 * alpha * float(beta @ beta)
    grad = -(Z.T @ (weights - race_weight * np.exp(log_p))) / total + alpha * beta
    return loss, grad


def rank_stages(
    y: np.ndarray, relevance: np.ndarray | None, layout: GroupLayout, depth: int
) -> np.ndarray:
    """The stage at which each sorted row is chosen in an exploded (rank-ordered) logit.

    Stage 0 chooses the winners (``y == 1``; a dead heat chooses its winners together).
    Stages ``1 .. depth - 1`` choose, among the runners not yet chosen, those with the
    next-highest positive ``relevance`` of their race (runners sharing a relevance, e.g.
    a dead heat for a place, are chosen together). Everything else is never chosen.

    Args:
        y: 0/1 ``won`` per sorted row.
        relevance: Graded relevance per sorted row (higher = finished earlier; 0 =
            unplaced), or ``None`` (winners only).
        layout: The rows' :class:`GroupLayout`.
        depth: Number of stages (>= 1).

    Returns:
        Stage per sorted row (``0 .. depth - 1``), ``-1`` for rows never chosen.
    """
    stage = np.where(y == 1, 0, -1).astype(np.int64)
    if relevance is None or depth <= 1:
        return stage
    placed = (relevance > 0) & (y != 1)
    level = (
        pd.Series(np.where(placed, relevance, np.nan))
        .groupby(layout.codes)
        .rank(method="dense", ascending=False)
        .to_numpy()
    )
    later = placed & (level < depth)
    stage[later] = level[later].astype(np.int64)
    return stage


def exploded_logit_loss(
    beta: np.ndarray,
    Z: np.ndarray,
    stage: np.ndarray,
    layout: GroupLayout,
    alpha: float,
) -> tuple[float, np.ndarray]:
    """Penalised mean negative log-likelihood of the exploded (Plackett-Luce) logit.

    Stage ``s`` chooses its rows among the runners of the race not chosen at an
    earlier stage, with the conditional logit's probabilities; the loss is the mean
    over every (race, stage) choice of ``-log p`` (rows chosen together, e.g. dead
    heats, split the choice's unit weight) plus ``alpha/2 * |beta|^2``. With one stage
    it equals :func:`conditional_logit_loss`.

    Args:
        beta: Coefficients, one per column of ``Z``.
        Z: Standardised design matrix, rows sorted by race.
        stage: Stage of each row (:func:`rank_stages`; ``-1`` = never chosen).
        layout: Row layout of ``Z``.
        alpha: L2 penalty strength.

    Returns:
        The loss and its gradient with respect to ``beta``.
    """
    z = Z @ beta
    residual = np.zeros(len(z))
    log_lik = 0.0
    total = 0.0
    for s in range(int(stage.max()) + 1):
        chosen = (stage == s).astype(np.float64)
        n_chosen = np.add.reduceat(chosen, layout.starts)
        weights = chosen / np.where(n_chosen > 0, n_chosen, 1.0)[layout.codes]
        race_weight = (n_chosen > 0).astype(np.float64)[layout.codes]
        remaining = (stage == -1) | (stage >= s)
        masked = np.where(remaining, z, -np.inf)
        maxima = np.maximum.reduceat(masked, layout.starts)
        maxima = np.where(np.isfinite(maxima), maxima, 0.0)[layout.codes]
        e = np.where(remaining, np.exp(np.where(remaining, z, 0.0) - maxima), 0.0)
        sums = np.add.reduceat(e, layout.starts)
        sums = np.where(sums > 0, sums, 1.0)[layout.codes]
        log_p = np.where(remaining, z - maxima - np.log(sums), 0.0)
        log_lik += float(weights @ log_p)
        residual += weights - race_weight * e / sums
        total += float(weights.sum())
    total = max(total, 1e-12)
    loss = -log_lik / total + 0.5 * alpha * float(beta @ beta)
    grad = -(Z.T @ residual) / total + alpha * beta
    return loss, grad


class ConditionalLogit(RaceModel):
    """Bolton-Chapman / Benter conditional (multinomial) logit.

    ``p_i = exp(x_i.beta) / sum_{j in race} exp(x_j.beta)``, fit by penalised maximum
    likelihood with L-BFGS and an analytic gradient. Features are median-imputed (with
    missing indicators) and standardised inside, on training statistics. There is no
    intercept: a constant shifts every runner of a race equally and cancels out.

    Dead heats: each of a race's ``k`` winners contributes ``log p_i`` with weight ``1/k``,
    so every race with a result carries unit weight; races without a winner contribute
    nothing to the likelihood.

    With ``rank_depth > 1`` and a graded ``relevance`` (:func:`~racecast.models.base.
    relevance_from_position`), the likelihood is the exploded (rank-ordered,
    Plackett-Luce) logit of the first ``rank_depth`` places: the winner is chosen from
    the field, the runner-up from the rest, and so on (:func:`exploded_logit_loss`).
    The places carry the same utilities as the win, so they add information about the
    coefficients; ``alpha`` then applies to the mean log-likelihood per choice. The
    relevance must reach that deep (``relevance_top >= rank_depth``) for every place to
    count. The prediction is unchanged: the softmax of the utilities over the field.

    Args:
        alpha: L2 penalty on the standardised coefficients (applied to the *mean*
            per-race log-likelihood, so its effect does not shrink with more races).
        max_iter: L-BFGS iteration cap.
        tol: L-BFGS gradient tolerance (``gtol``).
        rank_depth: Places whose order the likelihood uses (1 = the winner only; needs
            ``relevance`` for more).

    Attributes:
        coef_: Coefficient per transformed feature (features, then ``missing:<name>``
            indicators) in raw feature units (per unit of the imputed input).
        coef_standardised_: The same coefficients per standard deviation.
        preprocessor_: The fitted impute + scale pipeline.
        n_iter_: L-BFGS iterations used.
    """

    probability_method: ClassVar[str] = "softmax"

    def __init__(
        self, alpha: float = 1e-3, max_iter: int = 500, tol: float = 1e-7, rank_depth: int = 1
    ) -> None:
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.rank_depth = rank_depth

    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        if self.alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {self.alpha}")
        if int(self.rank_depth) < 1:
            raise ValueError(f"rank_depth must be at least 1, got {self.rank_depth}")
        pre = make_impute_scale()
        Z = pre.fit_transform(X)
        if int(self.rank_depth) > 1 and relevance is not None:
            stage = rank_stages(y, relevance, layout, int(self.rank_depth))
            loss, args = exploded_logit_loss, (Z, stage, layout, float(self.alpha))
        else:
            weights = winner_weights(y, layout)
            race_weight = np.add.reduceat(weights, layout.starts)[layout.codes]
            loss = conditional_logit_loss
            args = (Z, weights, race_weight, layout, float(self.alpha))
        result = minimize(
            loss,
            np.zeros(Z.shape[1]),
            args=args,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": int(self.max_iter), "gtol": float(self.tol)},
        )
        if not result.success:
            logger.warning("ConditionalLogit: L-BFGS did not converge: %s", result.message)
        names = imputed_feature_names(pre.named_steps["impute"], self.feature_names_in_)
        beta = np.asarray(result.x, dtype=np.float64)
        scale = pre.named_steps["scale"].scale_
        self.preprocessor_ = pre
        self.coef_standardised_ = pd.Series(beta, index=names, name="coef_standardised")
        self.coef_ = pd.Series(beta / scale, index=names, name="coef")
        self.n_iter_ = int(result.nit)
        self.train_loss_ = float(result.fun)

    def _score_sorted(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        return transform(self.preprocessor_, X) @ self.coef_standardised_.to_numpy()

    def _importance_values(self) -> Mapping[str, float]:
        coef = self.coef_standardised_
        return fold_indicator_importance(np.abs(coef.to_numpy()), list(coef.index))


class LogisticModel(ClassifierRaceModel):
    """L2 logistic regression on ``won`` with imputed, standardised features.

    Probabilities are the per-race normalisation of ``P(won=1 | x)``.

    Args:
        C: Inverse L2 regularisation strength (sklearn's ``C``).
        max_iter: Solver iteration cap.
        class_weight: sklearn ``class_weight`` (``None`` or ``"balanced"``).
        model_params: Extra keyword arguments for ``sklearn.linear_model.LogisticRegression``.

    Attributes:
        pipeline_: The fitted impute -> scale -> logistic-regression pipeline.
    """

    def __init__(
        self,
        C: float = 1.0,
        max_iter: int = 1000,
        class_weight: str | None = None,
        model_params: dict[str, Any] | None = None,
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.model_params = model_params

    def _fit_classifier(self, X: np.ndarray, y: np.ndarray) -> None:
        params = merge_params(
            {"C": self.C, "max_iter": self.max_iter, "class_weight": self.class_weight},
            self.model_params,
            type(self).__name__,
        )
        pipe = Pipeline([("prep", make_impute_scale()), ("clf", LogisticRegression(**params))])
        self.pipeline_ = pipe.fit(X, y)

    def _positive_proba(self, X: np.ndarray) -> np.ndarray:
        return logistic_positive_proba(self.pipeline_, X)

    def _importance_values(self) -> Mapping[str, float]:
        imputer = self.pipeline_.named_steps["prep"].named_steps["impute"]
        names = imputed_feature_names(imputer, self.feature_names_in_)
        coef = np.abs(self.pipeline_.named_steps["clf"].coef_[0])
        return fold_indicator_importance(coef, names)
