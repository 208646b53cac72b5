"""Tree ensembles: LightGBM / CatBoost / XGBoost rankers, LightGBM and random-forest classifiers.

The gradient-boosting libraries handle missing values natively, so their wrappers feed
NaN straight through; the random forest gets a median imputer with missing indicators.
Rankers receive the rows sorted by race (contiguous groups, see
:func:`~racecast.models.base.group_layout`); their raw scores are utilities and
``predict_proba`` is their per-race softmax. The libraries are imported lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from racecast.models.base import (
    ClassifierRaceModel,
    GroupLayout,
    RaceModel,
    fold_indicator_importance,
    imputed_feature_names,
    make_imputer,
    merge_params,
)
from racecast.models.fastpath import (
    FlatForest,
    ObliviousTrees,
    booster_predict,
    forest_proba,
    small_batch,
    transform,
)

logger = logging.getLogger(__name__)

#: Size of LightGBM's default ``label_gain`` (``2**i - 1`` for ``i`` in 0..30).
LGBM_DEFAULT_LABEL_GAIN_SIZE = 31


def _ranking_labels(y: np.ndarray, relevance: np.ndarray | None) -> np.ndarray:
    """Relevance labels for a ranker: ``relevance`` when given, else ``won``."""
    return (y if relevance is None else relevance).astype(np.int64)


def _named_importance(names: np.ndarray, values: np.ndarray) -> dict[str, float]:
    return {str(n): float(v) for n, v in zip(names, values, strict=True)}


class _LightGBMParams:
    """Hyper-parameters shared by the LightGBM models (scikit-learn style ``__init__``)."""

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        reg_lambda: float = 0.0,
        n_jobs: int = 1,
        random_state: int = 0,
        model_params: dict[str, Any] | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.model_params = model_params

    def _lightgbm_params(self, objective: str) -> dict[str, Any]:
        """LightGBM keyword arguments for ``objective``, with ``model_params`` merged in."""
        return merge_params(
            {
                "objective": objective,
                "n_estimators": self.n_estimators,
                "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves,
                "min_child_samples": self.min_child_samples,
                "subsample": self.subsample,
                "subsample_freq": 1 if self.subsample < 1 else 0,
                "colsample_bytree": self.colsample_bytree,
                "reg_lambda": self.reg_lambda,
                "n_jobs": self.n_jobs,
                "random_state": self.random_state,
                "verbose": -1,
            },
            self.model_params,
            type(self).__name__,
        )


class LGBMRankerModel(_LightGBMParams, RaceModel):
    """LightGBM ``lambdarank`` ranker (NaN handled natively).

    Labels are the ``relevance`` passed to ``fit`` (e.g.
    :func:`~racecast.models.base.relevance_from_position`) or ``won`` when absent; they
    must stay below the size of ``label_gain`` (31 by default).

    Args:
        n_estimators: Boosting rounds.
        learning_rate: Shrinkage.
        num_leaves: Maximum leaves per tree.
        min_child_samples: Minimum rows per leaf.
        subsample: Row subsampling fraction (with ``subsample_freq=1`` when below 1).
        colsample_bytree: Feature subsampling fraction per tree.
        reg_lambda: L2 regularisation on leaf values.
        n_jobs: Threads.
        random_state: Seed.
        model_params: Extra keyword arguments for ``lightgbm.LGBMRanker``.

    Attributes:
        booster_model_: The fitted ``lightgbm.LGBMRanker``.
    """

    probability_method: ClassVar[str] = "softmax"
    importance_kind: ClassVar[str] = "total split gain"

    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        import lightgbm as lgb

        params = self._lightgbm_params("lambdarank")
        labels = _ranking_labels(y, relevance)
        gain_size = len(params.get("label_gain") or range(LGBM_DEFAULT_LABEL_GAIN_SIZE))
        if labels.max() >= gain_size:
            raise ValueError(
                f"relevance max {labels.max()} exceeds the label_gain size {gain_size}; "
                "cap the relevance or pass a longer label_gain in model_params"
            )
        model = lgb.LGBMRanker(**params)
        self.booster_model_ = model.fit(X, labels, group=layout.sizes)

    def _score_sorted(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        return booster_predict(self.booster_model_, X)

    def _importance_values(self) -> Mapping[str, float]:
        gain = self.booster_model_.booster_.feature_importance(importance_type="gain")
        return _named_importance(self.feature_names_in_, gain)


class LGBMClassifierModel(_LightGBMParams, ClassifierRaceModel):
    """LightGBM binary classifier on ``won``; per-race normalised ``P(won=1 | x)``.

    Args:
        n_estimators: Boosting rounds.
        learning_rate: Shrinkage.
        num_leaves: Maximum leaves per tree.
        min_child_samples: Minimum rows per leaf.
        subsample: Row subsampling fraction (with ``subsample_freq=1`` when below 1).
        colsample_bytree: Feature subsampling fraction per tree.
        reg_lambda: L2 regularisation on leaf values.
        n_jobs: Threads.
        random_state: Seed.
        model_params: Extra keyword arguments for ``lightgbm.LGBMClassifier``.

    Attributes:
        booster_model_: The fitted ``lightgbm.LGBMClassifier``.
    """

    importance_kind: ClassVar[str] = "total split gain"

    def _fit_classifier(self, X: np.ndarray, y: np.ndarray) -> None:
        import lightgbm as lgb

        params = self._lightgbm_params("binary")
        self.booster_model_ = lgb.LGBMClassifier(**params).fit(X, y)

    def _positive_proba(self, X: np.ndarray) -> np.ndarray:
        return booster_predict(self.booster_model_, X)

    def _importance_values(self) -> Mapping[str, float]:
        gain = self.booster_model_.booster_.feature_importance(importance_type="gain")
        return _named_importance(self.feature_names_in_, gain)


class CatBoostRankerModel(RaceModel):
    """CatBoost ranker (``YetiRank`` by default), ``group_id`` = contiguous race codes.

    Labels are ``relevance`` when given to ``fit``, else ``won``. Never writes files.

    Args:
        iterations: Boosting rounds.
        learning_rate: Shrinkage (``None`` lets CatBoost choose).
        depth: Tree depth.
        l2_leaf_reg: L2 regularisation.
        loss_function: Ranking loss (``"YetiRank"``, ``"YetiRankPairwise"``, ...).
        thread_count: Threads.
        random_state: Seed (CatBoost's ``random_seed``).
        model_params: Extra keyword arguments for ``catboost.CatBoostRanker``.

    Attributes:
        booster_model_: The fitted ``catboost.CatBoostRanker``.
    """

    probability_method: ClassVar[str] = "softmax"
    importance_kind: ClassVar[str] = "PredictionValuesChange"

    def __init__(
        self,
        iterations: int = 300,
        learning_rate: float | None = 0.05,
        depth: int = 6,
        l2_leaf_reg: float = 3.0,
        loss_function: str = "YetiRank",
        thread_count: int = 1,
        random_state: int = 0,
        model_params: dict[str, Any] | None = None,
    ) -> None:
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.depth = depth
        self.l2_leaf_reg = l2_leaf_reg
        self.loss_function = loss_function
        self.thread_count = thread_count
        self.random_state = random_state
        self.model_params = model_params

    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        from catboost import CatBoostRanker, Pool

        params = merge_params(
            {
                "iterations": self.iterations,
                "learning_rate": self.learning_rate,
                "depth": self.depth,
                "l2_leaf_reg": self.l2_leaf_reg,
                "loss_function": self.loss_function,
                "thread_count": self.thread_count,
                "random_seed": self.random_state,
                "allow_writing_files": False,
                "verbose": False,
            },
            self.model_params,
            type(self).__name__,
        )
        labels = _ranking_labels(y, relevance).astype(np.float64)
        pool = Pool(X, label=labels, group_id=layout.codes)
        self.booster_model_ = CatBoostRanker(**params).fit(pool)

    def _score_sorted(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        # the model's oblivious trees in numpy (equal to CatBoost's predict, bit for bit;
        # its Pool costs ten times the trees for a race); a model they do not reproduce
        # predicts through CatBoost: a race on one thread (a busy second core would
        # stall it), float32 as CatBoost keeps features
        trees = self._oblivious_trees()
        if trees is not None:
            return trees(X)
        if small_batch(X):
            rows = np.ascontiguousarray(X, dtype=np.float32)
            return self.booster_model_.predict(rows, thread_count=1)
        return self.booster_model_.predict(X, thread_count=-1)

    def _oblivious_trees(self) -> ObliviousTrees | None:
        """The fitted model's :class:`~racecast.models.fastpath.ObliviousTrees` (None: not
        reproducible), built once (kept on the model, never pickled: a refit drops it)."""
        kept = self.__dict__.get("_trees")
        if kept is None or kept[0] is not self.booster_model_:
            kept = self._trees = (self.booster_model_, ObliviousTrees.of(self.booster_model_))
        return kept[1]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_trees", None)
        return state

    def _importance_values(self) -> Mapping[str, float]:
        values = self.booster_model_.get_feature_importance(type="PredictionValuesChange")
        return _named_importance(self.feature_names_in_, values)


class XGBRankerModel(RaceModel):
    """XGBoost ranker (``rank:pairwise`` by default) with sorted ``qid`` = race codes.

    Labels are ``relevance`` when given to ``fit``, else ``won``; NaN handled natively.

    Args:
        n_estimators: Boosting rounds.
        learning_rate: Shrinkage.
        max_depth: Tree depth.
        subsample: Row subsampling fraction.
        colsample_bytree: Feature subsampling fraction per tree.
        reg_lambda: L2 regularisation on leaf weights.
        objective: Ranking objective (``"rank:pairwise"``, ``"rank:ndcg"``, ...).
        n_jobs: Threads.
        random_state: Seed.
        model_params: Extra keyword arguments for ``xgboost.XGBRanker``.

    Attributes:
        booster_model_: The fitted ``xgboost.XGBRanker``.
    """

    probability_method: ClassVar[str] = "softmax"
    importance_kind: ClassVar[str] = "gain"

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        max_depth: int = 4,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        reg_lambda: float = 1.0,
        objective: str = "rank:pairwise",
        n_jobs: int = 1,
        random_state: int = 0,
        model_params: dict[str, Any] | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.objective = objective
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.model_params = model_params

    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        import xgboost as xgb

        params = merge_params(
            {
                "objective": self.objective,
                "n_estimators": self.n_estimators,
                "learning_rate": self.learning_rate,
                "max_depth": self.max_depth,
                "subsample": self.subsample,
                "colsample_bytree": self.colsample_bytree,
                "reg_lambda": self.reg_lambda,
                "n_jobs": self.n_jobs,
                "random_state": self.random_state,
                "tree_method": "hist",
            },
            self.model_params,
            type(self).__name__,
        )
        labels = _ranking_labels(y, relevance)
        self.booster_model_ = xgb.XGBRanker(**params).fit(X, labels, qid=layout.codes)

    def _score_sorted(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        return self.booster_model_.predict(X)

    def _importance_values(self) -> Mapping[str, float]:
        return _named_importance(self.feature_names_in_, self.booster_model_.feature_importances_)


class RandomForestModel(ClassifierRaceModel):
    """Random forest on ``won`` with median imputation + missing indicators.

    Probabilities are the per-race normalisation of the forest's ``P(won=1 | x)``
    (floored at ``1e-12`` so a race where every runner gets 0 becomes uniform).

    Args:
        n_estimators: Trees.
        max_depth: Depth cap (``None`` = grow until ``min_samples_leaf``).
        min_samples_leaf: Minimum rows per leaf (larger = smoother probabilities).
        max_features: Features tried per split.
        class_weight: sklearn ``class_weight``.
        n_jobs: Threads.
        random_state: Seed.
        model_params: Extra keyword arguments for ``sklearn.ensemble.RandomForestClassifier``.

    Attributes:
        pipeline_: The fitted impute -> forest pipeline.
    """

    importance_kind: ClassVar[str] = "mean impurity decrease"

    def __init__(
        self,
        n_estimators: int = 300,
        max_depth: int | None = None,
        min_samples_leaf: int = 5,
        max_features: str | float | int = "sqrt",
        class_weight: str | None = None,
        n_jobs: int = 1,
        random_state: int = 0,
        model_params: dict[str, Any] | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.class_weight = class_weight
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.model_params = model_params

    def _fit_classifier(self, X: np.ndarray, y: np.ndarray) -> None:
        params = merge_params(
            {
                "n_estimators": self.n_estimators,
                "max_depth": self.max_depth,
                "min_samples_leaf": self.min_samples_leaf,
                "max_features": self.max_features,
                "class_weight": self.class_weight,
                "n_jobs": self.n_jobs,
                "random_state": self.random_state,
            },
            self.model_params,
            type(self).__name__,
        )
        pipe = Pipeline([("impute", make_imputer()), ("forest", RandomForestClassifier(**params))])
        self.pipeline_ = pipe.fit(X, y)

    def _positive_proba(self, X: np.ndarray) -> np.ndarray:
        imputed = transform(self.pipeline_.named_steps["impute"], X)
        return forest_proba(self.pipeline_.named_steps["forest"], imputed, self._flat_forest)[:, 1]

    def _flat_forest(self) -> FlatForest:
        """The fitted forest's :class:`~racecast.models.fastpath.FlatForest`, built once
        (kept on the model, never pickled: a refit drops it)."""
        flat = self.__dict__.get("_flat")
        if flat is None or flat[0] is not self.pipeline_:
            flat = self._flat = (self.pipeline_, FlatForest(self.pipeline_.named_steps["forest"]))
        return flat[1]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_flat", None)
        return state

    def _importance_values(self) -> Mapping[str, float]:
        names = imputed_feature_names(self.pipeline_.named_steps["impute"], self.feature_names_in_)
        values = self.pipeline_.named_steps["forest"].feature_importances_
        return fold_indicator_importance(values, names)
