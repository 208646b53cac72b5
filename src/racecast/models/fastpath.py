"""Lean prediction helpers for fitted scikit-learn and LightGBM pieces of the zoo.

Scoring one race (a dozen rows) through scikit-learn's public ``transform`` /
``predict_proba`` costs far more in input validation and dispatch (and, for a random
forest, in joblib's per-tree scheduling) than in arithmetic. These helpers do the same
arithmetic as the library, in the same order, on float64 numpy arrays the models have
already validated, so their output is identical to the library's (tested in
``tests/models/test_fastpath.py``). Anything they do not recognise goes through the
library's own method, so a new preprocessing step is never silently mis-handled.

CatBoost's oblivious trees are evaluated from the model's own JSON export
(:class:`ObliviousTrees`): its ``predict`` builds a ``Pool`` and a quantized copy of the
rows per call, ten times the cost of the trees' comparisons for a race.

Every model uses them for every prediction (training's out-of-fold and holdout
predictions as well as serving), so both paths run the same code.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import special
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

logger = logging.getLogger(__name__)

__all__ = [
    "BoosterContributions",
    "FlatForest",
    "ObliviousTrees",
    "booster_predict",
    "decision_function",
    "forest_proba",
    "isotonic_predict",
    "logistic_positive_proba",
    "small_batch",
    "transform",
]


def _impute(imputer: SimpleImputer, X: np.ndarray) -> np.ndarray:
    """``SimpleImputer.transform`` of a dense float array (NaN missing values)."""
    statistics = imputer.statistics_
    if X.shape[1] != statistics.shape[0]:
        raise ValueError(f"X has {X.shape[1]} features per sample, expected {statistics.shape[0]}")
    mask = np.isnan(X)
    out = np.array(X, dtype=np.float64, copy=True)
    if mask.any():
        out[mask] = np.broadcast_to(statistics.astype(np.float64), X.shape)[mask]
    indicator = getattr(imputer, "indicator_", None)
    if not imputer.add_indicator or indicator is None:
        return out
    flags = mask if indicator.features_.size == X.shape[1] else mask[:, indicator.features_]
    return np.hstack((out, flags))


def _is_plain_imputer(step: Any) -> bool:
    """A fitted ``SimpleImputer`` this module reproduces exactly (NaN, keep empty features)."""
    return (
        type(step) is SimpleImputer
        and isinstance(step.missing_values, float)
        and np.isnan(step.missing_values)
        and step.keep_empty_features
        and (not step.add_indicator or step.indicator_.features == "missing-only")
    )


def _scale(scaler: StandardScaler, X: np.ndarray) -> np.ndarray:
    """``StandardScaler.transform`` of a dense float64 array."""
    out = np.array(X, dtype=np.float64, copy=True)
    if scaler.with_mean:
        out -= scaler.mean_.astype(np.float64)
    if scaler.with_std:
        out /= scaler.scale_.astype(np.float64)
    return out


def transform(step: Any, X: np.ndarray) -> np.ndarray:
    """``step.transform(X)`` for a fitted imputer, scaler or a pipeline of them.

    Median/mean ``SimpleImputer`` (NaN missing values, ``keep_empty_features``, missing
    indicators) and ``StandardScaler`` are computed with numpy exactly as scikit-learn
    does; a ``Pipeline`` is transformed step by step; any other transformer uses its
    own ``transform``.

    Args:
        step: A fitted transformer or ``Pipeline`` of transformers.
        X: Dense float64 rows.

    Returns:
        The transformed rows (a new array).
    """
    if isinstance(step, Pipeline):
        for _, inner in step.steps:
            if inner is not None and inner != "passthrough":
                X = transform(inner, X)
        return X
    if _is_plain_imputer(step):
        return _impute(step, X)
    if type(step) is StandardScaler:
        return _scale(step, X)
    return step.transform(X)


def decision_function(model: Any, X: np.ndarray) -> np.ndarray:
    """``model.decision_function(X)`` of a fitted (pipeline ending in a) binary logistic regression.

    Args:
        model: A ``LogisticRegression`` or a ``Pipeline`` whose last step is one.
        X: Dense float64 rows.

    Returns:
        One score per row: ``X @ coef_.T + intercept_``, as scikit-learn computes it.
    """
    if isinstance(model, Pipeline):
        return decision_function(model[-1], transform(model[:-1], X))
    if type(model) is not LogisticRegression or model.coef_.shape[0] != 1:
        return model.decision_function(X)
    scores = np.dot(np.asarray(X, dtype=np.float64), model.coef_.T) + model.intercept_
    return scores.reshape(-1)


def logistic_positive_proba(model: Any, X: np.ndarray) -> np.ndarray:
    """``P(class 1)`` of a fitted binary logistic regression (or a pipeline ending in one).

    Args:
        model: A ``LogisticRegression`` or a ``Pipeline`` whose last step is one.
        X: Dense float64 rows.

    Returns:
        ``expit(decision_function(X))``, scikit-learn's ``predict_proba(X)[:, 1]``.
    """
    final = model[-1] if isinstance(model, Pipeline) else model
    if type(final) is not LogisticRegression or len(final.classes_) != 2:
        return model.predict_proba(X)[:, 1]
    return special.expit(decision_function(model, X))


def isotonic_predict(model: Any, T: np.ndarray) -> np.ndarray:
    """``IsotonicRegression.predict`` of finite 1-D float64 scores without its input checks.

    The library's own steps after ``check_array``: clip to the fitted range when
    ``out_of_bounds="clip"``, then its fitted interpolation ``f_``. Anything else (another
    dtype or shape, a missing or infinite value, a subclass) takes ``model.predict``.

    Args:
        model: A fitted ``IsotonicRegression``.
        T: Scores.

    Returns:
        ``model.predict(T)``.
    """
    if (
        type(model) is not IsotonicRegression
        or not isinstance(T, np.ndarray)
        or T.ndim != 1
        or T.dtype != np.float64
        or model.X_thresholds_.dtype != np.float64
        or not np.isfinite(T).all()
    ):
        return model.predict(T)
    if model.out_of_bounds == "clip":
        T = np.clip(T, model.X_min_, model.X_max_)
    return model.f_(T).astype(T.dtype)


class FlatForest:
    """Every tree of a fitted forest in one set of node arrays (node ids offset per tree).

    Walking all trees at once, level by level, replaces one ``tree_.predict`` call per
    tree; each step is the comparison scikit-learn's ``Tree.apply`` makes (float32
    feature value against the float64 threshold; a NaN follows ``missing_go_to_left``).
    A leaf points to itself, so rows that reached theirs stay put.
    """

    def __init__(self, forest: RandomForestClassifier) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        sizes = [tree.node_count for tree in trees]
        starts = np.cumsum([0, *sizes[:-1]]).astype(np.intp)
        shift = np.repeat(starts, sizes)
        left = np.concatenate([tree.children_left for tree in trees]).astype(np.intp)
        right = np.concatenate([tree.children_right for tree in trees]).astype(np.intp)
        leaf = left < 0
        own = np.arange(left.shape[0], dtype=np.intp)
        #: children[node] = (left, right); a leaf's children are itself
        self.children = np.column_stack(
            [np.where(leaf, own, left + shift), np.where(leaf, own, right + shift)]
        )
        self.feature = np.where(leaf, 0, np.concatenate([t.feature for t in trees]))
        self.threshold = np.where(leaf, np.inf, np.concatenate([t.threshold for t in trees]))
        self.missing_left = np.concatenate([t.missing_go_to_left for t in trees]) != 0
        self.missing_left[leaf] = True
        n_classes = int(forest.n_classes_)
        self.value = np.concatenate([tree.value[:, 0, :n_classes] for tree in trees])
        self.roots = starts
        self.depth = max(int(tree.max_depth) for tree in trees)

    def leaves(self, rows: np.ndarray) -> np.ndarray:
        """Leaf node of every (row, tree), shape ``(rows, trees)``."""
        node = np.broadcast_to(self.roots, (rows.shape[0], self.roots.shape[0])).copy()
        row = np.arange(rows.shape[0])[:, None]
        missing = bool(np.isnan(rows).any())
        for _ in range(self.depth):
            value = rows[row, self.feature[node]]
            go_left = value <= self.threshold[node]
            if missing:
                go_left = np.where(np.isnan(value), self.missing_left[node], go_left)
            node = self.children[node, (~go_left).astype(np.intp)]
        return node


#: Rows up to which the helpers predict on one thread (a request scores a race or a day's
#: racecards; training's out-of-fold predictions keep the libraries' threading).
SMALL_BATCH_ROWS = 1024

#: Largest rows x trees walked together by :class:`FlatForest` (a request's race is
#: ~3,000 cells; a training fold's tens of thousands of rows go tree by tree).
FLAT_WALK_MAX_CELLS = 200_000


class ObliviousTrees:
    """A fitted CatBoost model's oblivious trees as numpy arrays (from its JSON export).

    Split ``j`` of a tree compares one float feature (as float32, the precision CatBoost
    keeps features in) with its border, ``value > border``, and sets bit ``j`` of the
    tree's leaf index; a missing value compares false, or true when its feature's
    ``nan_value_treatment`` is ``AsTrue``. The raw score (CatBoost's ``RawFormulaVal``)
    is the sum of the trees' leaf values in tree order, times ``scale``, plus ``bias``.
    Trees with fewer splits than the deepest are padded with splits that are never true.
    Build it with :meth:`of`, which returns None for a model this class does not
    reproduce (categorical, text or embedding features, non-oblivious trees, several
    dimensions): that model keeps its library's ``predict``.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        float_features = document["features_info"]["float_features"]
        flat = {f["feature_index"]: f["flat_feature_index"] for f in float_features}
        trees = document["oblivious_trees"]
        depth = max(len(tree["splits"]) for tree in trees)
        feature = np.zeros((depth, len(trees)), dtype=np.intp)
        border = np.full((depth, len(trees)), np.inf, dtype=np.float32)
        self.leaf = np.zeros((len(trees), 1 << depth), dtype=np.float64)
        for t, tree in enumerate(trees):
            for j, split in enumerate(tree["splits"]):
                feature[j, t] = flat[split["float_feature_index"]]
                border[j, t] = np.float32(split["border"])
            values = np.asarray(tree["leaf_values"], dtype=np.float64)
            self.leaf[t, : values.shape[0]] = values
        #: split (depth-major: every tree's first split, then every second ...) -> column
        self.feature = feature.reshape(-1)
        self.border = border.reshape(-1, 1)
        self.depth = depth
        self.offset = (np.arange(len(trees), dtype=np.intp) * (1 << depth))[:, None]
        self.n_features = max(flat.values()) + 1
        #: columns whose missing values compare true (NaN -> +inf, above every border)
        self.nan_true = np.zeros(self.n_features, dtype=bool)
        for f in float_features:
            self.nan_true[f["flat_feature_index"]] = f["nan_value_treatment"] == "AsTrue"
        scale, bias = document.get("scale_and_bias", [1.0, [0.0]])
        self.scale = float(scale)
        self.bias = float(bias[0])

    @classmethod
    def of(cls, model: Any) -> ObliviousTrees | None:
        """The trees of a fitted CatBoost model, or None when this class does not reproduce it."""
        import json
        import os
        import tempfile

        if model.get_cat_feature_indices() or not model._object._is_oblivious():
            return None
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.json")
            model.save_model(path, format="json")
            with open(path, encoding="utf-8") as handle:
                document = json.load(handle)
        trees = document.get("oblivious_trees") or []
        if set(document["features_info"]) != {"float_features"} or not trees:
            return None
        if any(len(t["leaf_values"]) != 1 << len(t["splits"]) for t in trees):
            return None  # several dimensions per leaf
        if any(s["split_type"] != "FloatFeature" for t in trees for s in t["splits"]):
            return None
        scale_and_bias = document.get("scale_and_bias", [1.0, [0.0]])
        if len(scale_and_bias[1]) != 1 or max(len(t["splits"]) for t in trees) == 0:
            return None
        return cls(document)

    def __call__(self, X: np.ndarray, max_rows: int = 2048) -> np.ndarray:
        """Raw scores of dense rows (float; NaN missing), ``max_rows`` rows at a time."""
        rows = np.asarray(X, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"X must have {self.n_features} feature columns, got {rows.shape}")
        if rows.shape[0] > max_rows:
            parts = range(0, rows.shape[0], max_rows)
            return np.concatenate([self(rows[s : s + max_rows], max_rows) for s in parts])
        columns = np.ascontiguousarray(rows.T)  # (features, rows)
        if self.nan_true.any():
            columns[np.isnan(columns) & self.nan_true[:, None]] = np.inf
        above = (columns[self.feature] > self.border).view(np.uint8)
        above = above.reshape(self.depth, self.offset.shape[0], rows.shape[0])
        leaf = above[0].copy()
        for j in range(1, self.depth):
            leaf |= above[j] << np.uint8(j)
        # (trees, rows) reduced over axis 0: the trees added one after another, as
        # CatBoost adds them (not numpy's pairwise sum along a contiguous axis)
        total = self.leaf.reshape(-1).take(leaf + self.offset).sum(axis=0)
        return total * self.scale + self.bias


def forest_proba(
    forest: RandomForestClassifier,
    X: np.ndarray,
    flat: Callable[[], FlatForest] | None = None,
) -> np.ndarray:
    """``RandomForestClassifier.predict_proba`` without joblib, for a sequential forest.

    The same sum as scikit-learn's single-job path: each tree's leaf class fractions
    (the leaves of the float32 rows) added in estimator order, then divided by the
    number of trees. A few rows walk every tree together (:class:`FlatForest`, which
    ``flat`` returns: the caller keeps it, built once per fitted forest), many rows (or
    no ``flat``) go tree by tree; both add the trees in the same order. Forests with
    ``n_jobs`` other than None/1 or several outputs use scikit-learn's own method.

    Args:
        forest: A fitted forest.
        X: Dense rows (already imputed).
        flat: Returns the forest's :class:`FlatForest` (called only for a few rows).

    Returns:
        Class probabilities, shape ``(rows, n_classes)``.
    """
    if forest.n_jobs not in (None, 1) or forest.n_outputs_ != 1:
        return forest.predict_proba(X)
    rows = np.ascontiguousarray(X, dtype=np.float32)
    n_classes = int(forest.n_classes_)
    if flat is None or rows.shape[0] * len(forest.estimators_) > FLAT_WALK_MAX_CELLS:
        # many rows (training's out-of-fold predictions): one tree at a time, as
        # scikit-learn does, instead of (rows x trees) arrays per level
        total = np.zeros((rows.shape[0], n_classes), dtype=np.float64)
        for estimator in forest.estimators_:
            total += estimator.tree_.predict(rows)[:, :n_classes]
        return total / len(forest.estimators_)
    walk = flat()
    per_tree = walk.value[walk.leaves(rows)]  # (rows, trees, classes)
    # scikit-learn adds the trees one after another into zeros: a running sum, not pairwise
    total = np.cumsum(per_tree, axis=1)[:, -1, :]
    return total / len(forest.estimators_)


def booster_predict(model: Any, X: np.ndarray, **kwargs: Any) -> np.ndarray:
    """A fitted LightGBM scikit-learn model's ``predict`` straight through its Booster.

    ``LGBMModel.predict`` validates ``X`` and forwards to ``Booster.predict``; the
    training parameters it forwards do not change a prediction, and the number of
    threads does not either (rows are scored independently). Up to
    :data:`SMALL_BATCH_ROWS` rows go to the Booster on one thread (a second, busy core
    only makes a race wait); more rows take ``LGBMModel.predict`` with the model's own
    ``n_jobs``.

    Args:
        model: A fitted ``LGBMRanker`` / ``LGBMClassifier`` / ``LGBMRegressor``.
        X: Dense float64 rows.
        **kwargs: More ``Booster.predict`` arguments (``pred_contrib=True`` ...).

    Returns:
        ``Booster.predict`` output (raw score of a ranker, ``P(class 1)`` of a binary
        classifier).
    """
    data = np.ascontiguousarray(X, dtype=np.float64)
    if data.shape[0] > SMALL_BATCH_ROWS:
        from lightgbm import LGBMModel

        return LGBMModel.predict(model, data, **kwargs)
    return model.booster_.predict(data, num_threads=1, **kwargs)


def small_batch(X: np.ndarray) -> bool:
    """Whether ``X`` is a request-sized batch (see :data:`SMALL_BATCH_ROWS`)."""
    return X.shape[0] <= SMALL_BATCH_ROWS


class BoosterContributions:
    """``pred_contrib`` (TreeSHAP) of a fitted LightGBM model, safe beside its predictions.

    LightGBM does not support a ``pred_contrib`` call concurrent with another prediction
    on the same Booster (lightgbm-org/LightGBM#5482: heap corruption; #6142: a data race
    while a predictor is set up). The service explains on a worker thread while the
    request's thread predicts with the same model, so contributions come from a private
    copy of the Booster, built from the model string (the same trees), and calls on that
    copy are serialized by its own lock. Whoever explains keeps one per model (the
    inference bundle does).

    Args:
        model: A fitted ``LGBMRanker`` / ``LGBMClassifier``.
    """

    def __init__(self, model: Any) -> None:
        import lightgbm as lgb

        self._booster = lgb.Booster(model_str=model.booster_.model_to_string())
        self._lock = threading.Lock()

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """``(n_rows, n_features + 1)`` contributions of dense float64 rows, the bias last."""
        data = np.ascontiguousarray(X, dtype=np.float64)
        threads = 1 if data.shape[0] <= SMALL_BATCH_ROWS else 0
        with self._lock:
            return np.asarray(self._booster.predict(data, pred_contrib=True, num_threads=threads))
