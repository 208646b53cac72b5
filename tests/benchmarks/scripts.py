"""Load a script of ``benchmarks/`` as a module for its tests: :func:`load_script`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as module ``racecast_bench_<name>``.

    By path: an installed third-party package is also called ``benchmarks``. The folder
    goes on ``sys.path`` first, because the scripts import their siblings by name
    (``services``, ``machine``, ...), as they do when run from the command line.
    """
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"racecast_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
