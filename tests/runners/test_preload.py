"""The ParallelRunner's workers start with the run and import ``runtime.worker_preload``
(and the worker nodes' modules) before their first node."""

from __future__ import annotations

import os
import sys

from kedro.io import DataCatalog
from kedro.pipeline import Pipeline, node
from kedro_datasets.pickle import PickleDataset

from racecast.runners import WORKER_PRELOAD_PARAM, WORKER_TAG, ParallelRunner, preload_modules

#: Standard-library modules nothing in a fresh interpreter, racecast or kedro imports.
PRELOADED = "xml.dom.minidom"
NOT_PRELOADED = "wsgiref.simple_server"


def modules_seen(names: list[str]) -> dict:
    """Which of ``names`` this process had imported, and its pid."""
    return {"pid": os.getpid(), **{name: name in sys.modules for name in names}}


def _run(tmp_path, preload) -> list[dict]:
    names = [PRELOADED, NOT_PRELOADED]
    pipeline = Pipeline(
        [
            node(modules_seen, "params:names", f"seen_{i}", name=f"n{i}", tags=[WORKER_TAG])
            for i in range(2)
        ]
    )
    catalog = DataCatalog(
        {f"seen_{i}": PickleDataset(filepath=str(tmp_path / f"seen_{i}.pkl")) for i in range(2)}
    )
    catalog["params:names"] = names
    if preload is not None:
        catalog[WORKER_PRELOAD_PARAM] = preload
    ParallelRunner(max_workers=2).run(pipeline, catalog)
    return [catalog.load(f"seen_{i}") for i in range(2)]


def test_workers_import_the_preload_list_before_their_first_node(tmp_path):
    seen = _run(tmp_path, [PRELOADED, "racecast_no_such_module"])
    for worker in seen:
        assert worker[PRELOADED] is True
        assert worker[NOT_PRELOADED] is False
    assert all(worker["pid"] != os.getpid() for worker in seen)


def test_without_a_preload_list_the_workers_import_only_what_nodes_need(tmp_path):
    seen = _run(tmp_path, None)
    assert [worker[PRELOADED] for worker in seen] == [False, False]


def test_preload_skips_modules_that_are_not_installed():
    assert preload_modules(["json", "racecast_no_such_module", "os.path"]) == ["json", "os.path"]
