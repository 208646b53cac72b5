"""The data sources a Kedro env can ingest, and the registered pipelines of each.

The source is the parameter ``ingestion.source`` of the env (base: ``synthetic``,
``--env racecards``: ``racecards``, ``--env hkjc``: ``hkjc``). Kedro composes the project's
pipelines once, without knowing the env (``register_pipelines()`` takes no arguments), so
``racecast.pipeline_registry`` registers every source's composition: the plain names
(``__default__``, ``ingestion``, ``evaluation``, ...) are the synthetic world's, and a
pipeline that differs by source (:data:`BY_SOURCE`) is also registered as
``<source>:<name>`` (``hkjc:__default__``, ``hkjc:ingestion``, ``hkjc:evaluation``). The project's session
(``racecast.session.RacecastSession``) runs the env's variant of each requested pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping

SOURCES = ("synthetic", "racecards", "hkjc")
DEFAULT_SOURCE = "synthetic"
#: The registered pipelines whose composition depends on the source: the default run
#: (the synthetic world is simulated, and its next day scored, only when it is the
#: source), ingestion (the source's adapter) and evaluation (the synthetic world's
#: oracle probabilities are scored only where they exist).
BY_SOURCE = frozenset({"__default__", "ingestion", "evaluation"})


def source_of(parameters: Mapping) -> str:
    """Return the ingestion source named by an env's parameters.

    Args:
        parameters: The env's parameters (``ingestion.source``; ``synthetic`` when absent).

    Raises:
        ValueError: If the source is not one of ``SOURCES``.
    """
    source = (parameters.get("ingestion") or {}).get("source", DEFAULT_SOURCE)
    if source not in SOURCES:
        raise ValueError(
            f"parameter ingestion.source: unknown source {source!r}; expected one of {', '.join(SOURCES)}"
        )
    return source


def source_pipeline(name: str, source: str) -> str:
    """The registered name of pipeline ``name`` composed for ``source``.

    A pipeline of :data:`BY_SOURCE` composed for a source other than the default one is
    ``<source>:<name>``; every other name is unchanged.
    """
    return f"{source}:{name}" if name in BY_SOURCE and source != DEFAULT_SOURCE else name
