"""The project's Kedro session: runs the variant of each pipeline for the env's source."""

from __future__ import annotations

from typing import Any

from kedro.framework.session import KedroSession

from racecast.sources import source_of, source_pipeline


class RacecastSession(KedroSession):
    """``KedroSession`` that runs the env's source's variant of the requested pipelines.

    ``kedro run --env hkjc`` (no ``--pipelines``) runs ``hkjc:__default__``;
    ``kedro run --env hkjc --pipelines evaluation`` runs ``hkjc:evaluation``; a pipeline
    that is the same for every source (``features``, ``scoring``, ...) keeps its name. The
    source is ``ingestion.source`` of the env's parameters, ``--params`` included. Set as
    ``SESSION_CLASS`` in ``racecast.settings``, so ``kedro run``, ``kedro ipython`` and
    ``kedro jupyter`` use it.
    """

    def run(self, pipeline_names: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Run the env's variants of ``pipeline_names`` (default: ``__default__``).

        Args:
            pipeline_names: Registered pipeline names, as for ``KedroSession.run``.
            **kwargs: Every other argument of ``KedroSession.run``.

        Returns:
            What ``KedroSession.run`` returns.
        """
        if kwargs.get("pipeline_name"):  # Kedro's deprecated single-name argument
            pipeline_names = [kwargs.pop("pipeline_name")]
        source = source_of(self._get_config_loader()["parameters"])
        names = [source_pipeline(name, source) for name in pipeline_names or ["__default__"]]
        return super().run(pipeline_names=names, **kwargs)
