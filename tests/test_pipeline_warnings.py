"""A `kedro run` prints no warning of ours; the third-party ones judged harmless are silenced.

What Kedro warns about on our account is checked at its source: node functions whose
type hints cannot be resolved ("Could not extract type hints") and dotted dataset names
that are neither a namespace's outputs nor a catalog dataset factory.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import typing

from racecast.known_warnings import KNOWN_WARNINGS

from .test_layers import ENVS, _config, _registered_pipelines

#: A real message of every known warning (as printed by `make run` / `make viz`).
SAMPLES = {
    r"register_new_resolver\(\) is deprecated": (
        "UserWarning",
        "register_new_resolver() is deprecated and will be removed in a future release.",
    ),
    r"One or more dataset names contain '\.' characters": (
        "UserWarning",
        "One or more dataset names contain '.' characters, which is not recommended",
    ),
    r"(\x1b\[\d+m)?Add type hints to the `predict` method": (
        "UserWarning",
        "\x1b[33mAdd type hints to the `predict` method to enable data validation\x1b[0m",
    ),
    r'Field name "vector_enabled" in "SqliteOnlineStoreConfig" shadows': (
        "UserWarning",
        'Field name "vector_enabled" in "SqliteOnlineStoreConfig" shadows an attribute',
    ),
    r"On demand feature view is an experimental feature": (
        "RuntimeWarning",
        "On demand feature view is an experimental feature. This API is stable, but",
    ),
    r"The spark (data source API|offline store) is an experimental feature": (
        "RuntimeWarning",
        "The spark offline store is an experimental feature in alpha development. Some",
    ),
    r"`torch\.jit\.script` is deprecated": (
        "DeprecationWarning",
        "`torch.jit.script` is deprecated. Please switch to `torch.compile`",
    ),
    r"Please import `spmatrix` from the `scipy\.sparse` namespace": (
        "DeprecationWarning",
        "Please import `spmatrix` from the `scipy.sparse` namespace; the `scipy.sparse.base`",
    ),
    r"the load_module\(\) method is deprecated": (
        "DeprecationWarning",
        "the load_module() method is deprecated and slated for removal in Python 3.12",
    ),
    r"ORJSONResponse is deprecated": (
        "UserWarning",
        "ORJSONResponse is deprecated, FastAPI now serializes data directly to JSON bytes",
    ),
}


def test_every_known_warning_has_a_reason_and_a_sample() -> None:
    assert {k.message for k in KNOWN_WARNINGS} == set(SAMPLES)
    assert all(len(k.why) > 40 for k in KNOWN_WARNINGS)


def test_known_warnings_are_silenced_and_any_other_is_logged_once() -> None:
    """In a fresh interpreter that imports the project settings, as `kedro run` does."""
    emit = "\n".join(
        f"warnings.warn({message!r}, {category})" for category, message in SAMPLES.values()
    )
    script = textwrap.dedent(
        """
        import warnings
        import racecast.settings
        """
    )
    script += emit + "\n"
    # a library that puts its own filter first while it warns (as mlflow and Feast do)
    script += "with warnings.catch_warnings():\n"
    script += "    warnings.simplefilter('once', UserWarning)\n"
    script += "    warnings.simplefilter('once', DeprecationWarning)\n"
    script += "    " + emit.replace("\n", "\n    ") + "\n"
    script += "warnings.warn('an unknown warning', UserWarning)\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "Warning" in line]
    assert len(warned) == 1 and "UserWarning: an unknown warning" in warned[0], done.stderr
    assert " WARNING py.warnings: " in warned[0]  # one line, in conf/logging.yml's format


def test_every_node_function_has_resolvable_type_hints() -> None:
    """Kedro resolves node type hints (parameter validation); a forward reference fails."""
    for name, pipeline in _registered_pipelines("local").items():
        for node in pipeline.nodes:
            try:
                typing.get_type_hints(node.func)
            except NameError as exc:
                raise AssertionError(f"pipeline {name}, node {node.name}: {exc}") from exc


def test_dotted_dataset_names_are_namespaced_outputs_or_dataset_factories() -> None:
    for env in ENVS:
        factories = {
            key.split(".")[0]
            for key in _config(env, "catalog")
            if "{" in key and "." in key.split("{")[0]
        }
        for name, pipeline in _registered_pipelines(env).items():
            namespaces = {n.namespace.split(".")[0] for n in pipeline.nodes if n.namespace}
            odd = sorted(
                d
                for d in pipeline.datasets()
                if "." in d
                and not d.startswith("params:")
                and d.split(".")[0] not in namespaces | factories
            )
            assert not odd, f"pipeline {name} ({env}): dots outside a namespace: {odd}"
