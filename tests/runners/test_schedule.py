"""racecast.runners' scheduling: of the ready nodes, the longest remaining path first, by
the seconds the last run kept (runtime.node_seconds), and those seconds written back."""

from __future__ import annotations

import json

import pytest
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline, node
from kedro_datasets.pickle import PickleDataset

from racecast.runners import (
    NODE_SECONDS_PARAM,
    NODE_SECONDS_SEED_PARAM,
    WORKER_TAG,
    ParallelRunner,
    read_node_seconds,
    remaining_path_seconds,
    write_node_seconds,
)


def record(log: str, name: str, *upstream: str) -> str:
    """Append ``name`` to the file ``log`` (the order the nodes ran in) and return it."""
    with open(log, "a") as handle:
        handle.write(name + "\n")
    return name


def _node(name: str, *upstream: str):
    return node(
        record,
        ["params:log", f"params:name_{name}", *upstream],
        name,
        name=name,
        tags=[WORKER_TAG],
    )


#: ``a`` (1 s) feeds ``c`` (100 s); ``b1``-``b3`` take 5 s each; ``y`` and ``z`` were never
#: timed. The longest remaining path first: a (101), then c once a is done (100) ahead of
#: the b's queued since the start, then the b's by name, then the untimed nodes by name.
SECONDS = {"a": 1.0, "c": 100.0, "b1": 5.0, "b2": 5.0, "b3": 5.0}
NAMES = ("a", "b1", "b2", "b3", "c", "y", "z")


def _pipeline() -> Pipeline:
    return Pipeline([_node(name, "a") if name == "c" else _node(name) for name in NAMES])


def _catalog(root, seconds_path, seed_path=None) -> DataCatalog:
    catalog = DataCatalog(
        {name: PickleDataset(filepath=str(root / f"{name}.pkl")) for name in NAMES}
    )
    catalog["params:log"] = str(root / "order.log")
    for name in NAMES:
        catalog[f"params:name_{name}"] = name
    if seconds_path is not None:
        catalog[NODE_SECONDS_PARAM] = str(seconds_path)
    if seed_path is not None:
        catalog[NODE_SECONDS_SEED_PARAM] = str(seed_path)
    return catalog


def _run_order(root, seconds_path, seed_path=None) -> list[str]:
    ParallelRunner(max_workers=1).run(_pipeline(), _catalog(root, seconds_path, seed_path))
    return (root / "order.log").read_text().split()


def test_remaining_path_adds_the_longest_chain_after_a_node():
    remaining = remaining_path_seconds(_pipeline(), SECONDS)
    by_name = {n.name: seconds for n, seconds in remaining.items()}
    assert by_name == {"a": 101.0, "c": 100.0, "b1": 5.0, "b2": 5.0, "b3": 5.0, "y": 0, "z": 0}


def test_the_longest_remaining_path_runs_first_and_overtakes_queued_nodes(tmp_path):
    seconds_path = tmp_path / "node_seconds.json"
    seconds_path.write_text(json.dumps(SECONDS))
    assert _run_order(tmp_path, seconds_path) == ["a", "c", "b1", "b2", "b3", "y", "z"]


def test_without_kept_seconds_the_ready_nodes_run_by_name(tmp_path):
    # c is ready once a is done, and then goes by its name among the queued ones
    assert _run_order(tmp_path, None) == ["a", "b1", "b2", "b3", "c", "y", "z"]


def test_a_first_run_orders_the_nodes_by_the_seed(tmp_path):
    seed_path = tmp_path / "seed.json"
    seed_path.write_text(json.dumps(SECONDS))
    kept_path = tmp_path / "kept" / "node_seconds.json"  # nothing kept yet
    assert _run_order(tmp_path, kept_path, seed_path) == ["a", "c", "b1", "b2", "b3", "y", "z"]
    # the run keeps its own seconds; the seed file is only read
    assert set(read_node_seconds(kept_path)) == set(NAMES)
    assert read_node_seconds(seed_path) == SECONDS


def test_kept_seconds_win_over_the_seed(tmp_path):
    seed_path = tmp_path / "seed.json"
    seed_path.write_text(json.dumps({**SECONDS, "z": 500.0}))  # the seed puts z first
    seconds_path = tmp_path / "node_seconds.json"
    seconds_path.write_text(json.dumps({**SECONDS, "z": 0.0}))  # the last run: z is quick
    assert _run_order(tmp_path, seconds_path, seed_path) == ["a", "c", "b1", "b2", "b3", "y", "z"]


def test_the_run_keeps_every_node_seconds_over_earlier_entries(tmp_path):
    seconds_path = tmp_path / "kept" / "node_seconds.json"
    write_node_seconds(seconds_path, {"a": 1.0, "other_pipeline_node": 7.0})
    _run_order(tmp_path, seconds_path)
    kept = read_node_seconds(seconds_path)
    assert set(kept) == {*NAMES, "other_pipeline_node"}
    assert kept["other_pipeline_node"] == 7.0
    assert all(value >= 0 for value in kept.values())


@pytest.mark.parametrize("text", ["not json", "[1, 2"])
def test_an_unreadable_seconds_file_counts_as_none(tmp_path, text):
    seconds_path = tmp_path / "node_seconds.json"
    seconds_path.write_text(text)
    assert read_node_seconds(seconds_path) == {}
