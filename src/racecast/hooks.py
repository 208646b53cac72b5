"""Project hooks (``settings.HOOKS``)."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

from racecast.threads import limit_threads


class ThreadLimitHook:
    """Applies ``runtime.n_threads`` (:func:`racecast.threads.limit_threads`) to the run.

    In the ``kedro run`` process as soon as the context exists (every runner's main
    process, and the environment its worker processes start from); the runners of
    :mod:`racecast.runners` apply the same budget in each worker before a node runs.
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Limit this process's numerical libraries to the env's ``runtime.n_threads``."""
        limit_threads((context.params.get("runtime") or {}).get("n_threads"))
