"""Simulation pipeline definition."""

from kedro.pipeline import Pipeline, node

from .nodes import simulate_world


def create_pipeline(**kwargs) -> Pipeline:
    """Create the simulation pipeline.

    Returns:
        One node, ``simulate_world``: ``params:simulation`` -> ``raw_racecards``,
        ``oracle_win_probabilities``, ``raw_upcoming_racecards``, ``raw_upcoming_results``
        and ``raw_raceday`` (emptied: results pushed into the previous run's world are
        not part of the new one).
    """
    return Pipeline(
        [
            node(
                simulate_world,
                inputs="params:simulation",
                outputs=[
                    "raw_racecards",
                    "oracle_win_probabilities",
                    "raw_upcoming_racecards",
                    "raw_upcoming_results",
                    "raw_raceday",
                ],
                name="simulate_world",
            )
        ],
        namespace="simulation",
        prefix_datasets_with_namespace=False,
    )
