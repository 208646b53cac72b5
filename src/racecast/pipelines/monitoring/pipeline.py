"""monitoring pipeline definition."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from .nodes import (
    build_prediction_frame,
    build_report,
    compute_feature_drift,
    compute_performance,
    compute_prediction_drift,
    mlflow_metrics,
    plot_monitoring,
    select_reference,
    select_window,
)

#: Zoo model whose predictions are monitored.
MONITORED_MODEL = "stacked"


def create_pipeline(model: str = MONITORED_MODEL, **kwargs) -> Pipeline:
    """Create the monitoring pipeline.

    Args:
        model: Zoo model whose predictions are monitored; its
            ``model_zoo.<model>.oof_predictions`` (reference) and
            ``model_zoo.<model>.holdout_predictions`` (window) are inputs.

    Returns:
        reference and window selection -> feature drift, prediction drift and
        performance -> report (JSON), MLflow metrics and figure.
    """
    report = update_wrapper(partial(build_report, model=model), build_report)
    return Pipeline(
        [
            node(
                select_reference,
                inputs=["model_zoo.train_set", "params:monitoring"],
                outputs="monitoring_reference_set",
                name="select_monitoring_reference",
            ),
            node(
                select_window,
                inputs=["model_zoo.holdout_set", "params:monitoring"],
                outputs="monitoring_window_set",
                name="select_monitoring_window",
            ),
            node(
                build_prediction_frame,
                inputs=["monitoring_reference_set", f"model_zoo.{model}.oof_predictions"],
                outputs="monitoring_reference_frame",
                name="build_reference_prediction_frame",
            ),
            node(
                build_prediction_frame,
                inputs=["monitoring_window_set", f"model_zoo.{model}.holdout_predictions"],
                outputs="monitoring_window_frame",
                name="build_window_prediction_frame",
            ),
            node(
                compute_feature_drift,
                inputs=["monitoring_reference_set", "monitoring_window_set", "params:monitoring"],
                outputs="monitoring_feature_drift",
                name="compute_feature_drift",
            ),
            node(
                compute_prediction_drift,
                inputs=[
                    "monitoring_reference_frame",
                    "monitoring_window_frame",
                    "params:monitoring",
                ],
                outputs="monitoring_prediction_drift",
                name="compute_prediction_drift",
            ),
            node(
                compute_performance,
                inputs=[
                    "monitoring_reference_frame",
                    "monitoring_window_frame",
                    "params:monitoring",
                ],
                outputs="monitoring_performance",
                name="compute_monitoring_performance",
            ),
            node(
                report,
                inputs=[
                    "monitoring_reference_set",
                    "monitoring_window_set",
                    "monitoring_feature_drift",
                    "monitoring_prediction_drift",
                    "monitoring_performance",
                    "params:monitoring",
                ],
                outputs="monitoring_report",
                name="build_monitoring_report",
            ),
            node(
                mlflow_metrics,
                inputs="monitoring_report",
                outputs="monitoring_metrics",
                name="monitoring_mlflow_metrics",
            ),
            node(
                plot_monitoring,
                inputs=[
                    "monitoring_report",
                    "monitoring_reference_frame",
                    "monitoring_window_frame",
                    "params:monitoring",
                ],
                outputs="monitoring_plot",
                name="plot_monitoring",
            ),
        ],
        tags=["monitoring"],
        namespace="monitoring",
        prefix_datasets_with_namespace=False,
    )
