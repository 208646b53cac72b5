"""The project's catalog entries, one catalog file at a time, as Kedro resolves them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from racecast.project import load_catalog_config

ROOT = Path(__file__).resolve().parents[1]
CATALOG_DIR = ROOT / "conf" / "base" / "catalog"


@functools.cache
def _resolved() -> dict[str, Any]:
    return load_catalog_config(None, ROOT)


def catalog_file(name: str) -> dict[str, Any]:
    """Entries of ``conf/base/catalog/<name>.yml`` (``${globals:...}`` resolved), fresh copies."""
    keys = yaml.safe_load((CATALOG_DIR / f"{name}.yml").read_text())
    resolved = _resolved()
    return {key: yaml.safe_load(yaml.safe_dump(resolved[key])) for key in keys}
