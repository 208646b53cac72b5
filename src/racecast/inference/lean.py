"""The lean serving bundle: which zoo models the stacker leaves unused.

The stacked meta-learner (:class:`~racecast.models.stacking.StackedMetaLearner`) pools
the base models' log-probabilities with an L1 logistic regression (stage A), then
corrects with a LightGBM ranker that also reads them (stage B). A base model whose
stage-A coefficient is 0 and on which the ranker never splits does not change a single
prediction: the serving bundle need not score it (:func:`racecast.inference.bundle.build_bundle`).
What each model gets is measured on the stacker's own training rows (the out-of-fold
predictions of the training period), never on the protocol holdout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from racecast.models.base import RaceModel

__all__ = ["SKIP_MAX_WEIGHT", "skipped_models", "stacker_weights"]

#: Stacker weight at or below which :func:`build_bundle` leaves a base model out of the
#: serving bundle. 0: only models the stacker never uses (stage-A coefficient 0 and no
#: stage-B split), so the served probabilities are exactly the evaluated ones.
SKIP_MAX_WEIGHT = 0.0


def stacker_weights(stacker: RaceModel) -> dict[str, dict[str, Any]]:
    """What the stacked meta-learner gives each base model, measured on its training rows.

    For a :class:`~racecast.models.stacking.StackedMetaLearner`: the stage-A coefficient
    of the model's log-probability (L1: often exactly 0), the stage-B ranker's share of
    total split gain on that input and its number of splits. ``weight`` is the larger of
    ``|coefficient|`` and the gain share; ``unused`` says the stacker's output does not
    depend on the model at all (coefficient 0 and no split). Another stacker: empty.

    Args:
        stacker: The fitted stacker.

    Returns:
        Base model name -> ``{"stage_a_coef", "stage_b_gain_share", "stage_b_splits",
        "weight", "unused"}``.
    """
    coef = getattr(stacker, "stage_a_coef_", None)
    if coef is None:
        return {}
    prefix = getattr(stacker, "base_prefix", "p_")
    gain: dict[str, float] = {}
    splits: dict[str, int] = {}
    ranker = getattr(stacker, "ranker_", None) if getattr(stacker, "use_stage_b", False) else None
    if ranker is not None:
        booster = ranker.booster_
        gains = booster.feature_importance(importance_type="gain")
        counts = booster.feature_importance(importance_type="split")
        total = float(gains.sum())
        for name, g, c in zip(stacker.stage_b_features_, gains, counts, strict=True):
            gain[name] = float(g) / total if total > 0 else 0.0
            splits[name] = int(c)
    weights = {}
    for column, value in coef.items():
        share, count = gain.get(column, 0.0), splits.get(column, 0)
        weights[str(column).removeprefix(prefix)] = {
            "stage_a_coef": float(value),
            "stage_b_gain_share": share,
            "stage_b_splits": count,
            "weight": max(abs(float(value)), share),
            "unused": float(value) == 0.0 and count == 0,
        }
    return weights


def skipped_models(
    weights: Mapping[str, Mapping[str, Any]], max_weight: float = SKIP_MAX_WEIGHT
) -> dict[str, dict[str, Any]]:
    """The base models a bundle leaves out: unused ones, and with ``max_weight > 0`` every
    model whose ``weight`` is at most ``max_weight``.

    Args:
        weights: :func:`stacker_weights` output.
        max_weight: Largest weight of a model left out (>= 0).

    Returns:
        Name -> weights of each model left out.

    Raises:
        ValueError: If ``max_weight`` is negative or not a number.
    """
    if not max_weight >= 0:
        raise ValueError(f"skip_max_weight must be >= 0, got {max_weight!r}")
    return {
        name: dict(w)
        for name, w in weights.items()
        if w["unused"] or (max_weight > 0 and w["weight"] <= max_weight)
    }
