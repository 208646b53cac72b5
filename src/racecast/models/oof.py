"""Walk-forward out-of-fold predictions of a race model, and the holdout fit.

Implements the "out-of-fold" bullet of ``docs/evaluation-protocol.md``: inside the
training races, a base model's out-of-fold (OOF) prediction for a runner comes from a
model fitted only on race days strictly before the runner's race day. The folds are the
expanding-window blocks of :func:`racecast.models.split.time_folds`; the first
``min_train_days`` race days are never predicted (their OOF value is NaN), so callers
fitting a meta-learner or the market blend on OOF rows must drop the NaN rows first.

A fresh model is built for every fold by ``model_factory`` (a zero-argument callable,
e.g. ``lambda: build_model(spec)``), so no fitted state leaks from one fold into the
next. Models follow the :class:`~racecast.models.base.RaceModel` contract:
``fit(X, y, groups[, relevance]) -> self`` and ``predict_proba(X, groups)`` returning
probabilities that sum to one within each race.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from racecast.data.races import race_codes
from racecast.models.base import aligned_series
from racecast.models.split import time_folds

logger = logging.getLogger(__name__)

__all__ = ["assert_no_lookahead", "fit_and_predict_holdout", "out_of_fold_predictions"]

#: Tolerance on ``|sum of a race's probabilities - 1|`` before re-normalisation is logged.
_SUM_TOL = 1e-6


def _check_frame(X: Any, name: str) -> None:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(X).__name__}")
    if len(X) == 0:
        raise ValueError(f"{name} has no rows")


def _normalise_per_race(p: np.ndarray, groups: np.ndarray, what: str) -> np.ndarray:
    """Validate a model's probabilities and rescale them to sum to one within each race.

    Compliant models already return per-race normalised probabilities, for which this is
    a no-op up to rounding; a larger deviation is logged and corrected.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.shape != groups.shape:
        raise ValueError(f"{what}: predict_proba returned shape {p.shape}, expected {groups.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{what}: predict_proba returned non-finite or negative probabilities")
    codes, _ = race_codes(groups, what)
    sums = np.bincount(codes, weights=p)
    if (sums <= 0).any():
        raise ValueError(f"{what}: {int((sums <= 0).sum())} races have zero total probability")
    worst = float(np.max(np.abs(sums - 1.0)))
    if worst > _SUM_TOL:
        logger.warning("%s: probabilities off by up to %.3g per race; re-normalised", what, worst)
    return p / sums[codes]


def _fit(
    model: Any, X: pd.DataFrame, y: pd.Series, groups: pd.Series, relevance: pd.Series | None
) -> Any:
    """``model.fit``, passing ``relevance`` only when given (models may not accept it)."""
    if relevance is None:
        return model.fit(X, y, groups)
    return model.fit(X, y, groups, relevance=relevance)


def assert_no_lookahead(
    folds: Sequence[tuple[np.ndarray, np.ndarray]], race_days: pd.Series | np.ndarray
) -> None:
    """Check that every fold trains only on race days strictly before its validation days.

    Args:
        folds: ``[(train_idx, valid_idx), ...]`` of 0-based positions into ``race_days``
            (as returned by :func:`~racecast.models.split.time_folds`).
        race_days: Race day of every row, any sortable dtype without missing values.

    Raises:
        AssertionError: If a fold has no training or no validation rows, a position is out
            of range, the training and validation rows overlap, or a training day is on or
            after the fold's first validation day. The message names the fold.
    """
    days = np.asarray(race_days)
    n = days.shape[0]
    for k, (train_idx, valid_idx) in enumerate(folds):
        train_idx = np.asarray(train_idx)
        valid_idx = np.asarray(valid_idx)
        if train_idx.size == 0 or valid_idx.size == 0:
            raise AssertionError(
                f"fold {k}: {train_idx.size} training and {valid_idx.size} validation rows; "
                "both must be non-empty"
            )
        for name, idx in (("train_idx", train_idx), ("valid_idx", valid_idx)):
            if idx.min() < 0 or idx.max() >= n:
                raise AssertionError(
                    f"fold {k}: {name} has positions outside [0, {n}) of race_days"
                )
        if np.intersect1d(train_idx, valid_idx).size:
            raise AssertionError(f"fold {k}: training and validation rows overlap")
        last_train, first_valid = days[train_idx].max(), days[valid_idx].min()
        if not last_train < first_valid:
            raise AssertionError(
                f"fold {k}: trains on race day {last_train} which is not strictly before its "
                f"first validation day {first_valid} (look-ahead)"
            )


