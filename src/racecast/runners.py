"""Runners that put the model zoo's branches on every core or on a Dask cluster.

``kedro run --runner=racecast.runners.ParallelRunner`` (one machine, one process per
core) and ``kedro run --runner=racecast.runners.DaskRunner`` (a ``distributed`` cluster,
``pip install -e .[dask]``). Both run the nodes tagged :data:`WORKER_TAG` (the zoo's
per-model fits and predictions, the stacker and the blend) in other processes and every
other node in the ``kedro run`` process, on a thread beside the scheduler:

* a worker node must read and write persisted, picklable datasets only (no
  ``MemoryDataset``: a worker on another host cannot share this process's memory), and
  none of kedro-mlflow's datasets, which log to the MLflow run this process holds (a
  tagged node that breaks this is refused before anything runs);
* the nodes that talk to MLflow (the evaluation and monitoring artifacts, the registry)
  and to the feature store stay here, where the run and the stores live, so the whole
  ``kedro run`` keeps its one MLflow run;
* each worker holds its numerical libraries to ``runtime.n_threads`` before a node runs
  (:func:`racecast.threads.limit_threads`), as the ``kedro run`` process does;
* the ``ParallelRunner`` starts all its workers when the run starts, and each imports the
  worker nodes' modules and the libraries listed in ``runtime.worker_preload`` (torch,
  CatBoost, ...) while this process runs ingestion and features: seconds of imports off
  the zoo's path.

Scheduling: a node is started once its inputs exist, and of the ready nodes the one with
the longest *remaining path* first: its own seconds plus the longest chain of seconds
of the nodes that wait on it (critical-path list scheduling; for independent nodes
this is longest-processing-time first). The seconds are each node's wall time in the
last run that ran it, which the runners keep in the JSON file named by the parameter
:data:`NODE_SECONDS_PARAM` (``runtime.node_seconds`` in conf/base/parameters/runtime.yml;
no such parameter: nothing is read or kept). A node the kept file lacks (every node, on a
fresh clone's first run) takes its seconds from the committed file named by
:data:`NODE_SECONDS_SEED_PARAM` (``runtime.node_seconds_seed``), then counts 0 s; ties go by
name. At most one node per worker is handed to the worker pool at a time, so a node
that becomes ready later still overtakes the queued ones of shorter paths.

Every node computes exactly what it computes under the ``SequentialRunner`` (same
inputs read from the same files, same thread counts), so the evaluation figures are the
same. Kedro's own ``ParallelRunner`` cannot run this project: kedro-mlflow's artifact
datasets are classes made at run time, which cannot be pickled to its workers.

Node and dataset hooks run for the nodes of this process. For a worker node the
``before_node_run`` hook runs here with the node's parameter inputs only (what
kedro-mlflow logs as run parameters); dataset hooks do not run for it.
"""

from __future__ import annotations

import importlib
import json
import logging
import logging.config
import os
import pickle
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from itertools import chain
from multiprocessing import get_context
from pathlib import Path
from time import perf_counter, process_time, thread_time
from typing import TYPE_CHECKING, Any

from kedro.framework.hooks.manager import _NullPluginManager
from kedro.io import DataCatalog
from kedro.runner import AbstractRunner
from kedro.runner.task import Task

from racecast.threads import limit_threads

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

#: Nodes with this tag run on the runners' workers; every other node in this process.
WORKER_TAG = "worker"
#: The parameter that holds the numerical libraries' thread budget (racecast.threads).
THREADS_PARAM = "params:runtime.n_threads"
#: The parameter that names the JSON file of each node's wall seconds (scheduling).
NODE_SECONDS_PARAM = "params:runtime.node_seconds"
#: The parameter that names a committed JSON file of node seconds, for nodes not kept yet.
NODE_SECONDS_SEED_PARAM = "params:runtime.node_seconds_seed"
#: The parameter that lists modules each worker process imports as it starts.
WORKER_PRELOAD_PARAM = "params:runtime.worker_preload"

logger = logging.getLogger(__name__)


def _is_parameter(name: str) -> bool:
    return name == "parameters" or name.startswith("params:")


