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


class ConditionalLogit(RaceModel):
    """Bolton-Chapman / Benter conditional (multinomial) logit.

    ``p_i = exp(x_i.beta) / sum_{j in race} exp(x_j.beta)``, fit by penalised maximum
    likelihood with L-BFGS and an analytic gradient. Features are median-imputed (with
    missing indicators) and standardised inside, on training statistics. There is no
    intercept: a constant shifts every runner of a race equally and cancels out.

    Dead heats: each of a race's ``k`` winners contributes ``log p_i`` with weight ``1/k``,
    so every race with a result carries unit weight; races without a winner contribute
    nothing to the likelihood.

    Args:
        alpha: L2 penalty on the standardised coefficients (applied to the *mean*
            per-race log-likelihood, so its effect does not shrink with more races).
        max_iter: L-BFGS iteration cap.
        tol: L-BFGS gradient tolerance (``gtol``).

    Attributes:
        coef_: Coefficient per transformed feature (features, then ``missing:<name>``
            indicators) in raw feature units (per unit of the imputed input).
        coef_standardised_: The same coefficients per standard deviation.
        preprocessor_: The fitted impute + scale pipeline.
        n_iter_: L-BFGS iterations used.
    """

    probability_method: ClassVar[str] = "softmax"

    def __init__(self, alpha: float = 1e-3, max_iter: int = 500, tol: float = 1e-7) -> None:
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol

    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        if self.alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {self.alpha}")
        pre = make_impute_scale()
        Z = pre.fit_transform(X)
        weights = winner_weights(y, layout)
        race_weight = np.add.reduceat(weights, layout.starts)[layout.codes]
        result = minimize(
            conditional_logit_loss,
            np.zeros(Z.shape[1]),
            args=(Z, weights, race_weight, layout, float(self.alpha)),
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
