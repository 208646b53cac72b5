"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from racecast.sources import active_source


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Every pipeline under ``racecast.pipelines`` is found with ``find_pipelines``. The
    default pipeline runs them all, except the synthetic-world simulation when the env
    ingests another source (``--env racecards`` or ``--env hkjc``).

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    source = active_source()
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if source == "synthetic" or name != "simulation"),
        start=Pipeline([]),
    )
    return pipelines
