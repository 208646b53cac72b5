"""Nodes of the model_zoo pipeline: protocol split, walk-forward OOF, refits, stacking, blend.

Everything follows ``docs/evaluation-protocol.md``:

* the holdout is the last 20% of races cut at a whole race day
  (:func:`racecast.models.split.holdout_split`);
* inside training, every base model produces walk-forward out-of-fold (OOF)
  probabilities (expanding folds by race day, the first ``min_train_fraction`` of the
  training race days never predicted), then is refitted on all training races and
  predicts the holdout;
* the stacked meta-learner is fitted on OOF rows only;
* the combined track (``market_corrected``, the Benter blend, the residual booster and
  the decision between them) is fitted and decided by rolling origin on training races
  (:mod:`racecast.evaluation.second_stage`), which also decides which tracks may be
  staked (``blend.validation_["staking"]``, :mod:`racecast.evaluation.stakeability`).

Fundamental-track models only ever see ``FUNDAMENTAL_FEATURES`` (no odds-derived input).
Prediction frames have the columns ``race_id, horse_id, off_time, p``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from racecast.evaluation.second_stage import (
    CANDIDATES,
    CombinedTrack,
    market_inputs,
    rolling_second_stage,
)
from racecast.features.specs import FUNDAMENTAL_FEATURES
from racecast.models.base import RaceModel, relevance_from_position
from racecast.models.factory import build_model
from racecast.models.oof import out_of_fold_predictions
from racecast.models.split import TIME_ORDER, compute_race_days, holdout_split

logger = logging.getLogger(__name__)

PREDICTION_KEYS = ["race_id", "horse_id", "off_time"]
"""Key columns of every prediction frame (plus the probability column ``p``)."""

LABELS = ["won", "position"]


# --------------------------------------------------------------------------- helpers


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in time order (off time, race id, horse id) with a fresh index.

    A frame already in that order (the zoo's train and holdout sets are written in it)
    comes back as a shallow copy with a fresh index: what the stable sort would give,
    without copying every column (about a second per fit on the Hong Kong training set).
    Callers read the result; they never write into it.
    """
    keys = pd.MultiIndex.from_frame(frame[TIME_ORDER])
    if keys.is_monotonic_increasing and not frame[TIME_ORDER].isna().to_numpy().any():
        return frame.set_axis(pd.RangeIndex(len(frame)), copy=False)
    return frame.sort_values(TIME_ORDER, kind="mergesort").reset_index(drop=True)


def _xyg(frame: pd.DataFrame, features: list[str]) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """(X, y, groups) of a runner frame."""
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise KeyError(f"training set lacks feature columns {missing[:10]}")
    return frame[features], frame["won"].astype("int64"), frame["race_id"]


def _relevance(
    frame: pd.DataFrame, cv: Mapping[str, Any], model_name: str | None = None
) -> pd.Series | None:
    """Graded relevance from finishing position; null top = use ``won``.

    The top is ``cv.relevance_top_by_model[model_name]`` when the model has one (e.g.
    the exploded conditional logit, which reads that many places), else
    ``cv.relevance_top``.
    """
    by_model = cv.get("relevance_top_by_model") or {}
    top = by_model[model_name] if model_name in by_model else cv.get("relevance_top")
    if not top:
        return None
    return relevance_from_position(frame["position"].astype("float64"), top=int(top))


def _min_train_days(race_days: pd.Series, cv: Mapping[str, Any], n_folds: int) -> int:
    """Race days always in training before the first OOF block (from a fraction)."""
    n_days = race_days.nunique()
    fraction = float(cv.get("min_train_fraction", 0.4))
    if not 0.0 < fraction < 1.0:
        raise ValueError(
            f"parameter model_zoo.cv.min_train_fraction must be in (0, 1), got {fraction}"
        )
    days = max(1, math.ceil(fraction * n_days))
    if days + n_folds > n_days:
        raise ValueError(
            f"training has {n_days} race days: too few for min_train_fraction={fraction} "
            f"and n_folds={n_folds}"
        )
    return days


