"""Nodes of the serving subset: the zoo models the served stack keeps, chosen on the inner split.

Scoring a race with every zoo model costs most of a request's time in a few models
(TabNet alone more than the rest together), while the stacker's holdout figures barely
depend on them. The serving bundle may therefore score a subset of the zoo, chosen on
the training period only (never the protocol holdout):

* the **inner split**: the stacker's own training rows (every base model's out-of-fold
  predictions of the training races) cut by race day; the stacker is fitted on the
  earlier days and scored on the last ``inner_fraction`` of them (mean ``-log p`` of the
  winner, single-winner races);
* models are tried in ``drop_order`` (the dearest to serve first): a model is left out
  when the stack without it (and without every model already left out) loses at most
  ``tolerance`` of that inner log loss against the full stack; the total loss is
  therefore bounded by ``tolerance``;
* the stacker and the combined track are then refitted on the subset exactly as the
  full ones are (:func:`~racecast.pipelines.model_zoo.nodes.fit_stacker`,
  :func:`~racecast.pipelines.model_zoo.nodes.fit_blend`), and their holdout predictions
  are reported beside the full stack's (``serving_stacked``, ``serving_blend`` in
  ``evaluation.json``).

The bundle serves the subset's stacker and blend, so the served probabilities equal the
subset's own evaluated holdout predictions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from racecast.evaluation.second_stage import CombinedTrack
from racecast.models.base import RaceModel
from racecast.models.split import compute_race_days, time_folds

from .nodes import _fit_stacker, _meta_inputs, _oof_log_loss, fit_blend, fit_stacker

logger = logging.getLogger(__name__)

__all__ = ["fit_serving_blend", "fit_serving_stacker", "select_serving_subset", "subset_of"]

#: ``model_zoo.serving_subset`` defaults (their one home; ``model_zoo.yml`` sets the
#: ``drop_order`` and any override). Off: the full stack is served, exactly as evaluated.
DEFAULTS: dict[str, Any] = {"enabled": False, "tolerance": 0.002, "inner_fraction": 0.3}


def _settings(params: Mapping[str, Any]) -> dict[str, Any]:
    settings = {**DEFAULTS, **(params.get("serving_subset") or {})}
    tolerance, fraction = float(settings["tolerance"]), float(settings["inner_fraction"])
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"model_zoo.serving_subset.tolerance must be >= 0, got {tolerance!r}")
    if not 0 < fraction < 1:
        raise ValueError(
            f"model_zoo.serving_subset.inner_fraction must be in (0, 1), got {fraction!r}"
        )
    return {**settings, "tolerance": tolerance, "inner_fraction": fraction}


def select_serving_subset(
    train_set: pd.DataFrame, params: dict[str, Any], **oof_predictions: pd.DataFrame
) -> dict[str, Any]:
    """Choose the zoo models the serving stack keeps, on the inner split of the training races.

    Args:
        train_set: Training runners (``model_zoo.train_set``; never the holdout).
        params: ``model_zoo`` parameters (``stacker``, ``cv``, ``serving_subset``:
            ``enabled``, ``tolerance``, ``inner_fraction``, ``drop_order``).
        **oof_predictions: ``<model>`` -> OOF prediction frame of that base model.

    Returns:
        ``{"models": kept, "dropped": [...], "tolerance", "inner_fraction",
        "inner": {"fit_races", "scored_races", "first_scored_day", "full_log_loss",
        "subset_log_loss", "trials": [{"model", "log_loss", "cost", "dropped"}]},
        "reason"}``. Disabled (or nothing to drop): every model.
    """
    names = list(oof_predictions)
    settings = _settings(params)
    order = [n for n in (settings.get("drop_order") or []) if n in oof_predictions]
    result: dict[str, Any] = {
        "models": names,
        "dropped": [],
        "tolerance": settings["tolerance"],
        "inner_fraction": settings["inner_fraction"],
        "drop_order": order,
    }
    if not settings["enabled"] or not order:
        result["reason"] = "serving subset disabled: every zoo model is served"
        return result
    stacker = params.get("stacker", {}) or {}
    cv = params.get("cv", {}) or {}
    frame, columns = _meta_inputs(train_set, oof_predictions, stacker)
    days = compute_race_days(frame)
    n_days = days.nunique()
    scored_days = max(1, round(settings["inner_fraction"] * n_days))
    [(fit_rows, score_rows)] = time_folds(days, 1, n_days - scored_days)
    fit, scored = frame.iloc[fit_rows].reset_index(drop=True), frame.iloc[score_rows]

    def inner_loss(kept: list[str]) -> float:
        cols = [c for c in columns if not c.startswith("p_") or c[2:] in kept]
        model = _fit_stacker(fit, cols, stacker, cv)
        p = model.predict_proba(scored[cols], scored["race_id"])
        return _oof_log_loss(pd.Series(p, index=scored.index), scored["won"], scored["race_id"])

    full = inner_loss(names)
    kept, trials, current = list(names), [], full
    for name in order:
        if len(kept) == 1:
            break
        trial = [n for n in kept if n != name]
        loss = inner_loss(trial)
        dropped = loss - full <= settings["tolerance"]
        trials.append(
            {"model": name, "log_loss": loss, "cost": loss - full, "dropped": bool(dropped)}
        )
        logger.info(
            "serving subset: without %s (and %s) inner log loss %.5f (full %.5f, cost %+.5f): %s",
            name,
            sorted(set(names) - set(kept)) or "none",
            loss,
            full,
            loss - full,
            "left out" if dropped else "kept",
        )
        if dropped:
            kept, current = trial, loss
    result.update(
        {
            "models": kept,
            "dropped": [n for n in names if n not in kept],
            "inner": {
                "fit_races": int(fit["race_id"].nunique()),
                "scored_races": int(scored["race_id"].nunique()),
                "first_scored_day": str(pd.Timestamp(days.iloc[score_rows].min()).date()),
                "full_log_loss": full,
                "subset_log_loss": current,
                "trials": trials,
            },
            "reason": (
                f"left out {[n for n in names if n not in kept]}: the stack without them loses "
                f"{current - full:+.5f} inner-split log loss (tolerance {settings['tolerance']}), "
                "chosen on the training races' out-of-fold rows, never the holdout"
            ),
        }
    )
    logger.info("serving subset: %s", result["reason"])
    return result


def subset_of(subset: Mapping[str, Any], frames: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``frames`` (name -> anything) of the subset's models, in zoo order."""
    kept = set(subset["models"])
    missing = kept - set(frames)
    if missing:
        raise KeyError(f"serving subset names models without inputs: {sorted(missing)}")
    return {name: value for name, value in frames.items() if name in kept}


def fit_serving_stacker(
    train_set: pd.DataFrame,
    params: dict[str, Any],
    subset: dict[str, Any],
    full_stacker: RaceModel,
    **oof_predictions: pd.DataFrame,
) -> RaceModel:
    """:func:`~racecast.pipelines.model_zoo.nodes.fit_stacker` on the subset's models
    (``full_stacker``, ``model_zoo.stacked.model``, when the subset leaves none out)."""
    if not subset.get("dropped"):
        return full_stacker
    return fit_stacker(train_set, params, **subset_of(subset, oof_predictions))


def fit_serving_blend(
    train_set: pd.DataFrame,
    params: dict[str, Any],
    subset: dict[str, Any],
    full_blend: CombinedTrack,
    **oof_predictions: pd.DataFrame,
) -> CombinedTrack:
    """:func:`~racecast.pipelines.model_zoo.nodes.fit_blend` on the subset's models
    (``full_blend``, ``model_zoo.blend.model``, when the subset leaves none out)."""
    if not subset.get("dropped"):
        return full_blend
    track, _ = fit_blend(train_set, params, **subset_of(subset, oof_predictions))
    return track