def _worker_unsafe_reason(name: str, catalog: CatalogProtocol) -> str | None:
    """Why dataset ``name`` cannot be read or written by a worker process (None: it can)."""
    if _is_parameter(name):
        return None
    dataset = catalog.get(name)
    if dataset is None or getattr(dataset, "_EPHEMERAL", False):
        return "is not persisted (a MemoryDataset)"
    if type(dataset).__module__.startswith("kedro_mlflow"):
        return "logs to this process's MLflow run"
    if getattr(dataset, "_SINGLE_PROCESS", False):
        return "is single-process only"
    try:
        pickle.dumps(dataset)
    except Exception as error:  # noqa: BLE001 - any pickling failure disqualifies it
        return f"cannot be pickled ({type(error).__name__})"
    return None


def worker_nodes(pipeline: Pipeline, catalog: CatalogProtocol) -> set[Node]:
    """The nodes of ``pipeline`` tagged :data:`WORKER_TAG`, checked for workers.

    Raises:
        ValueError: If a tagged node or one of its datasets cannot go to a worker.
    """
    chosen = {node for node in pipeline.nodes if WORKER_TAG in node.tags}
    problems = []
    for node in sorted(chosen, key=lambda n: n.name):
        try:
            pickle.dumps(node)
        except Exception as error:  # noqa: BLE001
            problems.append(f"node {node.name} cannot be pickled ({type(error).__name__})")
        for name in chain(node.inputs, node.outputs):
            reason = _worker_unsafe_reason(name, catalog)
            if reason:
                problems.append(f"{node.name}: dataset {name} {reason}")
    if problems:
        raise ValueError(
            f"nodes tagged {WORKER_TAG!r} must use persisted, picklable datasets only: "
            + "; ".join(problems)
        )
    return chosen


def read_node_seconds(path: str | os.PathLike | None) -> dict[str, float]:
    """Each node's wall seconds kept at ``path`` (empty if None, absent or unreadable)."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        seconds = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        logger.warning("node seconds at %s not read (%s): nodes ordered by name", path, error)
        return {}
    return {str(name): float(value) for name, value in seconds.items()}


def write_node_seconds(path: str | os.PathLike | None, seconds: dict[str, float]) -> None:
    """Keep ``seconds`` at ``path``, over the entries of earlier runs (None: do nothing)."""
    if path is None or not seconds:
        return
    merged = {**read_node_seconds(path), **{n: round(s, 3) for n, s in seconds.items()}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(dict(sorted(merged.items())), indent=1) + "\n")


def remaining_path_seconds(pipeline: Pipeline, seconds: dict[str, float]) -> dict[Node, float]:
    """Each node's seconds plus the longest chain of seconds of the nodes after it.

    Args:
        pipeline: The nodes and their dependencies.
        seconds: Node name -> wall seconds (a node not in it counts 0).
    """
    children: dict[Node, list[Node]] = {node: [] for node in pipeline.nodes}
    for node, parents in pipeline.node_dependencies.items():
        for parent in parents:
            children[parent].append(node)
    remaining: dict[Node, float] = {}
    for node in reversed(pipeline.nodes):  # topologically sorted: children come later
        after = max((remaining[child] for child in children[node]), default=0.0)
        remaining[node] = seconds.get(node.name, 0.0) + after
    return remaining


def _node_catalog(node: Node, catalog: CatalogProtocol) -> DataCatalog:
    """A catalog of ``node``'s datasets only (what is pickled to its worker)."""
    return DataCatalog(
        datasets={name: catalog.get(name) for name in chain(node.inputs, node.outputs)}
    )


def _timed(execute, cpu_clock=thread_time) -> tuple[float, float]:
    """Call ``execute``; return its wall and CPU seconds (``cpu_clock``: this thread's)."""
    wall, cpu = perf_counter(), cpu_clock()
    execute()
    return perf_counter() - wall, cpu_clock() - cpu


def run_on_worker(node: Node, catalog: DataCatalog, n_threads: int | None) -> tuple[float, float]:
    """Run ``node`` in a worker process: thread budget, then load, run, save.

    Returns:
        The node's wall and CPU seconds in the worker (CPU of the whole worker process,
        which runs one node at a time).
    """
    from racecast.known_warnings import quiet_known_warnings

    quiet_known_warnings()
    limit_threads(n_threads)
    task = Task(node=node, catalog=catalog, is_async=False, hook_manager=_NullPluginManager())
    return _timed(task.execute, process_time)


