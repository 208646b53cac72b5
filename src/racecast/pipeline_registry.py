"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from racecast.sources import active_source

#: Pipelines the default run includes only when the synthetic world is the source: the
#: simulation writes the world, and scoring scores the next day's racecards it writes
#: (other envs have no racecards of their own to score in every run; run them with
#: ``--pipelines scoring`` once the day's racecards are in place).
SYNTHETIC_ONLY = frozenset({"simulation", "scoring"})


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Every pipeline under ``racecast.pipelines`` is found with ``find_pipelines``. The
    default pipeline runs them all, except :data:`SYNTHETIC_ONLY` (the synthetic-world
    simulation and the scoring of its upcoming racecards) when the env ingests another
    source (``--env racecards`` or ``--env hkjc``).

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    source = active_source()
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if source == "synthetic" or name not in SYNTHETIC_ONLY),
        start=Pipeline([]),
    )
    return pipelines
