"""Layers point down: library packages import only lower layers, never the outer rooms.

Read from the source with ``ast`` (every ``import``/``from ... import``, at any depth,
so imports inside functions count too).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import racecast

SRC = Path(racecast.__file__).parent

#: Library layers, lowest first; a module may import its own package, a lower one or a
#: helper outside the layers (``racecast.project``, ``racecast.sources``), never a higher one.
LIBRARY_RANK = {
    "data": 0,
    "ingestion": 1,
    "signals": 1,
    "features": 2,
    "models": 3,
    "evaluation": 4,
    "monitoring": 5,
    "inference": 6,
}
#: The outer rooms: no library module imports them.
OUTER = ("pipelines", "pipeline_registry", "serving", "cli")
#: Upward imports still to remove (none left).
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _imports() -> dict[str, frozenset[str]]:
    """Module name -> the ``racecast.*`` modules it imports."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[_module_name(path)] = frozenset(n for n in names if n.startswith("racecast."))
    return found


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_the_scan_sees_the_package() -> None:
    imports = _imports()
    assert "racecast.inference.rows" in imports and "racecast.models.split" in imports
    assert "racecast.models.split" in imports["racecast.inference.rows"]


def test_library_layers_import_only_their_own_or_lower_layers() -> None:
    upward = {
        (module, target)
        for module, targets in _imports().items()
        if _package(module) in LIBRARY_RANK
        for target in targets
        if _package(target) in OUTER
        or LIBRARY_RANK.get(_package(target), -1) > LIBRARY_RANK[_package(module)]
    }
    assert upward <= KNOWN_UPWARD, sorted(upward - KNOWN_UPWARD)


def test_only_the_pipeline_registry_and_pipelines_import_racecast_pipelines() -> None:
    importers = {
        module
        for module, targets in _imports().items()
        if any(t == "racecast.pipelines" or t.startswith("racecast.pipelines.") for t in targets)
        and _package(module) not in ("pipelines", "pipeline_registry")
    }
    assert importers == set()


def test_only_serving_and_the_cli_import_the_fastapi_app() -> None:
    importers = {
        module
        for module, targets in _imports().items()
        if "racecast.serving.app" in targets and _package(module) not in ("serving", "cli")
    }
    assert importers == set()


def test_no_global_statements() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{node.lineno}"
        for path in sorted(SRC.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Global)
    ]
    assert offenders == []


def test_no_module_over_700_lines() -> None:
    """A module that outgrows 700 lines has more than one job: split it by job."""
    long = {
        str(path.relative_to(SRC)): n
        for path in sorted(SRC.rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 700
    }
    assert long == {}