@contextmanager
def _logging_beside_bar() -> Iterator[None]:
    """Console log records written above a tqdm bar instead of through it.

    ``logging_redirect_tqdm`` swaps the root logger's console ``StreamHandler`` for one
    that writes with ``tqdm.write``. Any other console handler (Kedro's rich handler is
    not a ``StreamHandler``) would stay beside the one it adds and print every record
    twice, so the swap happens only when there is a console ``StreamHandler`` to swap.
    """
    consoles = (sys.stdout, sys.stderr)
    swap = any(
        isinstance(h, logging.StreamHandler) and h.stream in consoles
        for h in logging.getLogger().handlers
    )
    with logging_redirect_tqdm() if swap else nullcontext():
        yield


def out_of_fold_predictions(
    model_factory: Callable[[], Any],
    X: pd.DataFrame,
    y: pd.Series,
    groups: pd.Series,
    race_days: pd.Series,
    n_folds: int,
    min_train_days: int,
    relevance: pd.Series | None = None,
    *,
    name: str = "p_oof",
) -> pd.Series:
    """Walk-forward out-of-fold win probabilities of a race model.

    The distinct race days after the first ``min_train_days`` are cut into ``n_folds``
    contiguous blocks (:func:`~racecast.models.split.time_folds`). For each block a
    fresh model from ``model_factory`` is fitted on every row whose race day is strictly
    earlier than the block, then predicts the block's rows. Progress is logged per fold
    and shown as a ``tqdm`` bar on an interactive terminal.

    Args:
        model_factory: Zero-argument callable returning a new, unfitted race model.
        X: Per-runner features, one row per runner.
        y: 0/1 ``won``, aligned to ``X`` (same index if a Series, else same length).
        groups: Race id of each row, aligned to ``X``.
        race_days: Race day of each row (constant within a race), aligned to ``X``.
        n_folds: Number of validation blocks (>= 1).
        min_train_days: Distinct race days always in training, never predicted (>= 1).
        relevance: Optional graded relevance for rankers, aligned to ``X``; passed to
            ``fit`` only when given.
        name: Name of the returned Series.

    Returns:
        Float Series on ``X``'s index: the per-race normalised OOF probability of each
        runner, NaN for the rows of the first ``min_train_days`` race days.

    Raises:
        TypeError: If ``X`` is not a DataFrame.
        ValueError: If an input is misaligned, has missing values, a race spans several
            race days, there are too few race days for the folds, or a model returns
            invalid probabilities.
        AssertionError: If a fold would look ahead (see :func:`assert_no_lookahead`).
    """
    _check_frame(X, "X")
    y = aligned_series(y, X, "y")
    groups = aligned_series(groups, X, "groups")
    race_days = aligned_series(race_days, X, "race_days")
    if relevance is not None:
        relevance = aligned_series(relevance, X, "relevance")
    if groups.isna().any():
        raise ValueError(f"groups has {int(groups.isna().sum())} missing race ids")
    if race_days.isna().any():
        raise ValueError(f"race_days has {int(race_days.isna().sum())} missing values")
    days_per_race = race_days.groupby(groups.to_numpy(), sort=False).nunique()
    if (days_per_race > 1).any():
        bad = days_per_race.index[days_per_race > 1][:5].tolist()
        raise ValueError(f"race_days is not constant within a race (e.g. races {bad})")

    positional_days = race_days.reset_index(drop=True)
    folds = time_folds(positional_days, n_folds=n_folds, min_train_days=min_train_days)
    assert_no_lookahead(folds, positional_days)

    out = np.full(len(X), np.nan)
    group_values = groups.to_numpy()
    with _logging_beside_bar():
        bar = tqdm(folds, desc=f"OOF {name}", unit="fold", disable=None, leave=False)
        for k, (train_idx, valid_idx) in enumerate(bar):
            started = time.perf_counter()
            model = model_factory()
            fitted = _fit(
                model,
                X.iloc[train_idx],
                y.iloc[train_idx],
                groups.iloc[train_idx],
                None if relevance is None else relevance.iloc[train_idx],
            )
            proba = fitted.predict_proba(X.iloc[valid_idx], groups.iloc[valid_idx])
            out[valid_idx] = _normalise_per_race(
                proba, group_values[valid_idx], f"OOF {name} fold {k}"
            )
            logger.info(
                "OOF %s fold %d/%d: trained on %d rows up to %s, predicted %d rows %s..%s (%.1fs)",
                name,
                k + 1,
                len(folds),
                len(train_idx),
                positional_days.iloc[train_idx].max(),
                len(valid_idx),
                positional_days.iloc[valid_idx].min(),
                positional_days.iloc[valid_idx].max(),
                time.perf_counter() - started,
            )
    n_missing = int(np.isnan(out).sum())
    logger.info(
        "OOF %s: %d of %d rows predicted (%d in the first %d race days left NaN)",
        name,
        len(X) - n_missing,
        len(X),
        n_missing,
        min_train_days,
    )
    return pd.Series(out, index=X.index, name=name, dtype="float64")


