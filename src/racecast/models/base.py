"""The common interface of every race model: :class:`RaceModel`.

A race model scores the runners of a race and turns the scores into win probabilities
that sum to one within each race. Every model of the zoo shares this module's contract:

* ``fit(X, y, groups, relevance=None)``: ``X`` is a DataFrame of per-runner features,
  ``y`` the 0/1 ``won`` label (a dead heat gives a race two winners), ``groups`` the
  ``race_id`` of each row and ``relevance`` an optional graded label for rankers (see
  :func:`relevance_from_position`). ``y``, ``groups`` and ``relevance`` carry the same
  index as ``X``.
* ``decision_function(X, groups)``: one score per runner, higher = more likely to win.
* ``predict_proba(X, groups)``: per-race probabilities, always the per-race softmax of
  :meth:`RaceModel.decision_function`. Ranking and logit models return raw utilities as
  scores (so this is a softmax of the utilities); classifiers return the log of their
  positive-class probability, so the softmax is exactly the per-race normalisation of
  ``P(won=1 | x)``. Each class says which in its ``probability_method`` attribute.

Rows may arrive in any order. The base class sorts them stably by race (races keep the
order of their first appearance, runners keep their relative order) with
:func:`group_layout`, hands contiguous groups to the subclass and maps every output
back to the caller's row order.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from racecast.data.races import race_code_array

logger = logging.getLogger(__name__)

#: Prefix of the missing-indicator columns added by :func:`make_imputer`.
MISSING_PREFIX = "missing:"

#: Floor applied to a classifier's positive-class probability before taking its log.
PROBA_FLOOR = 1e-12


@dataclass(frozen=True)
class GroupLayout:
    """How the rows of a frame map onto contiguous, sorted race groups.

    Attributes:
        order: Positions of the input rows in sorted order (``X.iloc[order]`` is sorted).
        inverse: Positions of the sorted rows in input order (``sorted[inverse]`` restores).
        codes: Race code of each *sorted* row: ``0, 0, ..., 1, 1, ...`` (non-decreasing).
        sizes: Number of runners of each race, in race-code order.
        starts: Position of each race's first row in the sorted rows.
        race_ids: Race identifiers in race-code order (order of first appearance).
    """

    order: np.ndarray
    inverse: np.ndarray
    codes: np.ndarray
    sizes: np.ndarray
    starts: np.ndarray
    race_ids: np.ndarray

    @property
    def n_groups(self) -> int:
        """Number of races."""
        return int(self.sizes.shape[0])


def group_layout(groups: pd.Series | np.ndarray) -> GroupLayout:
    """Sort rows stably so that every race's rows are contiguous.

    Races are ordered by their first appearance in ``groups`` and the runners of a race
    keep their relative input order, so already-contiguous input is left untouched.

    Args:
        groups: Race identifier of each row; no missing values.

    Returns:
        The :class:`GroupLayout` of the rows.

    Raises:
        ValueError: If ``groups`` is empty or contains missing values.
    """
    if type(groups) is np.ndarray and groups.ndim == 1:  # a request's race ids: no Series
        values = groups
    else:
        values = pd.Series(groups).to_numpy()
    if values.shape[0] == 0:
        raise ValueError("groups is empty: there are no rows to arrange into races")
    codes = race_code_array(values, "groups")
    order = np.argsort(codes, kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.shape[0])
    sorted_codes = codes[order]
    sizes = np.bincount(sorted_codes)  # codes are 0 .. n_races - 1, each used
    starts = np.zeros(sizes.shape[0], dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    # each race's first row (races are numbered by first appearance): pandas'
    # factorize uniques, without building their Index
    race_ids = values[order[starts]]
    return GroupLayout(
        order=order,
        inverse=inverse,
        codes=sorted_codes,
        sizes=sizes,
        starts=starts,
        race_ids=race_ids,
    )


def segment_log_softmax(scores: np.ndarray, layout: GroupLayout) -> np.ndarray:
    """Per-race log-softmax of scores given in the layout's *sorted* row order.

    Args:
        scores: One finite score per sorted row.
        layout: The rows' :class:`GroupLayout`.

    Returns:
        ``log p`` per sorted row; ``exp`` of it sums to one within each race.
    """
    maxima = np.maximum.reduceat(scores, layout.starts)
    shifted = scores - maxima[layout.codes]
    sums = np.add.reduceat(np.exp(shifted), layout.starts)
    return shifted - np.log(sums)[layout.codes]


def segment_softmax(scores: np.ndarray, layout: GroupLayout) -> np.ndarray:
    """Per-race softmax of scores given in the layout's *sorted* row order.

    Args:
        scores: One finite score per sorted row.
        layout: The rows' :class:`GroupLayout`.

    Returns:
        Probabilities per sorted row, summing to one within each race.
    """
    maxima = np.maximum.reduceat(scores, layout.starts)
    expd = np.exp(scores - maxima[layout.codes])
    sums = np.add.reduceat(expd, layout.starts)
    return expd / sums[layout.codes]


def winner_weights(y: np.ndarray, layout: GroupLayout) -> np.ndarray:
    """Likelihood weight of each sorted row: ``1 / k`` for each of a race's ``k`` winners.

    A dead heat thus splits its race's unit weight between the tied winners, and a race
    without a winner weighs nothing.

    Args:
        y: 0/1 ``won`` per sorted row.
        layout: The rows' :class:`GroupLayout`.

    Returns:
        Non-negative weights per sorted row; each race with a winner sums to one.
    """
    y = y.astype(np.float64)
    winners = np.add.reduceat(y, layout.starts)
    denom = np.where(winners > 0, winners, 1.0)
    return y / denom[layout.codes]


def relevance_from_position(position: pd.Series, top: int = 3) -> pd.Series:
    """Graded relevance for rankers from finishing positions.

    ``relevance = max(0, top + 1 - position)``: the winner gets ``top``, the runner-up
    ``top - 1``, ..., anything behind the first ``top`` (and non-finishers, i.e. a
    missing position) gets 0. Dead heats share a position and hence a relevance.

    Args:
        position: Finishing position per runner (1 = winner); missing = did not finish.
        top: How many places earn a positive relevance; must be at least 1.

    Returns:
        Integer relevance with the index of ``position``.

    Raises:
        ValueError: If ``top`` is below 1 or a position is below 1.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    pos = pd.to_numeric(position, errors="raise").astype("float64")
    if (pos < 1).any():
        raise ValueError(f"position has values below 1: {sorted(pos[pos < 1].unique())[:5]}")
    rel = (top + 1 - pos).clip(lower=0).fillna(0)
    return rel.astype("int64").rename("relevance")


