"""Read the project's configuration for an env, as ``kedro`` does, without a session.

Every ``racecast`` command runs from the project root (like ``kedro``) and reads that
project's ``conf/`` for the chosen env.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

from racecast.settings import CONFIG_LOADER_ARGS


def project_root(start: Path | None = None) -> Path:
    """Return the project root (the folder with ``pyproject.toml`` and ``conf/``).

    Args:
        start: Folder to start from; the current directory by default.

    Returns:
        The project root.

    Raises:
        FileNotFoundError: If ``start`` is not a racecast project root.
    """
    root = (start or Path.cwd()).resolve()
    if not (root / "conf" / "base").is_dir() or not (root / "pyproject.toml").is_file():
        raise FileNotFoundError(
            f"{root} is not a racecast project root (no conf/base or pyproject.toml): "
            "run racecast from the project root, like kedro"
        )
    return root


def load_parameters(env: str | None = None, root: Path | None = None) -> dict[str, Any]:
    """Load the merged parameters of ``conf/base`` and ``conf/<env>``.

    Args:
        env: Kedro env (``local`` by default, as for ``kedro run``).
        root: Project root; the current directory by default.

    Returns:
        The parameters dictionary.

    Raises:
        ValueError: If the env folder does not exist.
    """
    root = project_root(root)
    run_env = env or "local"
    if env and not (root / "conf" / env).is_dir():
        envs = sorted(p.name for p in (root / "conf").iterdir() if p.is_dir() and p.name != "base")
        raise ValueError(f"--env {env}: no folder conf/{env} (available: {', '.join(envs)})")
    loader = OmegaConfigLoader(
        conf_source=str(root / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": run_env}
    )
    return dict(loader["parameters"])


def load_catalog_config(env: str | None = None, root: Path | None = None) -> dict[str, Any]:
    """The merged catalog configuration of ``conf/base`` and ``conf/<env>``."""
    root = project_root(root)
    load_parameters(env, root)  # validates the env folder
    loader = OmegaConfigLoader(
        conf_source=str(root / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env or "local"}
    )
    return dict(loader["catalog"])


def dataset_path(
    catalog: dict[str, Any], name: str, root: Path | None = None, **placeholders: str
) -> Path:
    """The file or folder of a catalog dataset (``filepath`` or ``path``), from the root.

    Args:
        catalog: :func:`load_catalog_config` output.
        name: Dataset name, or a factory pattern such as ``"feature_state.{view}"``.
        root: Project root the relative paths start from; the current directory by default.
        **placeholders: Values of the pattern's placeholders (``view="horse_form"``).

    Raises:
        KeyError: If the catalog has no such dataset or it has no path.
    """
    entry = catalog.get(name)
    location = (entry or {}).get("filepath") or (entry or {}).get("path")
    if not location:
        raise KeyError(f"catalog: no dataset {name!r} with a filepath or path")
    return project_root(root) / str(location).format(**placeholders)
