"""Features pipeline definition."""

from kedro.pipeline import Pipeline, node

from racecast.features.specs import VIEWS

from .nodes import (
    apply_feature_store,
    build_entity_rows,
    build_state_tables,
    build_training_set,
    materialize_online,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Create the features pipeline.

    Returns:
        state tables -> feast apply -> materialize (online) and
        get_historical_features -> build_features (training set).
    """
    state_outputs = {view: f"feature_state.{view}" for view in VIEWS}
    return Pipeline(
        [
            node(
                build_state_tables,
                inputs=["races", "runners", "params:features"],
                outputs=state_outputs,
                name="build_state_tables",
            ),
            node(
                build_entity_rows,
                inputs=["races", "runners"],
                outputs="feature_entity_rows",
                name="build_entity_rows",
            ),
            node(
                apply_feature_store,
                inputs=["params:features", *state_outputs.values()],
                outputs="feast_apply_summary",
                name="feast_apply",
            ),
            node(
                materialize_online,
                inputs=["feast_apply_summary", "feature_entity_rows", "params:features"],
                outputs="feast_materialization",
                name="feast_materialize",
            ),
            node(
                build_training_set,
                inputs=["feature_entity_rows", "feast_apply_summary", "params:features"],
                outputs="training_set",
                name="build_training_set",
            ),
        ],
        namespace="features",
        prefix_datasets_with_namespace=False,
    )