def _spec_with_tuning(
    name: str, spec: Mapping[str, Any], tuned_params: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The model spec, with the tuned kwargs when ``tuned_params`` is about this model."""
    spec = copy.deepcopy(dict(spec))
    if tuned_params and tuned_params.get("model") == name and tuned_params.get("tuned"):
        spec["kwargs"] = {**(spec.get("kwargs") or {}), **tuned_params["kwargs"]}
    return spec


def _prediction_frame(frame: pd.DataFrame, p: pd.Series | np.ndarray) -> pd.DataFrame:
    out = frame[PREDICTION_KEYS].copy()
    out["p"] = np.asarray(p, dtype="float64")
    return out


# --------------------------------------------------------------------------- split


def split_training_set(
    training_set: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Protocol split: the holdout is the last ``holdout_fraction`` of races, whole days.

    Args:
        training_set: One row per runner of races with a result.
        params: ``model_zoo`` parameters (``holdout_fraction``).

    Returns:
        ``(train_set, holdout_set, split_info)``; both sets sorted in time order.
        ``split_info``: ``holdout_start`` (ISO date), ``n_train_races``,
        ``n_holdout_races``, ``n_train_runners``, ``n_holdout_runners``.
    """
    fraction = float(params.get("holdout_fraction", 0.2))
    split = holdout_split(training_set, fraction)
    holdout_mask = split.holdout_mask(training_set)
    train = _sorted(training_set[~holdout_mask])
    hold = _sorted(training_set[holdout_mask])
    info = {
        "holdout_fraction": fraction,
        "holdout_start": split.holdout_start.date().isoformat(),
        "n_train_races": len(split.train_race_ids),
        "n_holdout_races": len(split.holdout_race_ids),
        "n_train_runners": len(train),
        "n_holdout_runners": len(hold),
    }
    logger.info("split: %s", info)
    return train, hold, info


# --------------------------------------------------------------------------- tuning


def tune_hyperparameters(train_set: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna search of the LightGBM ranker's key hyper-parameters (training races only).

    Runs only when ``model_zoo.tune`` is true; otherwise returns the configured kwargs.
    Each trial scores walk-forward OOF predictions (``tuning.n_folds`` expanding folds
    by race day inside the training races) by mean log loss of the winner; the holdout
    is never seen.

    Args:
        train_set: Training runners.
        params: ``model_zoo`` parameters (``tune``, ``tuning``, ``models``, ``cv``).

    Returns:
        ``{"model", "tuned", "kwargs", "best_log_loss", "n_trials"}``: ``kwargs`` are the
        kwargs the model is fitted with (the configured ones when not tuned).
    """
    tuning = params.get("tuning", {}) or {}
    name = tuning.get("model", "lgbm_ranker")
    models = params.get("models", {}) or {}
    base_kwargs = dict((models.get(name) or {}).get("kwargs") or {})
    result: dict[str, Any] = {
        "model": name,
        "tuned": False,
        "kwargs": base_kwargs,
        "best_log_loss": None,
        "n_trials": 0,
    }
    if not params.get("tune", False):
        logger.info("tuning disabled (model_zoo.tune=false): %s keeps its configured kwargs", name)
        return result
    if name not in models:
        logger.warning("tuning: model %r is not in model_zoo.models; skipped", name)
        return result

    import optuna  # imported here: only needed when tuning

    cv = params.get("cv", {}) or {}
    n_folds = int(tuning.get("n_folds", 2))
    train = _sorted(train_set)
    X, y, groups = _xyg(train, FUNDAMENTAL_FEATURES)
    days = compute_race_days(train)
    min_days = _min_train_days(days, cv, n_folds)
    relevance = _relevance(train, cv, name)
    spec = models[name]

    def objective(trial: optuna.Trial) -> float:
        kwargs = {
            **base_kwargs,
            "n_estimators": trial.suggest_int("n_estimators", 50, 400, step=50),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 63),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        }
        trial_spec = {**spec, "kwargs": kwargs}
        p = out_of_fold_predictions(
            lambda: build_model(trial_spec),
            X,
            y,
            groups,
            days,
            n_folds,
            min_days,
            relevance,
            name=f"tune {name}",
        )
        return _oof_log_loss(p, y, groups)

    sampler = optuna.samplers.TPESampler(seed=int(tuning.get("seed", 0)))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=int(tuning.get("n_trials", 20)))
    result.update(
        tuned=True,
        kwargs={**base_kwargs, **study.best_params},
        best_log_loss=float(study.best_value),
        n_trials=len(study.trials),
    )
    logger.info(
        "tuning %s: best OOF log loss %.5f with %s", name, study.best_value, study.best_params
    )
    return result


def _oof_log_loss(p: pd.Series, y: pd.Series, groups: pd.Series) -> float:
    """Mean ``-log p_winner`` over predicted races with exactly one winner."""
    frame = pd.DataFrame({"p": p, "y": y, "g": groups}).dropna(subset=["p"])
    winners = frame.groupby("g")["y"].transform("sum")
    chosen = frame[(winners == 1) & (frame["y"] == 1)]
    return float(-np.log(np.clip(chosen["p"].to_numpy(), 1e-12, 1.0)).mean())


# --------------------------------------------------------------------------- base models


def fit_oof(
    train_set: pd.DataFrame,
    spec: dict[str, Any],
    cv: dict[str, Any],
    tuned_params: dict[str, Any],
    *,
    model_name: str,
) -> pd.DataFrame:
    """Walk-forward out-of-fold probabilities of one base model on the training races.

    Args:
        train_set: Training runners.
        spec: The model's spec (``module``, ``class``, ``kwargs``).
        cv: ``model_zoo.cv`` (``n_folds``, ``min_train_fraction``, ``relevance_top``,
            ``relevance_top_by_model``).
        tuned_params: Output of :func:`tune_hyperparameters`.
        model_name: The zoo name of the model (bound when the pipeline is built).

    Returns:
        Prediction frame of every training runner; ``p`` is NaN for the first race days
        (never predicted).
    """
    train = _sorted(train_set)
    X, y, groups = _xyg(train, FUNDAMENTAL_FEATURES)
    days = compute_race_days(train)
    n_folds = int(cv.get("n_folds", 3))
    spec = _spec_with_tuning(model_name, spec, tuned_params)
    p = out_of_fold_predictions(
        lambda: build_model(spec),
        X,
        y,
        groups,
        days,
        n_folds,
        _min_train_days(days, cv, n_folds),
        _relevance(train, cv, model_name),
        name=model_name,
    )
    return _prediction_frame(train, p)


def fit_model(
    train_set: pd.DataFrame,
    spec: dict[str, Any],
    cv: dict[str, Any],
    tuned_params: dict[str, Any],
    *,
    model_name: str,
) -> RaceModel:
    """Refit one base model on every training race.

    Args:
        train_set: Training runners.
        spec: The model's spec.
        cv: ``model_zoo.cv`` (``relevance_top``, ``relevance_top_by_model``).
        tuned_params: Output of :func:`tune_hyperparameters`.
        model_name: The zoo name of the model.

    Returns:
        The fitted model.
    """
    started = time.perf_counter()
    train = _sorted(train_set)
    X, y, groups = _xyg(train, FUNDAMENTAL_FEATURES)
    model = build_model(_spec_with_tuning(model_name, spec, tuned_params))
    relevance = _relevance(train, cv, model_name)
    if relevance is None:
        model.fit(X, y, groups)
    else:
        model.fit(X, y, groups, relevance=relevance)
    logger.info(
        "%s: fitted on %d runners (%.1fs)", model_name, len(train), time.perf_counter() - started
    )
    return model


def predict_holdout(model: RaceModel, holdout_set: pd.DataFrame) -> pd.DataFrame:
    """Holdout probabilities of a fitted model (per-race normalised).

    Args:
        model: A fitted race model (any model whose inputs are columns of the holdout).
        holdout_set: Holdout runners.

    Returns:
        Prediction frame of every holdout runner.
    """
    hold = _sorted(holdout_set)
    columns = list(model.feature_names_in_)
    p = model.predict_proba(hold[columns], hold["race_id"])
    p = pd.Series(p, index=hold.index)
    return _prediction_frame(hold, p / p.groupby(hold["race_id"]).transform("sum"))


# --------------------------------------------------------------------------- stacking


def _stack_frame(
    base: pd.DataFrame, predictions: Mapping[str, pd.DataFrame], features: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """``base`` rows joined with ``p_<model>`` columns and kept in base order."""
    keep = list(dict.fromkeys([*PREDICTION_KEYS, *LABELS, *features]))
    frame = _sorted(base[keep])
    columns = []
    for name, pred in predictions.items():
        col = f"p_{name}"
        joined = pred[["race_id", "horse_id", "p"]].rename(columns={"p": col})
        frame = frame.merge(joined, on=["race_id", "horse_id"], how="left", validate="one_to_one")
        columns.append(col)
    return frame, columns


def _meta_inputs(
    train_set: pd.DataFrame, oof: Mapping[str, pd.DataFrame], stacker: Mapping[str, Any]
) -> tuple[pd.DataFrame, list[str]]:
    """OOF rows (every base model predicted) with base columns and the top features."""
    features = list(stacker.get("top_features") or [])
    bad = [f for f in features if f not in FUNDAMENTAL_FEATURES]
    if bad:
        raise ValueError(
            f"parameter model_zoo.stacker.top_features: {bad} are not fundamental features"
        )
    frame, base_cols = _stack_frame(train_set, oof, features)
    predicted = frame[base_cols].notna().all(axis=1)
    race_complete = predicted.groupby(frame["race_id"]).transform("all")
    frame = frame[race_complete].reset_index(drop=True)
    if frame.empty:
        raise ValueError("no training race has out-of-fold predictions of every base model")
    return frame, base_cols + features


def _fit_stacker(
    frame: pd.DataFrame, columns: list[str], stacker: Mapping[str, Any], cv: Mapping[str, Any]
) -> RaceModel:
    spec = {
        "module": "racecast.models.stacking",
        "class": "StackedMetaLearner",
        "kwargs": dict(stacker.get("kwargs") or {}),
    }
    model = build_model(spec)
    relevance = _relevance(frame, cv)
    X, y, groups = frame[columns], frame["won"].astype("int64"), frame["race_id"]
    if relevance is None:
        return model.fit(X, y, groups)
    return model.fit(X, y, groups, relevance=relevance)


def fit_stacker(
    train_set: pd.DataFrame, params: dict[str, Any], **oof_predictions: pd.DataFrame
) -> RaceModel:
    """Fit the stacked meta-learner on the OOF rows (every base model predicted).

    Args:
        train_set: Training runners (labels and the top features).
        params: ``model_zoo`` parameters (``stacker``, ``cv``).
        **oof_predictions: ``<model>`` -> OOF prediction frame of that base model.

    Returns:
        The fitted :class:`~racecast.models.stacking.StackedMetaLearner`; its inputs are
        ``p_<model>`` columns and ``stacker.top_features``.
    """
    stacker = params.get("stacker", {}) or {}
    frame, columns = _meta_inputs(train_set, oof_predictions, stacker)
    model = _fit_stacker(frame, columns, stacker, params.get("cv", {}) or {})
    logger.info(
        "stacker: fitted on %d OOF runners of %d races with %s",
        len(frame),
        frame["race_id"].nunique(),
        columns,
    )
    return model


def predict_stacked_holdout(
    stacked_model: RaceModel, holdout_set: pd.DataFrame, **holdout_predictions: pd.DataFrame
) -> pd.DataFrame:
    """Holdout probabilities of the stacker from the base models' holdout probabilities.

    Args:
        stacked_model: Output of :func:`fit_stacker`.
        holdout_set: Holdout runners.
        **holdout_predictions: ``<model>`` -> holdout prediction frame of that base model.

    Returns:
        Prediction frame of every holdout runner.
    """
    extra = [c for c in stacked_model.feature_names_in_ if not str(c).startswith("p_")]
    frame, _ = _stack_frame(holdout_set, holdout_predictions, extra)
    return predict_holdout(stacked_model, frame)


def fit_blend(
    train_set: pd.DataFrame, params: dict[str, Any], **oof_predictions: pd.DataFrame
) -> tuple[CombinedTrack, pd.DataFrame]:
    """Fit and decide the combined track by rolling origin over the training races.

    :func:`~racecast.evaluation.second_stage.rolling_second_stage`: stacked
    out-of-fold fundamental probabilities over the out-of-fold race days, then
    ``market_corrected``, the Benter blend and the residual booster fitted and tested
    block by block, the decision rule (:mod:`racecast.evaluation.decision`), and the
    final fits on every training race. ``validation_["staking"]`` says which tracks may
    be staked (the combined track never when it is ``market_corrected``).

    Args:
        train_set: Training runners (labels, odds, cap flag, features).
        params: ``model_zoo`` parameters (``stacker``, ``second_stage``, ``cv``).
        **oof_predictions: ``<model>`` -> OOF prediction frame of that base model.

    Returns:
        The fitted :class:`~racecast.evaluation.second_stage.CombinedTrack`, and the
        stacked out-of-fold predictions (``model_zoo.stacked.oof_predictions``: the
        stacked model's reference predictions for monitoring).
    """
    stacker = params.get("stacker", {}) or {}
    cv = params.get("cv", {}) or {}
    frame, columns = _meta_inputs(train_set, oof_predictions, stacker)
    track, stacked = rolling_second_stage(
        _sorted(train_set),
        frame,
        columns,
        lambda rows: _fit_stacker(rows, columns, stacker, cv),
        FUNDAMENTAL_FEATURES,
        params.get("second_stage", {}) or {},
    )
    for track_name, figures in track.validation_["staking"].items():
        logger.info(
            "staking validation, %s track: %s", track_name, figures["reason"] or "stakeable"
        )
    return track, _prediction_frame(stacked, stacked["p_fund"])


def _holdout_candidates(
    blend_model: CombinedTrack, stacked_predictions: pd.DataFrame, holdout_set: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Holdout rows (time order) and every combined-track candidate's probabilities.

    Races without a complete market get NaN from every candidate.
    """
    hold = _sorted(holdout_set)
    frame = hold.merge(
        stacked_predictions[["race_id", "horse_id", "p"]].rename(columns={"p": "p_fund"}),
        on=["race_id", "horse_id"],
        how="left",
        validate="one_to_one",
    )
    p_market, capped, has = market_inputs(frame)
    out = {
        name: np.full(len(frame), np.nan) for name in ("market_corrected", *CANDIDATES, "combined")
    }
    if has.any():
        sub = frame[has]
        features = list(blend_model.residual_.feature_names_in_)
        preds = blend_model.predict_candidates(
            sub["p_fund"].to_numpy(dtype=float),
            p_market[has],
            capped[has],
            sub[features].to_numpy(dtype=float, na_value=np.nan),
            sub["race_id"].to_numpy(),
        )
        for name, values in preds.items():
            out[name][has] = values
    return frame, out


def predict_blend_holdout(
    blend_model: CombinedTrack, stacked_predictions: pd.DataFrame, holdout_set: pd.DataFrame
) -> pd.DataFrame:
    """Holdout probabilities of the combined track (the candidate the rule chose).

    Races without a complete market (some runner lacks final odds) keep the stacker's
    probability.

    Args:
        blend_model: Output of :func:`fit_blend`.
        stacked_predictions: Holdout prediction frame of the stacker.
        holdout_set: Holdout runners (``odds_final``, ``odds_capped``, features).

    Returns:
        Prediction frame of every holdout runner.
    """
    frame, preds = _holdout_candidates(blend_model, stacked_predictions, holdout_set)
    combined = preds["combined"]
    no_market = np.isnan(combined)
    if no_market.any():
        logger.info(
            "combined: %d holdout races without a complete market keep the stacker's probability",
            frame.loc[no_market, "race_id"].nunique(),
        )
    return _prediction_frame(frame, np.where(no_market, frame["p_fund"], combined))


def predict_candidates_holdout(
    blend_model: CombinedTrack, stacked_predictions: pd.DataFrame, holdout_set: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Holdout probabilities of ``market_corrected`` and of each combined-track candidate.

    Returns:
        Prediction frames of ``market_corrected``, ``benter`` and ``residual`` (NaN in
        races without a complete market).
    """
    frame, preds = _holdout_candidates(blend_model, stacked_predictions, holdout_set)
    return tuple(
        _prediction_frame(frame, preds[name]) for name in ("market_corrected", *CANDIDATES)
    )