class _WorkerRunner(AbstractRunner):
    """Runs :data:`WORKER_TAG` nodes on ``_get_executor``'s workers, the rest here."""

    def __init__(self, max_workers: int | None = None, is_async: bool = False) -> None:
        """Args:
        max_workers: Worker processes (default: the machine's cores, or the cluster's).
        is_async: Load and save the inputs of this process's nodes on threads.
        """
        super().__init__(is_async=is_async)
        self._max_workers = None if max_workers is None else self._validate_max_workers(max_workers)

    def _get_required_workers_count(self, pipeline: Pipeline) -> int:
        return self._max_workers or os.cpu_count() or 1

    def _run(  # noqa: C901 - one scheduling loop over two executors
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        """Run every node once its inputs exist: tagged ones on workers, others here."""
        hook_manager = hook_manager or _NullPluginManager()
        remote = worker_nodes(pipeline, catalog)
        n_threads = _parameter(catalog, THREADS_PARAM)
        seconds_path = _parameter(catalog, NODE_SECONDS_PARAM)
        seed = read_node_seconds(_parameter(catalog, NODE_SECONDS_SEED_PARAM))
        kept = read_node_seconds(seconds_path)
        known = {**seed, **kept}
        remaining = remaining_path_seconds(pipeline, known)
        load_counts = Counter(chain.from_iterable(n.inputs for n in pipeline.nodes))
        dependencies = pipeline.node_dependencies
        todo, done_nodes = set(dependencies), set()
        queued: dict[bool, list[Node]] = {True: [], False: []}  # on a worker? -> ready nodes
        n_workers = self._get_required_workers_count(pipeline)
        capacity = {True: n_workers or len(remote) or 1, False: 1}
        running = {True: 0, False: 0}
        pending: dict[Future, Node] = {}
        timed: dict[str, float] = {}
        preload = [getattr(n.func, "__module__", None) for n in sorted(remote, key=str)]
        preload += list(_parameter(catalog, WORKER_PRELOAD_PARAM) or []) if remote else []
        workers = self._get_executor(n_workers, [m for m in dict.fromkeys(preload) if m])
        if remote:
            self._start_workers(workers, n_workers)
        logger.info(
            "%s: %d node(s) on %s, %d in this process; %d node(s) timed in %s, %d more in the seed",
            type(self).__name__,
            len(remote),
            self._describe_executor(workers),
            len(pipeline.nodes) - len(remote),
            sum(n.name in kept for n in pipeline.nodes),
            seconds_path,
            sum(n.name in seed and n.name not in kept for n in pipeline.nodes),
        )
        try:
            with (
                workers,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="kedro-main") as here,
            ):
                while todo or pending or queued[True] or queued[False]:
                    ready = [n for n in todo if dependencies[n] <= done_nodes]
                    todo.difference_update(ready)
                    for node in ready:
                        queued[node in remote].append(node)
                    for on_worker, nodes in queued.items():
                        nodes.sort(key=lambda n: (-remaining[n], n.name))
                        while nodes and running[on_worker] < capacity[on_worker]:
                            node = nodes.pop(0)
                            if on_worker:
                                self._before_worker_node(node, catalog, hook_manager, run_id)
                                future = workers.submit(
                                    run_on_worker, node, _node_catalog(node, catalog), n_threads
                                )
                            else:
                                task = Task(
                                    node=node,
                                    catalog=catalog,
                                    hook_manager=hook_manager,
                                    is_async=self._is_async,
                                    run_id=run_id,
                                )
                                future = here.submit(_timed, task.execute)
                            running[on_worker] += 1
                            pending[future] = node
                    if not pending:
                        self._raise_runtime_error(todo, done_nodes, set(ready), None)
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        node = pending.pop(future)
                        running[node in remote] -= 1
                        try:
                            wall, cpu = future.result()
                        except Exception:
                            for other in pending:
                                other.cancel()
                            self._suggest_resume_scenario(pipeline, done_nodes, catalog)
                            raise
                        done_nodes.add(node)
                        timed[node.name] = wall
                        logger.info(
                            "Completed node: %s (%s, %.1f s, %.1f s CPU)",
                            node.name,
                            "worker" if node in remote else "main",
                            wall,
                            cpu,
                        )
                        logger.info(
                            "Completed %d out of %d tasks", len(done_nodes), len(dependencies)
                        )
                        self._release_datasets(node, catalog, load_counts, pipeline)
        finally:
            write_node_seconds(seconds_path, timed)

    @staticmethod
    def _before_worker_node(
        node: Node, catalog: CatalogProtocol, hook_manager: PluginManager, run_id: str | None
    ) -> None:
        """``before_node_run`` here, with the worker node's parameter inputs only."""
        params = {name: catalog.load(name) for name in node.inputs if _is_parameter(name)}
        hook_manager.hook.before_node_run(
            node=node, catalog=catalog, inputs=params, is_async=False, run_id=run_id
        )

    @staticmethod
    def _describe_executor(executor: Executor) -> str:
        return type(executor).__name__

    def _start_workers(self, executor: Executor, n_workers: int) -> None:
        """Start the workers ahead of their first node (here: no-op: a cluster's workers
        are already running)."""


