"""Project context: records the env's ingestion source before pipelines are composed."""

from __future__ import annotations

from attrs import define
from kedro.framework.context import KedroContext

from racecast.sources import DEFAULT_SOURCE, set_active_source


@define(slots=False)
class RacecastContext(KedroContext):
    """KedroContext that reads ``ingestion.source`` as soon as it is created.

    Kedro composes the registered pipelines while it builds the context (to validate
    parameters), before any ``after_context_created`` hook runs, so the source (which
    decides whether the synthetic world is simulated and which adapter ingests) is set
    here, from the env's parameters including ``--params`` overrides.
    """

    def __attrs_post_init__(self) -> None:
        """Set the active source from the env's parameters."""
        params = self.config_loader["parameters"]
        set_active_source((params.get("ingestion") or {}).get("source", DEFAULT_SOURCE))