def make_imputer() -> SimpleImputer:
    """Median imputer that appends a missing-indicator per feature missing in training."""
    return SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)


def make_impute_scale() -> Pipeline:
    """Median imputation + missing indicators, then standardisation (fit on train only)."""
    return Pipeline([("impute", make_imputer()), ("scale", StandardScaler())])


def imputed_feature_names(imputer: SimpleImputer, feature_names: np.ndarray) -> list[str]:
    """Output column names of a fitted :func:`make_imputer` imputer.

    Args:
        imputer: The fitted imputer.
        feature_names: The imputer's input column names.

    Returns:
        The input names followed by ``"missing:<name>"`` for each indicator column.
    """
    names = [str(name) for name in feature_names]
    if imputer.indicator_ is not None:
        names += [f"{MISSING_PREFIX}{feature_names[i]}" for i in imputer.indicator_.features_]
    return names


def fold_indicator_importance(values: np.ndarray, names: list[str]) -> dict[str, float]:
    """Add each missing-indicator's importance onto its feature's importance.

    Args:
        values: Importance per transformed column.
        names: Transformed column names from :func:`imputed_feature_names`.

    Returns:
        Importance per original feature name.
    """
    folded: dict[str, float] = {}
    for name, value in zip(names, values, strict=True):
        key = name[len(MISSING_PREFIX) :] if name.startswith(MISSING_PREFIX) else name
        folded[key] = folded.get(key, 0.0) + float(value)
    return folded