class ParallelRunner(_WorkerRunner):
    """One machine: the zoo's branches on a pool of processes, one per core.

    ``kedro run --runner=racecast.runners.ParallelRunner`` (``--runner-params
    max_workers=N`` to choose the pool size). Workers are started with ``spawn`` (a
    fresh interpreter: no OpenMP or MLflow state copied from this process).
    """

    def _get_executor(self, max_workers: int, preload: Sequence[str] = ()) -> Executor:
        """Spawned worker processes, each importing ``preload`` as it starts."""
        from kedro.framework.project import LOGGING

        return ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=get_context("spawn"),
            initializer=_start_worker,
            initargs=(dict(LOGGING), list(preload)),
        )

    def _start_workers(self, executor: Executor, n_workers: int) -> None:
        """Spawn every worker now, so each imports its preload list (its initializer) on a
        core the ``kedro run`` process leaves idle: the pool spawns a process for each task
        it cannot place on an idle one."""
        for _ in range(n_workers):
            executor.submit(_ready)


def _start_worker(config: dict[str, Any], preload: list[str]) -> None:
    """A spawned worker's start: log as ``kedro run`` does (conf/logging.yml), then import
    ``preload``."""
    if config:
        logging.config.dictConfig(config)
    preload_modules(preload)


def _ready() -> None:
    """A task that only makes the pool start a worker."""


def preload_modules(modules: list[str]) -> list[str]:
    """Import ``modules`` (those not installed are skipped); return the ones imported."""
    imported = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            logger.debug("worker preload: %s not imported (%s)", name, error)
        else:
            imported.append(name)
    return imported


def _parameter(catalog: CatalogProtocol, name: str) -> Any:
    """The parameter ``name`` of ``catalog`` (None when it has none)."""
    return catalog.load(name) if name in catalog else None


class DaskRunner(_WorkerRunner):
    """A cluster: the zoo's branches on the workers of a ``distributed`` scheduler.

    ``kedro run --runner=racecast.runners.DaskRunner --runner-params address=tcp://HOST:8786``
    (or ``DASK_SCHEDULER_ADDRESS``; with neither, a local cluster of one worker process
    per core is started and closed with the run). The workers need racecast installed
    and the project's data directory at the same absolute path (a shared filesystem):
    the catalog gives them absolute file paths. Needs ``pip install -e .[dask]``.
    """

    def __init__(
        self, address: str | None = None, max_workers: int | None = None, is_async: bool = False
    ) -> None:
        """Args:
        address: Scheduler address (default: ``DASK_SCHEDULER_ADDRESS`` / Dask's config).
        max_workers: Nodes on the cluster at once (default: its worker threads).
        is_async: Load and save the inputs of this process's nodes on threads.
        """
        super().__init__(max_workers=max_workers, is_async=is_async)
        self._address = address

    def _get_executor(self, max_workers: int, preload: Sequence[str] = ()) -> Executor:
        """A client of the cluster (its workers are already running: ``preload`` unused)."""
        try:
            from distributed import Client
        except ImportError as error:
            raise ImportError(
                "racecast.runners.DaskRunner needs dask.distributed: pip install -e '.[dask]'"
            ) from error
        return _ClientExecutor(Client(self._address) if self._address else Client())

    def _get_required_workers_count(self, pipeline: Pipeline) -> int:
        return self._max_workers or 0  # the cluster decides

    @staticmethod
    def _describe_executor(executor: Executor) -> str:
        return str(executor)


class _ClientExecutor(Executor):
    """A ``distributed.Client`` as a ``concurrent.futures`` executor; closes it on exit."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._executor = client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: D102
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:  # noqa: D102
        self._executor.shutdown(wait=wait)
        self._client.close()

    def __str__(self) -> str:
        info = self._client.scheduler_info()
        return f"Dask scheduler {info.get('address')} ({len(info.get('workers', {}))} workers)"
