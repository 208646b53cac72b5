"""Which data source the current Kedro session ingests.

The source is the parameter ``ingestion.source`` of the chosen env (base: ``synthetic``,
``--env racecards``: ``racecards``, ``--env hkjc``: ``hkjc``). The project context
(``racecast.context.RacecastContext``) records it when it is created so that ``register_pipelines`` can compose the pipelines for
that source (the synthetic world is simulated only when it is the source).
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("synthetic", "racecards", "hkjc")
DEFAULT_SOURCE = "synthetic"


@dataclass
class _SessionSource:
    """The source of the running session (one per process, as Kedro runs one session)."""

    name: str = DEFAULT_SOURCE


_SESSION = _SessionSource()


def set_active_source(source: str) -> None:
    """Record the source of the running session.

    Args:
        source: One of ``SOURCES``.

    Raises:
        ValueError: If ``source`` is not a known source.
    """
    if source not in SOURCES:
        raise ValueError(
            f"parameter ingestion.source: unknown source {source!r}; expected one of {', '.join(SOURCES)}"
        )
    _SESSION.name = source


def active_source() -> str:
    """Return the source recorded for the running session (``synthetic`` by default)."""
    return _SESSION.name