def merge_params(
    explicit: Mapping[str, Any], extra: Mapping[str, Any] | None, owner: str
) -> dict[str, Any]:
    """Combine a model's explicit library arguments with its ``model_params`` pass-through.

    Args:
        explicit: Arguments the wrapper sets itself.
        extra: The user's ``model_params`` (forwarded verbatim to the library).
        owner: Class name used in error messages.

    Returns:
        The merged keyword arguments.

    Raises:
        TypeError: If ``model_params`` is not a mapping.
        ValueError: If ``model_params`` repeats an argument the wrapper sets itself.
    """
    if extra is None:
        return dict(explicit)
    if not isinstance(extra, Mapping):
        raise TypeError(f"{owner}: model_params must be a dict, got {type(extra).__name__}")
    clash = sorted(set(extra) & set(explicit))
    if clash:
        raise ValueError(
            f"{owner}: model_params repeats {clash}; set them through the explicit "
            "hyper-parameters of the same name instead"
        )
    return {**explicit, **extra}


@contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Temporarily set ``torch.set_num_threads`` (restored on exit); ``None`` leaves it."""
    import torch

    if n_threads is None:
        yield
        return
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1 or None, got {n_threads}")
    previous = torch.get_num_threads()
    if previous == n_threads:  # nothing to change (the serving process runs one thread)
        yield
        return
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def aligned_series(values: Any, X: pd.DataFrame, name: str) -> pd.Series:
    """Return ``values`` as a Series on ``X``'s index, checking length and index."""
    if isinstance(values, pd.Series):
        if len(values) != len(X):
            raise ValueError(f"{name} has {len(values)} rows but X has {len(X)}")
        if not values.index.equals(X.index):
            raise ValueError(f"{name} must have the same index as X (same labels, same order)")
        return values
    array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != len(X):
        raise ValueError(f"{name} must be 1-D with {len(X)} entries, got shape {array.shape}")
    return pd.Series(array, index=X.index, name=name)


def _check_finite_or_missing(array: np.ndarray, columns: list[str]) -> None:
    """Raise if a feature matrix holds infinite values (NaN means missing and is fine)."""
    if not np.isinf(array).any():
        return
    infinite = np.isinf(array).any(axis=0)
    if infinite.any():
        raise ValueError(f"X has infinite values in columns {list(np.asarray(columns)[infinite])}")


