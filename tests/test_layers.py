"""kedro-viz layers: every edge of every registered pipeline points down the layer order.

The catalog's ``metadata: kedro-viz: layer:`` values follow the data engineering
convention's order. kedro-viz draws layer bands only when the layers, ordered by the
pipeline graph (transitively, through datasets that have no layer), form no cycle; with
a cycle it warns "Layers visualisation is disabled" and draws none. So a dataset may only
feed (directly or through unlayered datasets and nodes) datasets of its own or a later layer.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.startup import bootstrap_project
from kedro.io.catalog_config_resolver import DEFAULT_RUNTIME_PATTERN, CatalogConfigResolver
from kedro.pipeline import Pipeline

from racecast.settings import CONFIG_LOADER_ARGS
from racecast.sources import source_of, source_pipeline

ROOT = Path(__file__).resolve().parents[1]

#: The data engineering convention's layers, in order.
LAYERS = (
    "raw",
    "intermediate",
    "primary",
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
)
ENVS = ("local", "racecards", "hkjc", "scale")


def _config(env: str, key: str) -> dict:
    loader = OmegaConfigLoader(
        conf_source=str(ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env}
    )
    return loader[key]


@cache
def _all_pipelines() -> dict[str, Pipeline]:
    bootstrap_project(ROOT)
    from racecast.pipeline_registry import register_pipelines

    return register_pipelines()


def _registered_pipelines(env: str) -> dict[str, Pipeline]:
    """Every registered pipeline as the env runs it (its source's variant)."""
    source = source_of(_config(env, "parameters"))
    pipelines = _all_pipelines()
    return {name: pipelines[source_pipeline(name, source)] for name in pipelines if ":" not in name}


def _layer_of(env: str):
    resolver = CatalogConfigResolver(
        _config(env, "catalog"), default_runtime_patterns=DEFAULT_RUNTIME_PATTERN
    )

    def layer(name: str) -> str | None:
        if name.startswith("params:") or name == "parameters":
            return None
        metadata = resolver.resolve_pattern(name).get("metadata") or {}
        return (metadata.get("kedro-viz") or {}).get("layer")

    return layer


def _dataset_graph(pipeline: Pipeline) -> dict[str, set[str]]:
    """``{dataset: datasets written by the nodes that read it}`` (parameters left out)."""
    graph: dict[str, set[str]] = {}
    for node in pipeline.nodes:
        for name in node.inputs + node.outputs:
            graph.setdefault(name, set())
        for name in node.inputs:
            graph[name].update(node.outputs)
    return graph


def _downstream(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph[start])
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(graph[name])
    return seen


def _backward_edges(pipeline: Pipeline, layer) -> list[str]:
    """``"a (layer) -> ... -> b (earlier layer)"`` for every layered pair out of order."""
    graph = _dataset_graph(pipeline)
    found = []
    for name in sorted(graph):
        here = layer(name)
        if here is None:
            continue
        for later in sorted(_downstream(graph, name)):
            there = layer(later)
            if there is not None and LAYERS.index(there) < LAYERS.index(here):
                found.append(f"{name} ({here}) -> ... -> {later} ({there})")
    return found


@pytest.mark.parametrize("env", ENVS)
def test_every_layer_is_one_of_the_convention(env: str) -> None:
    layer = _layer_of(env)
    for name, pipeline in _registered_pipelines(env).items():
        unknown = {
            f"{d}: {layer(d)}" for d in pipeline.datasets() if layer(d) not in (None, *LAYERS)
        }
        assert not unknown, f"pipeline {name}: layers outside {LAYERS}: {sorted(unknown)}"


@pytest.mark.parametrize("env", ENVS)
def test_no_dataset_feeds_an_earlier_layer(env: str) -> None:
    layer = _layer_of(env)
    pipelines = _registered_pipelines(env)
    assert len(pipelines["__default__"].nodes) > 10  # the graph is not vacuous
    for name, pipeline in pipelines.items():
        backward = _backward_edges(pipeline, layer)
        assert not backward, f"pipeline {name} ({env}): layer goes backwards: {backward[:10]}"


@pytest.mark.parametrize("env", ENVS)
def test_kedro_viz_sorts_the_layers_without_a_cycle(env: str) -> None:
    """kedro-viz's own layer sort, on the registered pipelines' dataset graph."""
    from kedro_viz.services.layers import sort_layers

    layer = _layer_of(env)
    for name, pipeline in _registered_pipelines(env).items():
        graph = _dataset_graph(pipeline)
        nodes = {d: SimpleNamespace(layer=layer(d)) for d in graph}
        ordered = sort_layers(nodes, graph)
        used = {layer(d) for d in graph} - {None}
        assert set(ordered) == used, f"pipeline {name} ({env}): kedro-viz found a layer cycle"


def test_a_backward_edge_is_detected() -> None:
    """The check fails on a model fitted on a later layer (the cycle kedro-viz rejects)."""
    from kedro.pipeline import node

    def identity(x):
        return x

    pipeline = Pipeline(
        [
            node(identity, "train", "oof", name="oof"),
            node(identity, "oof", "memory", name="hop"),
            node(identity, "memory", "model", name="fit"),
        ]
    )
    layers = {"train": "model_input", "oof": "model_output", "model": "models"}
    assert _backward_edges(pipeline, layers.get) == ["oof (model_output) -> ... -> model (models)"]


def test_every_node_is_in_its_pipelines_namespace() -> None:
    """kedro-viz groups nodes by namespace: each pipeline is one group (the zoo nests its models)."""
    pipelines = _all_pipelines()
    for name, pipeline in pipelines.items():
        if name.endswith("__default__"):
            continue
        package = name.rpartition(":")[2]
        outside = [n.name for n in pipeline.nodes if (n.namespace or "").split(".")[0] != package]
        assert not outside, f"pipeline {name}: nodes outside namespace {package!r}: {outside}"
    assert all(n.namespace for n in pipelines["__default__"].nodes)