def fit_and_predict_holdout(
    model_factory: Callable[[], Any],
    X_train: pd.DataFrame,
    y_train: pd.Series,
    groups_train: pd.Series,
    X_hold: pd.DataFrame,
    groups_hold: pd.Series,
    relevance: pd.Series | None = None,
    *,
    name: str = "p_holdout",
) -> tuple[Any, pd.Series]:
    """Fit a fresh model on all training rows and predict the holdout.

    Args:
        model_factory: Zero-argument callable returning a new, unfitted race model.
        X_train: Training features.
        y_train: 0/1 ``won`` of the training rows, aligned to ``X_train``.
        groups_train: Race id of the training rows, aligned to ``X_train``.
        X_hold: Holdout features.
        groups_hold: Race id of the holdout rows, aligned to ``X_hold``.
        relevance: Optional graded relevance of the training rows, aligned to ``X_train``.
        name: Name of the returned Series.

    Returns:
        ``(fitted_model, proba)``: the model fitted on the training rows and its per-race
        normalised holdout probabilities as a float Series on ``X_hold``'s index.

    Raises:
        TypeError: If ``X_train`` or ``X_hold`` is not a DataFrame.
        ValueError: If an input is misaligned, a race id appears in both the training and
            the holdout rows, or the model returns invalid probabilities.
    """
    _check_frame(X_train, "X_train")
    _check_frame(X_hold, "X_hold")
    y_train = aligned_series(y_train, X_train, "y_train")
    groups_train = aligned_series(groups_train, X_train, "groups_train")
    groups_hold = aligned_series(groups_hold, X_hold, "groups_hold")
    if relevance is not None:
        relevance = aligned_series(relevance, X_train, "relevance")
    shared = np.intersect1d(groups_train.unique(), groups_hold.unique())
    if shared.size:
        raise ValueError(
            f"groups_train and groups_hold share {shared.size} race ids "
            f"(e.g. {shared[:5].tolist()}): a race must be in one set only"
        )
    started = time.perf_counter()
    model = _fit(model_factory(), X_train, y_train, groups_train, relevance)
    proba = model.predict_proba(X_hold, groups_hold)
    p = _normalise_per_race(proba, groups_hold.to_numpy(), f"holdout {name}")
    logger.info(
        "holdout %s: fitted on %d rows, predicted %d rows (%.1fs)",
        name,
        len(X_train),
        len(X_hold),
        time.perf_counter() - started,
    )
    return model, pd.Series(p, index=X_hold.index, name=name, dtype="float64")
