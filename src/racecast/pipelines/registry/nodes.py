"""Nodes of the registry pipeline: assemble the inference bundle, register it in MLflow.

The bundle holds the model_zoo pipeline's fitted base models, stacker and blend
(:mod:`racecast.inference.bundle`); registration (:mod:`racecast.inference.registry`) logs it
as ``racecast-win`` with alias ``challenger`` and promotes it to ``champion`` only when
its stacked model's holdout log loss beats the champion's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from racecast.data.datasets import loaded
from racecast.evaluation.blend import BenterBlend
from racecast.inference.bundle import EXPLAIN_MODEL, InferenceBundle, build_bundle
from racecast.models.base import RaceModel

logger = logging.getLogger(__name__)

#: Evaluation-report models kept in the bundle's ``holdout_metrics``.
BUNDLE_METRIC_MODELS = ("stacked", "blend", "market")

#: Report model whose holdout log loss decides the promotion (the fundamental track).
SELECTION_MODEL = "stacked"
#: The serving subset's report models (racecast.pipelines.model_zoo.serving): when the
#: report has them, the bundle serves them, so they stand for ``stacked`` and ``blend``.
SERVED_AS = {"stacked": "serving_stacked", "blend": "serving_blend"}


def _served_models(evaluation_report: Mapping[str, Any]) -> dict[str, Any]:
    """The report's models as the bundle serves them: ``stacked`` and ``blend`` are the
    serving subset's figures when the report has them (the full stack's are kept as
    ``full_stacked`` and ``full_blend``)."""
    models = dict(evaluation_report.get("models", {}) or {})
    for name, served in SERVED_AS.items():
        if served in models:
            if name in models:
                models[f"full_{name}"] = models[name]
            models[name] = models[served]
    return models


def _holdout_log_loss(evaluation_report: Mapping[str, Any]) -> float:
    """Holdout log loss of the served stack (``serving_stacked`` when the report has it,
    else ``stacked``), checked."""
    value = (_served_models(evaluation_report).get(SELECTION_MODEL) or {}).get("log_loss")
    try:
        loss = float(value)
    except (TypeError, ValueError):
        loss = math.nan
    if not math.isfinite(loss):
        raise ValueError(
            f"evaluation_report: models.{SELECTION_MODEL}.log_loss must be a finite number, "
            f"got {value!r}"
        )
    return loss


def build_inference_bundle(
    train_set: pd.DataFrame,
    evaluation_report: dict[str, Any],
    stacker: RaceModel,
    blend: BenterBlend,
    feature_service: str,
    skip_max_weight: float,
    serving_subset: dict[str, Any] | None = None,
    **base_models: RaceModel,
) -> InferenceBundle:
    """Assemble the inference bundle from the model zoo's fitted models.

    Args:
        train_set: Training runners (``model_zoo.train_set``); the last ``off_time``
            becomes ``trained_until``.
        evaluation_report: Holdout report of the evaluation pipeline.
        stacker: The served stacker: ``model_zoo.serving_stacked.model`` (the serving
            subset's) or ``model_zoo.stacked.model``.
        blend: The served combined track: ``model_zoo.serving_blend.model`` or
            ``model_zoo.blend.model``.
        feature_service: Feast feature service the bundle scores
            (``features.training_service``).
        skip_max_weight: ``registry.skip_max_weight``: base models with at most this
            stacker weight are left out of the bundle (0: only models the stacker never
            uses; :mod:`racecast.inference.lean`).
        serving_subset: ``model_zoo.serving_subset`` (None: the full zoo is served);
            only its models go into the bundle, and the report's ``serving_stacked`` /
            ``serving_blend`` figures become the bundle's ``stacked`` / ``blend``; the
            LightGBM ranker stays in the bundle for explanations when it is left out.
        **base_models: ``<model>`` -> ``model_zoo.<model>.model`` for every zoo model.

    Returns:
        The :class:`~racecast.inference.bundle.InferenceBundle`.

    Raises:
        KeyError: If ``train_set`` has no ``off_time`` column.
        ValueError: If ``train_set`` is empty or the models do not fit together.
    """
    if "off_time" not in train_set.columns:
        raise KeyError("model_zoo.train_set lacks the off_time column")
    if train_set.empty:
        raise ValueError("model_zoo.train_set is empty: there is no trained model to bundle")
    models = _served_models(evaluation_report)
    metrics = {
        name: dict(models[name])
        for name in (*BUNDLE_METRIC_MODELS, *(f"full_{n}" for n in SERVED_AS))
        if name in models
    }
    explain_model = base_models.get(EXPLAIN_MODEL)
    if serving_subset is not None:
        kept = set(serving_subset["models"])
        base_models = {name: model for name, model in base_models.items() if name in kept}
    return build_bundle(
        base_models,
        stacker,
        blend,
        feature_service=feature_service,
        trained_until=pd.Timestamp(train_set["off_time"].max()),
        holdout_metrics=metrics,
        skip_max_weight=float(skip_max_weight),
        serving_subset=serving_subset,
        explain_model=explain_model,
    )


def register_bundle(
    inference_bundle: InferenceBundle | Callable[[], InferenceBundle],
    evaluation_report: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Register the bundle in MLflow as challenger; promote it to champion if it is better.

    Runs inside kedro-mlflow's active run (or a new run when there is none). With
    ``registry.enabled: false`` nothing touches MLflow.

    Args:
        inference_bundle: Output of :func:`build_inference_bundle` (or the function that
            loads it: the catalog's ``LazyPickleDataset``).
        evaluation_report: Holdout report; the served stack's log loss
            (``models.serving_stacked``, else ``models.stacked``) decides promotion.
        params: ``registry`` parameters (``enabled``, ``model_name``).

    Returns:
        ``{"enabled", "model_name", "version", "aliases", "promoted", "holdout_log_loss",
        "champion_version", "champion_log_loss", "fingerprint", ...}``: the champion
        fields describe the champion before this registration; with the registry
        disabled, ``version`` is None and ``reason`` says why.

    Raises:
        ValueError: If the report has no finite stacked log loss or ``model_name`` is
            empty.
    """
    loss = _holdout_log_loss(evaluation_report)
    inference_bundle = loaded(inference_bundle)
    name = str(params.get("model_name") or "")
    if not name:
        raise ValueError("parameter registry.model_name must name the registered model")
    if not params.get("enabled", True):
        logger.info("registry disabled (registry.enabled=false): %s not registered", name)
        return {
            "enabled": False,
            "model_name": name,
            "version": None,
            "aliases": [],
            "promoted": False,
            "holdout_log_loss": loss,
            "champion_version": None,
            "champion_log_loss": None,
            "fingerprint": inference_bundle.fingerprint,
            "reason": "registry.enabled is false",
        }
    from racecast.inference.registry import register_model  # imports MLflow

    result = register_model(inference_bundle, loss, model_name=name)
    return {"enabled": True, **result, "fingerprint": inference_bundle.fingerprint}
