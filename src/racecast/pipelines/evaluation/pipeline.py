"""evaluation pipeline definition."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from kedro.pipeline import Pipeline, node

from racecast.pipelines.model_zoo.pipeline import ZOO_MODELS

from .nodes import (
    build_holdout_frame,
    evaluate_models,
    evaluation_table,
    mlflow_metrics,
    plot_feature_importance,
    plot_kelly,
    plot_reliability,
)

#: Zoo model whose feature importance is plotted (the stacker's when it is not in the zoo).
IMPORTANCE_MODEL = "lgbm_ranker"


def create_pipeline(
    models: Iterable[str] | None = None, with_oracle: bool = True, **kwargs
) -> Pipeline:
    """Create the evaluation pipeline.

    Args:
        models: Zoo base models to score (default: the model_zoo's ``ZOO_MODELS``);
            ``stacked``, ``blend`` (the combined track), ``market_corrected`` and the
            combined-track candidates ``benter`` and ``residual`` and the serving subset's
            ``serving_stacked`` and ``serving_blend`` are always scored, with the market.
        with_oracle: Take ``oracle_win_probabilities`` as an input (it exists only when
            the synthetic world is the source; the registry passes ``False`` for the others).

    Returns:
        holdout frame -> report (JSON), table (markdown), MLflow metrics and figures.
    """
    names = [
        *(ZOO_MODELS if models is None else models),
        "stacked",
        "blend",
        "market_corrected",
        "benter",
        "residual",
        "serving_stacked",
        "serving_blend",
    ]
    frame_inputs = {
        "holdout_set": "model_zoo.holdout_set",
        **{name: f"model_zoo.{name}.holdout_predictions" for name in names},
    }
    if with_oracle:
        frame_inputs["oracle_win_probabilities"] = "oracle_win_probabilities"
    importance = IMPORTANCE_MODEL if IMPORTANCE_MODEL in names else "stacked"
    return Pipeline(
        [
            node(
                build_holdout_frame,
                inputs=frame_inputs,
                outputs="evaluation_holdout_frame",
                name="build_holdout_frame",
            ),
            node(
                evaluate_models,
                inputs=[
                    "evaluation_holdout_frame",
                    "model_zoo.split_info",
                    "model_zoo.blend.model",
                    "params:evaluation",
                    "model_zoo.serving_subset",
                ],
                outputs="evaluation_report",
                name="evaluate_models",
            ),
            node(
                evaluation_table,
                inputs="evaluation_report",
                outputs="evaluation_table",
                name="evaluation_table",
            ),
            node(
                mlflow_metrics,
                inputs=["evaluation_report", "params:evaluation"],
                outputs="evaluation_metrics",
                name="evaluation_mlflow_metrics",
            ),
            node(
                plot_reliability,
                inputs=["evaluation_holdout_frame", "params:evaluation"],
                outputs="evaluation_reliability_plot",
                name="plot_reliability",
            ),
            node(
                plot_kelly,
                inputs=["evaluation_holdout_frame", "params:evaluation"],
                outputs="evaluation_kelly_plot",
                name="plot_kelly",
            ),
            node(
                functools.update_wrapper(
                    functools.partial(plot_feature_importance, model_name=importance),
                    plot_feature_importance,
                ),
                inputs=[f"model_zoo.{importance}.model", "params:evaluation"],
                outputs="evaluation_feature_importance_plot",
                name="plot_feature_importance",
            ),
        ],
        tags=["evaluation"],
        namespace="evaluation",
        prefix_datasets_with_namespace=False,
    )
