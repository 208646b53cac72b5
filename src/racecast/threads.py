"""One thread budget for the numerical libraries of a process (``runtime.n_threads``).

Parallel runners put several nodes on the machine's cores at once (one process each), so
each node's OpenMP (LightGBM, XGBoost), BLAS (numpy, scikit-learn) and torch thread pools
are held to ``runtime.n_threads`` (default 1): the branches then share the cores instead
of fighting over them. The sequential run keeps the same budget, so every runner trains
with the same thread counts and gives the same figures (floating-point sums can depend on
how many threads share them). The zoo's own library arguments (``n_jobs``,
``thread_count``, ``n_threads`` in ``model_zoo.models``) are 1 as well.

:func:`map_processes` runs independent fits of one node (the combined track's
rolling-origin blocks) on several processes, each held to the same budget, so they
compute what the plain loop computes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

#: Read by OpenMP, OpenBLAS, MKL and numexpr when they load (in this process or a child).
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def limit_threads(n_threads: int | None) -> None:
    """Hold this process's OpenMP, BLAS and torch pools to ``n_threads`` (None: leave).

    Libraries loaded later (and child processes) read the environment variables; those
    already loaded are limited through ``threadpoolctl``; torch, if imported, through
    ``torch.set_num_threads``.

    Raises:
        ValueError: If ``n_threads`` is below 1.
    """
    if n_threads is None:
        return
    n = int(n_threads)
    if n < 1:
        raise ValueError(f"runtime.n_threads must be at least 1 or null, got {n_threads}")
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    logger.debug("numerical libraries limited to %d thread(s) in process %d", n, os.getpid())


def thread_budget() -> int | None:
    """The budget :func:`limit_threads` set in this process (None: none set)."""
    value = os.environ.get(THREAD_ENV_VARS[0])
    return int(value) if value and value.isdigit() else None


def _within_budget(function: Callable[..., Any], n_threads: int | None, args: tuple) -> Any:
    """``function(*args)`` in a worker process held to ``n_threads``."""
    from racecast.known_warnings import quiet_known_warnings

    quiet_known_warnings()
    limit_threads(n_threads)
    return function(*args)


def map_processes(
    function: Callable[..., Any], arguments: Sequence[tuple], n_jobs: int = 1
) -> list[Any]:
    """``[function(*args) for args in arguments]``, on up to ``n_jobs`` processes.

    With ``n_jobs`` 1, one task, or in a daemonic process (a Dask worker, which may not
    start processes) a plain loop in this process; otherwise a pool of
    loky processes (joblib's; ``function`` may be a closure: loky pickles with
    cloudpickle), each held to this process's :func:`thread_budget`, so every call
    computes what the loop would. The pool is closed before this returns (no idle
    workers outlive the call, which would keep a runner's worker process from exiting).
    Results come back in the order of ``arguments``.

    Raises:
        ValueError: If ``n_jobs`` is below 1.
    """
    if int(n_jobs) < 1:
        raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
    n_jobs = min(int(n_jobs), len(arguments))
    if n_jobs <= 1 or multiprocessing.current_process().daemon:
        # a daemonic process (a Dask worker's) may not start processes: the loop
        return [function(*args) for args in arguments]
    from joblib.externals.loky import ProcessPoolExecutor

    n_threads = thread_budget()
    env = {name: str(n_threads) for name in THREAD_ENV_VARS} if n_threads else None
    with ProcessPoolExecutor(max_workers=n_jobs, env=env) as pool:
        futures = [pool.submit(_within_budget, function, n_threads, args) for args in arguments]
        return [future.result() for future in futures]
