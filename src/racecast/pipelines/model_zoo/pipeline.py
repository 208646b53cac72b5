"""model_zoo pipeline definition.

One namespaced modular pipeline per zoo model (``model_zoo.<model>``), built in a loop
over :data:`ZOO_MODELS`, which must list exactly the models of
``conf/base/parameters/model_zoo.yml`` (a test checks it).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from racecast.runners import WORKER_TAG

from .nodes import (
    fit_blend,
    fit_model,
    fit_oof,
    fit_stacker,
    predict_blend_holdout,
    predict_candidates_holdout,
    predict_holdout,
    predict_stacked_holdout,
    split_training_set,
    tune_hyperparameters,
)
from .serving import fit_serving_blend, fit_serving_stacker, select_serving_subset

#: The default zoo: the keys of ``model_zoo.models`` in conf/base/parameters/model_zoo.yml.
#: ``semantic`` (SemanticScorer) is left out: the training set has no text column.
ZOO_MODELS: tuple[str, ...] = (
    "conditional_logit",
    "lgbm_ranker",
    "lgbm_classifier",
    "catboost_ranker",
    "xgb_ranker",
    "logistic",
    "random_forest",
    "tabnet",
    "race_set_attention",
)


#: Keyword names of the stacking and serving nodes that a zoo model must not take.
_RESERVED = frozenset(
    {"train_set", "params", "subset", "full_stacker", "full_blend", "stacked_model", "holdout_set"}
)


class _NamedPartial(partial):
    """A ``partial`` that keeps its ``__name__`` through multiprocessing.

    ``multiprocessing`` pickles a plain ``partial`` without its ``__dict__`` (so a
    worker of racecast.runners.ParallelRunner would log the node as ``<partial>``); a
    subclass is pickled by ``partial.__reduce__``, which keeps it.
    """


def _bound(func, model_name: str):
    """``func`` with ``model_name`` bound, keeping its name for Kedro."""
    return update_wrapper(_NamedPartial(func, model_name=model_name), func)


def model_pipeline(name: str) -> Pipeline:
    """The modular pipeline of one zoo model, namespace ``model_zoo.<name>``.

    Args:
        name: Key of the model in ``model_zoo.models``.

    Returns:
        ``fit_oof`` -> ``model_zoo.<name>.oof_predictions``, ``fit_model`` ->
        ``model_zoo.<name>.model``, ``predict_holdout`` ->
        ``model_zoo.<name>.holdout_predictions``.
    """
    template = Pipeline(
        [
            node(
                _bound(fit_oof, name),
                inputs=["train_set", "params:spec", "params:cv", "tuned_params"],
                outputs="oof_predictions",
                name="fit_oof",
            ),
            node(
                _bound(fit_model, name),
                inputs=["train_set", "params:spec", "params:cv", "tuned_params"],
                outputs="model",
                name="fit_model",
            ),
            node(
                predict_holdout,
                inputs=["model", "holdout_set"],
                outputs="holdout_predictions",
                name="predict_holdout",
            ),
        ]
    )
    return Pipeline(
        template,
        namespace=f"model_zoo.{name}",
        inputs={
            "train_set": "model_zoo.train_set",
            "holdout_set": "model_zoo.holdout_set",
            "tuned_params": "model_zoo.tuned_params",
        },
        parameters={
            "params:spec": f"params:model_zoo.models.{name}",
            "params:cv": "params:model_zoo.cv",
        },
        tags=["model_zoo", f"model_zoo.{name}", WORKER_TAG],
    )


def create_pipeline(models: Iterable[str] | None = None, **kwargs) -> Pipeline:
    """Create the model_zoo pipeline.

    Args:
        models: Zoo model names (default :data:`ZOO_MODELS`); each needs
            ``model_zoo.models.<name>`` in the parameters.

    Returns:
        split -> tune -> per-model (OOF, refit, holdout) -> stacker -> blend, and the
        serving subset (:mod:`.serving`: chosen on the inner split, its own stacker and
        blend and their holdout predictions).
    """
    names = list(ZOO_MODELS if models is None else models)
    if not names:
        raise ValueError("the model zoo needs at least one model")
    clash = sorted(set(names) & _RESERVED)
    if clash:
        raise ValueError(f"zoo model names {clash} clash with the stacking nodes' inputs")
    oof_inputs = {name: f"model_zoo.{name}.oof_predictions" for name in names}
    holdout_inputs = {name: f"model_zoo.{name}.holdout_predictions" for name in names}
    shared = Pipeline(
        [
            node(
                split_training_set,
                inputs=["training_set", "params:model_zoo"],
                outputs=["model_zoo.train_set", "model_zoo.holdout_set", "model_zoo.split_info"],
                name="split_training_set",
                namespace="model_zoo",
            ),
            node(
                tune_hyperparameters,
                inputs=["model_zoo.train_set", "params:model_zoo"],
                outputs="model_zoo.tuned_params",
                name="tune_hyperparameters",
                namespace="model_zoo",
            ),
        ],
        tags=["model_zoo"],
    )
    stacking = Pipeline(
        [
            node(
                fit_stacker,
                inputs={
                    "train_set": "model_zoo.train_set",
                    "params": "params:model_zoo",
                    **oof_inputs,
                },
                outputs="model_zoo.stacked.model",
                name="fit_stacker",
                namespace="model_zoo",
                tags=[WORKER_TAG],
            ),
            node(
                predict_stacked_holdout,
                inputs={
                    "stacked_model": "model_zoo.stacked.model",
                    "holdout_set": "model_zoo.holdout_set",
                    **holdout_inputs,
                },
                outputs="model_zoo.stacked.holdout_predictions",
                name="predict_stacked_holdout",
                namespace="model_zoo",
            ),
            node(
                fit_blend,
                inputs={
                    "train_set": "model_zoo.train_set",
                    "params": "params:model_zoo",
                    **oof_inputs,
                },
                outputs=["model_zoo.blend.model", "model_zoo.stacked.oof_predictions"],
                name="fit_blend",
                namespace="model_zoo",
                tags=[WORKER_TAG],
            ),
            node(
                predict_blend_holdout,
                inputs=[
                    "model_zoo.blend.model",
                    "model_zoo.stacked.holdout_predictions",
                    "model_zoo.holdout_set",
                ],
                outputs="model_zoo.blend.holdout_predictions",
                name="predict_blend_holdout",
                namespace="model_zoo",
            ),
            node(
                predict_candidates_holdout,
                inputs=[
                    "model_zoo.blend.model",
                    "model_zoo.stacked.holdout_predictions",
                    "model_zoo.holdout_set",
                ],
                outputs=[
                    "model_zoo.market_corrected.holdout_predictions",
                    "model_zoo.benter.holdout_predictions",
                    "model_zoo.residual.holdout_predictions",
                ],
                name="predict_candidates_holdout",
                namespace="model_zoo",
            ),
        ],
        tags=["model_zoo"],
    )
    serving = Pipeline(
        [
            node(
                select_serving_subset,
                inputs={
                    "train_set": "model_zoo.train_set",
                    "params": "params:model_zoo",
                    **oof_inputs,
                },
                outputs="model_zoo.serving_subset",
                name="select_serving_subset",
                namespace="model_zoo",
                tags=[WORKER_TAG],
            ),
            node(
                fit_serving_stacker,
                inputs={
                    "train_set": "model_zoo.train_set",
                    "params": "params:model_zoo",
                    "subset": "model_zoo.serving_subset",
                    "full_stacker": "model_zoo.stacked.model",
                    **oof_inputs,
                },
                outputs="model_zoo.serving_stacked.model",
                name="fit_serving_stacker",
                namespace="model_zoo",
                tags=[WORKER_TAG],
            ),
            node(
                predict_stacked_holdout,
                inputs={
                    "stacked_model": "model_zoo.serving_stacked.model",
                    "holdout_set": "model_zoo.holdout_set",
                    **holdout_inputs,
                },
                outputs="model_zoo.serving_stacked.holdout_predictions",
                name="predict_serving_stacked_holdout",
                namespace="model_zoo",
            ),
            node(
                fit_serving_blend,
                inputs={
                    "train_set": "model_zoo.train_set",
                    "params": "params:model_zoo",
                    "subset": "model_zoo.serving_subset",
                    "full_blend": "model_zoo.blend.model",
                    **oof_inputs,
                },
                outputs="model_zoo.serving_blend.model",
                name="fit_serving_blend",
                namespace="model_zoo",
                tags=[WORKER_TAG],
            ),
            node(
                predict_blend_holdout,
                inputs=[
                    "model_zoo.serving_blend.model",
                    "model_zoo.serving_stacked.holdout_predictions",
                    "model_zoo.holdout_set",
                ],
                outputs="model_zoo.serving_blend.holdout_predictions",
                name="predict_serving_blend_holdout",
                namespace="model_zoo",
            ),
        ],
        tags=["model_zoo"],
    )
    return (
        shared
        + sum((model_pipeline(name) for name in names), start=Pipeline([]))
        + stacking
        + serving
    )