class RaceModel(BaseEstimator, ABC):
    """Abstract per-race win-probability model (see the module docstring for the contract).

    Subclasses implement :meth:`_fit_sorted` and :meth:`_score_sorted`, which receive the
    rows sorted by race (contiguous groups) together with their :class:`GroupLayout`,
    and may override :meth:`_importance_values`. The base class validates inputs, sets
    ``feature_names_in_`` / ``n_features_in_``, sorts rows and maps outputs back.
    """

    #: ``"softmax"`` (scores are utilities) or ``"normalised"`` (scores are log P(won)).
    probability_method: ClassVar[str] = "softmax"
    #: What :meth:`importance` measures, for labels (e.g. ``"total split gain"``).
    importance_kind: ClassVar[str] = "importance"

    # ------------------------------------------------------------------ public API
    def fit(
        self,
        X: pd.DataFrame,
        y: pd.Series,
        groups: pd.Series,
        relevance: pd.Series | None = None,
    ) -> RaceModel:
        """Fit the model on the runners of the training races.

        Args:
            X: Per-runner features (one row per runner).
            y: 1 if the runner won (dead heats: several 1s in a race), else 0.
            groups: Race id of each row.
            relevance: Optional non-negative integer graded relevance (e.g. from
                :func:`relevance_from_position`); used by ranking models, ignored by the
                others. Defaults to ``y``.

        Returns:
            The fitted model (``self``).

        Raises:
            TypeError: If ``X`` is not a DataFrame.
            ValueError: If an input is malformed (see the messages).
        """
        columns = self._check_frame(X, fitting=True)
        y_series = aligned_series(y, X, "y")
        target = self._check_binary(y_series, "y")
        if target.sum() == 0:
            raise ValueError("y contains no winner (all 0): there is nothing to learn")
        group_series = aligned_series(groups, X, "groups")
        rel = None
        if relevance is not None:
            rel = self._check_relevance(aligned_series(relevance, X, "relevance"))
        layout = group_layout(group_series)
        features = self._extract(X, columns)
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)  # a refit starts from scratch
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.n_features_in_ = len(columns)
        try:
            self._fit_sorted(
                features[layout.order],
                target[layout.order],
                layout,
                None if rel is None else rel[layout.order],
            )
        except BaseException:
            # leave no half-fitted state behind: the model stays (or becomes) unfitted
            for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
                delattr(self, attr)
            raise
        return self

    def decision_function(self, X: pd.DataFrame, groups: pd.Series) -> np.ndarray:
        """Score each runner; higher means more likely to win.

        Args:
            X: Per-runner features with (at least) the columns seen in ``fit``.
            groups: Race id of each row.

        Returns:
            One score per row of ``X``, in ``X``'s row order.
        """
        scores, layout = self._sorted_scores(X, groups)
        return scores[layout.inverse]

    def predict_proba(self, X: pd.DataFrame, groups: pd.Series) -> np.ndarray:
        """Win probability of each runner: per-race softmax of the scores.

        Args:
            X: Per-runner features with (at least) the columns seen in ``fit``.
            groups: Race id of each row.

        Returns:
            One probability per row of ``X`` (input order), summing to one per race.
        """
        scores, layout = self._sorted_scores(X, groups)
        return segment_softmax(scores, layout)[layout.inverse]

    def predict_proba_array(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        """:meth:`predict_proba` of a float64 feature matrix whose races are already laid out.

        The array form of :meth:`predict_proba` for callers that score several models on
        the same rows (the inference bundle): the frame checks, the column selection and
        :func:`group_layout` are done once by the caller instead of once per model. The
        scores and the softmax are the same code as :meth:`predict_proba`.

        Args:
            X: One row per runner, columns in ``feature_names_in_`` order, float64 (NaN
                missing), in the caller's row order.
            layout: :func:`group_layout` of the rows' race ids.

        Returns:
            One probability per row of ``X`` (input order), summing to one per race.

        Raises:
            ValueError: If ``X`` has the wrong shape or infinite values.
        """
        if "n_features_in_" not in self.__dict__:  # set by fit (scikit-learn's check: ~5 us)
            check_is_fitted(self)
        features = np.asarray(X, dtype=np.float64)
        if features.ndim != 2 or features.shape != (layout.order.shape[0], self.n_features_in_):
            raise ValueError(
                f"X must have shape ({layout.order.shape[0]}, {self.n_features_in_}), "
                f"got {features.shape}"
            )
        _check_finite_or_missing(features, list(self.feature_names_in_))
        scores = self._scores_of_sorted(features[layout.order], layout)
        return segment_softmax(scores, layout)[layout.inverse]

    def importance(self) -> pd.Series:
        """Feature importance as reported by the underlying library.

        Imputing models fold the importance of a feature's missing-indicator into the
        feature's own entry, so the index is always ``feature_names_in_``.

        Returns:
            Importance per input feature, sorted descending.

        Raises:
            NotImplementedError: If the model's library offers no importance.
        """
        check_is_fitted(self)
        values = self._importance_values()
        series = pd.Series(values, dtype="float64", name="importance")
        series = series.reindex([str(c) for c in self.feature_names_in_], fill_value=0.0)
        return series.sort_values(ascending=False)

    # --------------------------------------------------------------- subclass hooks
    @abstractmethod
    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        """Fit on rows sorted by race (``layout.codes`` is non-decreasing)."""

    @abstractmethod
    def _score_sorted(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        """Score rows sorted by race; returns finite scores in that sorted order."""

    def _importance_values(self) -> Mapping[str, float]:
        """Importance per feature name; the default says the model has none."""
        raise NotImplementedError(f"{type(self).__name__} offers no feature importance")

    def _feature_columns(self, X: pd.DataFrame) -> list[str]:
        """Columns of ``X`` the model uses when fitting (default: all of them)."""
        return list(X.columns)

    def _extract(self, X: pd.DataFrame, columns: list[str]) -> np.ndarray:
        """Turn the selected columns into the array handed to the hooks (float64)."""
        frame = X[columns]
        # one dtypes lookup, not one Series per column (this runs per request when serving)
        dtypes = {
            str(c): dtype
            for c, dtype in frame.dtypes.items()
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))
        }
        if dtypes:
            dtypes = {c: str(dtype) for c, dtype in dtypes.items()}
            raise ValueError(f"X has non-numeric feature columns {dtypes}")
        array = frame.to_numpy(dtype=np.float64, na_value=np.nan)
        _check_finite_or_missing(array, columns)
        return array

    # ------------------------------------------------------------------- internals
    def _check_frame(self, X: pd.DataFrame, fitting: bool) -> list[str]:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame, got {type(X).__name__}")
        if len(X) == 0:
            raise ValueError("X has no rows")
        if X.columns.has_duplicates:
            dup = sorted({str(c) for c in X.columns[X.columns.duplicated()]})
            raise ValueError(f"X has duplicated column names {dup}")
        if fitting:
            columns = self._feature_columns(X)
            if not columns:
                raise ValueError("X has no feature columns")
            return columns
        check_is_fitted(self)
        columns = list(self.feature_names_in_)
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the feature columns {missing} seen in fit")
        return columns

    @staticmethod
    def _check_binary(values: pd.Series, name: str) -> np.ndarray:
        if values.isna().any():
            raise ValueError(f"{name} has {int(values.isna().sum())} missing values")
        array = values.to_numpy()
        if array.dtype == bool:
            return array.astype(np.int64)
        numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(numeric).any() or not np.isin(numeric, (0.0, 1.0)).all():
            bad = pd.unique(values[~np.isin(numeric, (0.0, 1.0))])[:5]
            raise ValueError(f"{name} must be 0/1, found values {list(bad)}")
        return numeric.astype(np.int64)

    @staticmethod
    def _check_relevance(values: pd.Series) -> np.ndarray:
        numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(numeric).any():
            raise ValueError("relevance has missing or non-numeric values")
        if (numeric < 0).any() or not np.equal(numeric, np.round(numeric)).all():
            raise ValueError("relevance must be non-negative integers")
        return numeric.astype(np.int64)

    def _sorted_scores(self, X: pd.DataFrame, groups: pd.Series) -> tuple[np.ndarray, GroupLayout]:
        columns = self._check_frame(X, fitting=False)
        group_series = aligned_series(groups, X, "groups")
        layout = group_layout(group_series)
        features = self._extract(X, columns)[layout.order]
        return self._scores_of_sorted(features, layout), layout

    def _scores_of_sorted(self, features: np.ndarray, layout: GroupLayout) -> np.ndarray:
        """:meth:`_score_sorted`, checked: one finite float64 score per sorted row."""
        scores = np.asarray(self._score_sorted(features, layout), dtype=np.float64)
        if scores.shape != (features.shape[0],) or not np.isfinite(scores).all():
            raise RuntimeError(f"{type(self).__name__} produced invalid scores")
        return scores


class ClassifierRaceModel(RaceModel):
    """Base for row-wise binary classifiers: score = ``log P(won=1 | x)``.

    ``predict_proba`` therefore normalises the positive-class probability within each
    race. Subclasses implement :meth:`_fit_classifier` and :meth:`_positive_proba`.
    """

    probability_method: ClassVar[str] = "normalised"

    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        if y.min() == y.max():
            raise ValueError("y has a single class; a classifier needs winners and losers")
        self._fit_classifier(X, y)

    def _score_sorted(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        proba = np.asarray(self._positive_proba(X), dtype=np.float64)
        return np.log(np.clip(proba, PROBA_FLOOR, 1.0))

    @abstractmethod
    def _fit_classifier(self, X: np.ndarray, y: np.ndarray) -> None:
        """Fit the row-wise classifier on 0/1 ``won``."""

    @abstractmethod
    def _positive_proba(self, X: np.ndarray) -> np.ndarray:
        """``P(won=1 | x)`` per row."""
