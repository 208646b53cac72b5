"""Stacked meta-learner on the base models' out-of-fold probabilities.

The input is a runner-level frame whose columns starting with ``base_prefix`` (``p_``
by default, e.g. ``p_clogit``, ``p_lgbm``) hold the base models' out-of-fold win
probabilities (:func:`racecast.models.oof.out_of_fold_predictions`, NaN rows dropped);
every other column is an original feature offered to stage B only.

**Stage A** (linear pooling and calibration). An L1-penalised logistic regression
(liblinear; ``l1_ratio=1``, scikit-learn 1.8+'s spelling of ``penalty="l1"``) on ``won``
with the base models' log-probabilities ``log(clip(p, prob_floor, 1))`` as features,
centred on their training means so that the (penalised) intercept only carries the base
rate. The features are left in natural units: they are all log-probabilities, so the
L1 penalty treats them alike and the coefficients read as Benter-style exponents. Its
linear score goes through an isotonic map (``IsotonicRegression(out_of_bounds="clip")``)
whose block rates are shrunk towards the logistic probability by a Beta prior of
``calibration_prior`` pseudo-runners (plain isotonic regression gives a block without a
winner a rate of exactly 0, so a later winner there would only get the floor). The map's
output is floored at ``prob_floor`` and normalised within each race: that is the stage A
probability ``p_A``.

**Stage B** (non-linear correction). A LightGBM ``lambdarank`` ranker on
``[log p_A, base log-probabilities, original features]`` (relevance = ``won`` or the
graded relevance passed to ``fit``). Its score ``s`` is an uncalibrated utility, so it is
turned into a probability by a two-parameter conditional logit
``p = exp(a log p_A + b s) / sum_race exp(a log p_A + b s)`` fitted by maximum
likelihood. The conditional logit nests stage A (``a = 1, b = 0``), so stage B can only
move away from stage A as far as the likelihood of out-of-sample scores supports.

**Calibration without in-sample fitting: cross-fitting by race.** ``fit`` receives no
time stamps (its rows are already out-of-fold base predictions, and the result must not
depend on row order), so instead of a time-ordered split it cross-fits: races are
dealt into ``n_folds`` folds by a seeded permutation of the *sorted* race ids. For each
fold, a logistic regression fitted on the other folds scores the fold; the isotonic map
is fitted on these cross-fitted scores (never on scores of a model that saw the row).
The fold regressions use ``C * n_rows / n_fold_rows`` so that their penalty per runner,
hence their shrinkage and the scale of their scores, matches the deployed all-rows fit
that the isotonic map is later applied to.
Likewise, each fold's ranker is fitted on the other folds (with cross-fitted ``log p_A``
as a feature) and scores the fold, and ``(a, b)`` is fitted on the cross-fitted
``(log p_A, s)``. The deployed logistic regression and ranker are then refitted on all
rows (as ``CalibratedClassifierCV(ensemble=False)`` does). Every row serves both for
fitting and calibration. Two second-order leaks are accepted: the isotonic map sees the
row whose stage-B feature it helps build, and each fold's ranker is trained on
cross-fitted stage-A features whose regressions saw the scored fold; both are low-capacity
maps fitted on many races. The protocol's guarantee is unaffected: the holdout is never
seen, and base-model inputs are walk-forward out-of-fold.

**Row-order invariance.** ``fit`` re-sorts rows canonically (race ids sorted, runners
by their feature values), so the fitted model does not depend on the order of the rows.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import special
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from racecast.models.base import (
    GroupLayout,
    RaceModel,
    aligned_series,
    group_layout,
    merge_params,
    segment_log_softmax,
    winner_weights,
)
from racecast.models.fastpath import booster_predict, decision_function, isotonic_predict
from racecast.models.linear import conditional_logit_loss

logger = logging.getLogger(__name__)

__all__ = ["StackedMetaLearner", "STAGE_A_FEATURE"]

#: Name of the stage-B feature holding stage A's per-race log-probability.
STAGE_A_FEATURE = "stage_a_log_p"

#: Size of LightGBM's default ``label_gain`` (relevance labels must stay below it).
_LGBM_LABEL_GAIN_SIZE = 31


def _log_loss(log_p: np.ndarray, y: np.ndarray, layout: GroupLayout) -> float:
    """Mean per-race ``-log p_winner`` (dead-heat winners share the race's unit weight)."""
    weights = winner_weights(y, layout)
    return float(-(weights @ log_p) / max(weights.sum(), 1e-12))


class StackedMetaLearner(RaceModel):
    """Two-stage stacked meta-learner: calibrated L1 logistic pool, then a ranker.

    See the module docstring for the model and the cross-fitting scheme. Follows the
    :class:`~racecast.models.base.RaceModel` contract: ``fit(X, y, groups, relevance)``,
    ``decision_function`` (the final utility) and ``predict_proba`` (its per-race
    softmax), rows in any order.

    Args:
        C: Inverse L1 strength of the stage A logistic regression (sklearn's ``C``; it
            multiplies the *summed* log loss, so the same ``C`` penalises relatively less
            as the number of runners grows).
        prob_floor: Floor on the base probabilities before the log, and on the isotonic
            output before the per-race normalisation; in (0, 1).
        calibration_prior: Pseudo-runners of the Beta prior that shrinks each isotonic
            block's win rate towards the logistic regression's own probability (>= 0;
            0 gives plain isotonic regression).
        n_folds: Race folds of the internal cross-fitting (>= 2).
        use_stage_b: Fit and apply stage B; when False the output is stage A's.
        base_prefix: Columns whose name starts with this are base-model probabilities.
        max_iter: Iteration cap of the logistic regression (liblinear).
        n_estimators: Stage B boosting rounds.
        learning_rate: Stage B shrinkage.
        num_leaves: Stage B maximum leaves per tree.
        min_child_samples: Stage B minimum rows per leaf.
        ranker_params: Extra keyword arguments for ``lightgbm.LGBMRanker``.
        n_jobs: LightGBM threads.
        random_state: Seed of the race-fold permutation, liblinear and LightGBM.

    Attributes:
        base_columns_: Base probability columns (in ``feature_names_in_`` order).
        extra_columns_: Original feature columns (stage B only).
        stage_a_: Fitted ``Pipeline(center -> LogisticRegression)`` on log-probabilities.
        stage_a_coef_: Stage A coefficient per base column (Series).
        isotonic_: Fitted ``IsotonicRegression`` from stage A score to P(won).
        ranker_: Fitted ``lightgbm.LGBMRanker`` (only with ``use_stage_b``).
        stage_b_features_: Stage B input names (only with ``use_stage_b``).
        coef_: ``array([a, b])`` of ``exp(a log p_A + b s)`` (only with ``use_stage_b``).
        cv_log_loss_: Cross-fitted mean per-race log loss of ``"stage_a"`` and, with
            stage B, ``"stacked"``.
        n_races_: Races fitted.
    """

    probability_method: ClassVar[str] = "softmax"

    def __init__(
        self,
        C: float = 0.01,
        prob_floor: float = 1e-6,
        calibration_prior: float = 20.0,
        n_folds: int = 5,
        use_stage_b: bool = True,
        base_prefix: str = "p_",
        max_iter: int = 1000,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 50,
        ranker_params: dict[str, Any] | None = None,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.prob_floor = prob_floor
        self.calibration_prior = calibration_prior
        self.n_folds = n_folds
        self.use_stage_b = use_stage_b
        self.base_prefix = base_prefix
        self.max_iter = max_iter
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.ranker_params = ranker_params
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ public API
    def stage_a_proba(self, X: pd.DataFrame, groups: pd.Series) -> np.ndarray:
        """Stage A probability of each runner (calibrated pool, normalised per race).

        Args:
            X: Frame with (at least) the columns seen in ``fit``.
            groups: Race id of each row.

        Returns:
            One probability per row of ``X`` (input order), summing to one per race.
        """
        check_is_fitted(self, "isotonic_")
        columns = self._check_frame(X, fitting=False)
        layout = group_layout(aligned_series(groups, X, "groups"))
        features = self._extract(X, columns)[layout.order]
        return np.exp(self._stage_a_log_proba(features, layout))[layout.inverse]

    # --------------------------------------------------------------- RaceModel hooks
    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        self._check_params()
        names = [str(c) for c in self.feature_names_in_]
        base_idx = [j for j, c in enumerate(names) if c.startswith(self.base_prefix)]
        if not base_idx:
            raise ValueError(
                f"X has no base probability column (no name starts with base_prefix "
                f"{self.base_prefix!r}); columns: {names}"
            )
        extra_idx = [j for j in range(len(names)) if j not in base_idx]
        self.base_columns_ = [names[j] for j in base_idx]
        self.extra_columns_ = [names[j] for j in extra_idx]

        X, y, relevance, layout = self._canonical(X, y, relevance, layout)
        if layout.n_groups < self.n_folds:
            raise ValueError(f"n_folds={self.n_folds} exceeds the {layout.n_groups} races in X")
        rng = np.random.default_rng(self.random_state)
        race_fold = np.empty(layout.n_groups, dtype=np.int64)
        race_fold[rng.permutation(layout.n_groups)] = np.arange(layout.n_groups) % self.n_folds
        fold = race_fold[layout.codes]
        self.n_races_ = layout.n_groups

        # Stage A: cross-fitted scores -> isotonic map; deployed regression on all rows.
        log_base = self._log_base(X)
        cf_score = np.empty(len(y))
        for k in range(self.n_folds):
            train, held = fold != k, fold == k
            if y[train].min() == y[train].max():
                raise ValueError(f"y: cross-fitting fold {k} trains on a single class")
            # C multiplies the summed loss: rescale it so the penalty per runner (hence the
            # shrinkage and the scale of the scores) matches the deployed all-rows fit.
            fold_C = self.C * len(y) / int(train.sum())
            cf_score[held] = (
                self._new_stage_a(fold_C)
                .fit(log_base[train], y[train])
                .decision_function(log_base[held])
            )
        self.isotonic_ = self._fit_isotonic(cf_score, y)
        self.stage_a_ = self._new_stage_a(self.C).fit(log_base, y)
        self.stage_a_coef_ = pd.Series(
            self.stage_a_[-1].coef_[0], index=self.base_columns_, name="stage_a_coef"
        )
        cf_log_pa = self._calibrated_log_proba(cf_score, layout)
        self.cv_log_loss_ = {"stage_a": _log_loss(cf_log_pa, y, layout)}
        logger.info(
            "StackedMetaLearner stage A on %d races: coef %s, cross-fitted log loss %.4f",
            layout.n_groups,
            self.stage_a_coef_.round(4).to_dict(),
            self.cv_log_loss_["stage_a"],
        )
        if not self.use_stage_b:
            return

        # Stage B: cross-fitted ranker scores -> conditional logit (a, b); ranker on all rows.
        features = self._stage_b_features(cf_log_pa, log_base, X)
        labels = (y if relevance is None else relevance).astype(np.int64)
        params = self._ranker_params()
        gain_size = len(params.get("label_gain") or range(_LGBM_LABEL_GAIN_SIZE))
        if labels.max() >= gain_size:
            raise ValueError(
                f"relevance max {labels.max()} exceeds LightGBM's label_gain size {gain_size}; "
                "cap the relevance or pass a longer label_gain in ranker_params"
            )
        cf_rank = np.empty(len(y))
        for k in range(self.n_folds):
            train, held = fold != k, fold == k
            ranker = self._fit_ranker(params, features[train], labels[train], layout.codes[train])
            cf_rank[held] = ranker.predict(features[held])
        self.coef_ = self._fit_blend(cf_log_pa, cf_rank, y, layout)
        self.ranker_ = self._fit_ranker(params, features, labels, layout.codes)
        self.stage_b_features_ = [STAGE_A_FEATURE, *self.base_columns_, *self.extra_columns_]
        self.cv_log_loss_["stacked"] = _log_loss(self._blend(cf_log_pa, cf_rank, layout), y, layout)
        logger.info(
            "StackedMetaLearner stage B: a=%.4f b=%.4f, cross-fitted log loss %.4f (stage A %.4f)",
            *self.coef_,
            self.cv_log_loss_["stacked"],
            self.cv_log_loss_["stage_a"],
        )

    def _score_sorted(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        log_pa = self._stage_a_log_proba(X, layout)
        if not self.use_stage_b:
            return log_pa
        if "ranker_" not in self.__dict__:
            check_is_fitted(self, "ranker_")
        features = self._stage_b_features(log_pa, self._log_base(X), X)
        return self.coef_[0] * log_pa + self.coef_[1] * booster_predict(self.ranker_, features)

    @property
    def importance_kind(self) -> str:  # type: ignore[override]
        """What :meth:`importance` measures: stage B's split gain or ``|stage A coef|``."""
        return "stage B total split gain" if self.use_stage_b else "|stage A coefficient|"

    def _importance_values(self) -> dict[str, float]:
        """Stage B gain per input column when fitted with it, else ``|stage A coef|``."""
        if not self.use_stage_b:
            return {name: abs(float(v)) for name, v in self.stage_a_coef_.items()}
        gain = self.ranker_.booster_.feature_importance(importance_type="gain")
        return {
            name: float(value)
            for name, value in zip(self.stage_b_features_, gain, strict=True)
            if name != STAGE_A_FEATURE
        }

    # ------------------------------------------------------------------- internals
    def _check_params(self) -> None:
        if not self.C > 0:
            raise ValueError(f"C must be positive, got {self.C}")
        if not 0.0 < self.prob_floor < 1.0:
            raise ValueError(f"prob_floor must be in (0, 1), got {self.prob_floor}")
        if not self.calibration_prior >= 0:
            raise ValueError(f"calibration_prior must be >= 0, got {self.calibration_prior}")
        if int(self.n_folds) != self.n_folds or self.n_folds < 2:
            raise ValueError(f"n_folds must be an integer >= 2, got {self.n_folds}")
        if not self.base_prefix:
            raise ValueError("base_prefix must be a non-empty string")

    def _canonical(
        self,
        X: np.ndarray,
        y: np.ndarray,
        relevance: np.ndarray | None,
        layout: GroupLayout,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, GroupLayout]:
        """Re-sort rows by (sorted race id, feature values, labels): an order-free layout."""
        try:
            race_rank = pd.factorize(layout.race_ids, sort=True)[0]
        except TypeError as error:
            raise ValueError(f"groups: race ids must be mutually sortable ({error})") from error
        race_key = race_rank[layout.codes]
        keys = [y] + ([] if relevance is None else [relevance])
        keys += [X[:, j] for j in range(X.shape[1] - 1, -1, -1)] + [race_key]
        order = np.lexsort(keys)
        canonical = group_layout(race_key[order])
        return (
            X[order],
            y[order],
            None if relevance is None else relevance[order],
            canonical,
        )

    def _log_base(self, X: np.ndarray) -> np.ndarray:
        """``log(clip(p, prob_floor, 1))`` of the base columns, validated."""
        base = X[:, self._column_index(self.base_columns_)]
        if not np.isfinite(base).all() or ((base < 0) | (base > 1)).any():
            bad = ~np.isfinite(base).all(axis=0) | (base < 0).any(axis=0) | (base > 1).any(axis=0)
            columns = [self.base_columns_[j] for j in np.flatnonzero(bad)]
            raise ValueError(
                f"base probability columns {columns} have missing values or values outside "
                "[0, 1] (drop the rows without out-of-fold predictions first)"
            )
        return np.log(np.clip(base, self.prob_floor, 1.0))

    def _new_stage_a(self, C: float) -> Pipeline:
        """Centring + L1 logistic regression (liblinear) with inverse strength ``C``."""
        classifier = LogisticRegression(
            C=C,
            l1_ratio=1.0,
            solver="liblinear",
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        return Pipeline([("center", StandardScaler(with_std=False)), ("logistic", classifier)])

    def _fit_isotonic(self, score: np.ndarray, y: np.ndarray) -> IsotonicRegression:
        """Isotonic map from cross-fitted scores to P(won), its blocks shrunk to a prior.

        Plain isotonic regression estimates each block by its win rate, which is 0 for a
        low-score block without a winner (a later winner there would get the floor) and
        1 for a one-runner top block that won. Each block's rate is therefore replaced
        by the Beta-binomial posterior mean ``(wins + k * prior) / (runners + k)`` with
        ``k = calibration_prior`` and ``prior`` the block's mean logistic probability
        ``sigmoid(score)``; large blocks keep their empirical rate. A second isotonic
        fit on the smoothed rates restores monotonicity and gives the deployed map.
        """
        raw = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(score, y)
        _, block = np.unique(raw.predict(score), return_inverse=True)
        runners = np.bincount(block).astype(np.float64)
        wins = np.bincount(block, weights=y.astype(np.float64))
        prior = np.bincount(block, weights=special.expit(score)) / runners
        rate = (wins + self.calibration_prior * prior) / (runners + self.calibration_prior)
        return IsotonicRegression(out_of_bounds="clip", increasing=True, y_min=0.0, y_max=1.0).fit(
            score, rate[block]
        )

    def _calibrated_log_proba(self, score: np.ndarray, layout: GroupLayout) -> np.ndarray:
        """Per-race log of the floored isotonic probabilities, normalised."""
        calibrated = np.clip(isotonic_predict(self.isotonic_, score), self.prob_floor, 1.0)
        return segment_log_softmax(np.log(calibrated), layout)

    def _stage_a_log_proba(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        score = decision_function(self.stage_a_, self._log_base(X))
        return self._calibrated_log_proba(score, layout)

    def _stage_b_features(
        self, log_pa: np.ndarray, log_base: np.ndarray, X: np.ndarray
    ) -> np.ndarray:
        return np.column_stack([log_pa, log_base, X[:, self._column_index(self.extra_columns_)]])

    def _column_index(self, columns: list[str]) -> np.ndarray:
        """Positions of ``columns`` in ``feature_names_in_`` (the order of the hooks' X)."""
        names = [str(c) for c in self.feature_names_in_]
        return np.asarray([names.index(c) for c in columns], dtype=np.int64)

    def _ranker_params(self) -> dict[str, Any]:
        return merge_params(
            {
                "objective": "lambdarank",
                "n_estimators": self.n_estimators,
                "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves,
                "min_child_samples": self.min_child_samples,
                "n_jobs": self.n_jobs,
                "random_state": self.random_state,
                "deterministic": True,
                "verbose": -1,
            },
            self.ranker_params,
            type(self).__name__,
        )

    @staticmethod
    def _fit_ranker(
        params: dict[str, Any], features: np.ndarray, labels: np.ndarray, codes: np.ndarray
    ) -> Any:
        """LightGBM lambdarank on rows whose race codes are sorted (contiguous groups)."""
        import lightgbm as lgb

        sizes = np.bincount(codes)
        return lgb.LGBMRanker(**params).fit(features, labels, group=sizes[sizes > 0])

    def _fit_blend(
        self, log_pa: np.ndarray, score: np.ndarray, y: np.ndarray, layout: GroupLayout
    ) -> np.ndarray:
        """ML fit of ``(a, b)`` in ``softmax(a log p_A + b s)``, started at stage A (1, 0)."""
        Z = np.column_stack([log_pa, score])
        weights = winner_weights(y, layout)
        race_weight = np.add.reduceat(weights, layout.starts)[layout.codes]
        result = minimize(
            conditional_logit_loss,
            np.array([1.0, 0.0]),
            args=(Z, weights, race_weight, layout, 0.0),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 500, "gtol": 1e-9},
        )
        if not result.success:
            logger.warning("StackedMetaLearner: (a, b) fit did not converge: %s", result.message)
        return np.asarray(result.x, dtype=np.float64)

    def _blend(self, log_pa: np.ndarray, score: np.ndarray, layout: GroupLayout) -> np.ndarray:
        """Per-race ``log softmax(a log p_A + b s)``."""
        return segment_log_softmax(self.coef_[0] * log_pa + self.coef_[1] * score, layout)
