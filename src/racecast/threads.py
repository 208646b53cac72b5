"""One thread budget for the numerical libraries of a process (``runtime.n_threads``).

Parallel runners put several nodes on the machine's cores at once (one process each), so
each node's OpenMP (LightGBM, XGBoost), BLAS (numpy, scikit-learn) and torch thread pools
are held to ``runtime.n_threads`` (default 1): the branches then share the cores instead
of fighting over them. The sequential run keeps the same budget, so every runner trains
with the same thread counts and gives the same figures (floating-point sums can depend on
how many threads share them). The zoo's own library arguments (``n_jobs``,
``thread_count``, ``n_threads`` in ``model_zoo.models``) are 1 as well.
"""

from __future__ import annotations

import logging
import os
import sys

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
