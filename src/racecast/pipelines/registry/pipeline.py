"""registry pipeline definition."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Pipeline, node

from racecast.pipelines.model_zoo.pipeline import ZOO_MODELS

from .nodes import build_inference_bundle, register_bundle

#: Keyword names of ``build_inference_bundle`` that a zoo model must not take.
_RESERVED = frozenset(
    {
        "train_set",
        "evaluation_report",
        "stacker",
        "blend",
        "feature_service",
        "skip_max_weight",
        "serving_subset",
    }
)


def create_pipeline(models: Iterable[str] | None = None, **kwargs) -> Pipeline:
    """Create the registry pipeline (runs after model_zoo and evaluation).

    Args:
        models: Zoo base models in the bundle (default: the model_zoo's ``ZOO_MODELS``);
            the serving subset's models among them are bundled with the subset's stacker
            and blend (``model_zoo.serving_*``).

    Returns:
        ``build_inference_bundle`` -> ``inference_bundle``, then ``register_bundle`` ->
        ``registry_result``.
    """
    names = list(ZOO_MODELS if models is None else models)
    if not names:
        raise ValueError("the inference bundle needs at least one zoo model")
    clash = sorted(_RESERVED & set(names))
    if clash:
        raise ValueError(f"zoo model names {clash} clash with build_inference_bundle's inputs")
    return Pipeline(
        [
            node(
                build_inference_bundle,
                inputs={
                    "train_set": "model_zoo.train_set",
                    "evaluation_report": "evaluation_report",
                    "stacker": "model_zoo.serving_stacked.model",
                    "blend": "model_zoo.serving_blend.model",
                    "feature_service": "params:features.training_service",
                    "skip_max_weight": "params:registry.skip_max_weight",
                    "serving_subset": "model_zoo.serving_subset",
                    **{name: f"model_zoo.{name}.model" for name in names},
                },
                outputs="inference_bundle",
                name="build_inference_bundle",
            ),
            node(
                register_bundle,
                inputs=["inference_bundle", "evaluation_report", "params:registry"],
                outputs="registry_result",
                name="register_bundle",
            ),
        ],
        tags=["registry"],
        namespace="registry",
        prefix_datasets_with_namespace=False,
    )
