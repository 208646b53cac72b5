"""scoring pipeline definition."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from .nodes import (
    online_feature_rows,
    parse_upcoming_racecards,
    publish_scored_signals,
    score_runners,
    scoring_cutoff,
    select_bundle,
    settle_bets,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Create the scoring pipeline (runs after registry, features and ingestion).

    Every upstream dependency is a dataset: ``inference_bundle`` (registry),
    ``feast_materialization`` (features: the online store is loaded),
    ``raw_upcoming_racecards`` (simulation, or files an operator drops), ``races`` and
    ``runners`` (ingestion: the results that settle bets).

    Returns:
        bundle and racecards -> ``as_of`` -> online features -> scored runners ->
        ``scoring_report`` (signals and bets published), then ``settlement_report``.
        Nodes are tagged ``publish`` (all but settlement) or ``settle``.
    """
    publish = Pipeline(
        [
            node(
                select_bundle,
                inputs=["inference_bundle", "params:scoring"],
                outputs="scoring_bundle",
                name="select_scoring_bundle",
            ),
            node(
                parse_upcoming_racecards,
                inputs=["raw_upcoming_racecards", "params:scoring"],
                outputs="scoring_entity_rows",
                name="parse_upcoming_racecards",
            ),
            node(
                scoring_cutoff,
                inputs=["scoring_entity_rows", "params:scoring"],
                outputs="scoring_as_of",
                name="scoring_cutoff",
            ),
            node(
                online_feature_rows,
                inputs=[
                    "scoring_entity_rows",
                    "scoring_bundle",
                    "scoring_as_of",
                    "feast_materialization",
                    "params:features",
                    "params:serving",
                ],
                outputs="scoring_features",
                name="online_feature_rows",
            ),
            node(
                score_runners,
                inputs=[
                    "scoring_features",
                    "scoring_entity_rows",
                    "scoring_bundle",
                    "scoring_as_of",
                    "params:serving",
                ],
                outputs="scoring_predictions",
                name="score_runners",
            ),
            node(
                publish_scored_signals,
                inputs=["scoring_predictions", "params:registry.model_name", "params:scoring"],
                outputs="scoring_report",
                name="publish_signals",
            ),
        ],
        tags=["publish"],
    )
    settlement = Pipeline(
        [
            node(
                settle_bets,
                inputs=["races", "runners", "scoring_report", "params:scoring"],
                outputs="settlement_report",
                name="settle_bets",
            )
        ],
        tags=["settle"],
    )
    return Pipeline(
        [publish, settlement],
        tags=["scoring"],
        namespace="scoring",
        prefix_datasets_with_namespace=False,
    )
