"""Project hooks."""

from __future__ import annotations

import logging

from kedro.framework.hooks import hook_impl

from racecast.sources import DEFAULT_SOURCE, set_active_source

logger = logging.getLogger(__name__)


class SourceHooks:
    """Record ``ingestion.source`` of the env so pipelines are composed for it."""

    @hook_impl
    def after_context_created(self, context) -> None:  # noqa: ANN001 - kedro signature
        """Read the env's ingestion source from its parameters.

        Args:
            context: The Kedro context of the session.
        """
        source = (context.params.get("ingestion") or {}).get("source", DEFAULT_SOURCE)
        set_active_source(source)
        logger.info("racecast: env %r ingests source %r", context.env, source)
