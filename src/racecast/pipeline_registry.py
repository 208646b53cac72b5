"""Project pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from racecast.pipelines import (
    evaluation,
    features,
    ingestion,
    model_zoo,
    monitoring,
    registry,
    scoring,
    simulation,
)
from racecast.sources import SOURCES, source_pipeline

#: Every pipeline package, registered under its own name (``--pipelines <name>``).
#: Listed rather than found with ``find_pipelines``: in Kedro 1.7 that loads only the
#: pipelines a run requests by name, and the per-source compositions need them all.
PACKAGES = (simulation, ingestion, features, model_zoo, evaluation, monitoring, registry, scoring)

#: Pipelines the default run includes only when the synthetic world is the source: the
#: simulation writes the world, and scoring scores the next day's racecards it writes
#: (other envs have no racecards of their own to score in every run; run them with
#: ``--pipelines scoring`` once the day's racecards are in place).
SYNTHETIC_ONLY = frozenset({"simulation", "scoring"})


def _for_source(found: dict[str, Pipeline], source: str) -> dict[str, Pipeline]:
    """The pipelines of ``racecast.sources.BY_SOURCE`` composed for ``source``."""
    own = {
        **found,
        "ingestion": ingestion.create_pipeline(source=source),
        "evaluation": evaluation.create_pipeline(with_oracle=source == "synthetic"),
    }
    default = sum(
        (p for name, p in own.items() if source == "synthetic" or name not in SYNTHETIC_ONLY),
        start=Pipeline([]),
    )
    variants = {
        "__default__": default,
        "ingestion": own["ingestion"],
        "evaluation": own["evaluation"],
    }
    return {source_pipeline(name, source): pipeline for name, pipeline in variants.items()}


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Every package of :data:`PACKAGES` is registered under its name. The plain names are
    composed for the synthetic world; the pipelines that differ by source
    (``racecast.sources.BY_SOURCE``) are also registered for each other source as
    ``<source>:<name>``: there the default pipeline leaves out :data:`SYNTHETIC_ONLY`,
    ingestion runs the source's adapter and evaluation has no oracle. The project's
    session (``racecast.session.RacecastSession``) picks the env's variants, so
    ``kedro run --env hkjc`` runs ``hkjc:__default__``.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    found = {package.__name__.rpartition(".")[2]: package.create_pipeline() for package in PACKAGES}
    pipelines = dict(found)
    for source in SOURCES:
        pipelines.update(_for_source(found, source))
    return pipelines
