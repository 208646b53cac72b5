"""The feature store's engines: which ``feature_store*.yaml`` a store uses, its connection
settings, the offline sources of its offline store, engine checks, and the Feast 0.49
workarounds of the scale-out engines (Spark offline store, SQL registry).

A Feast repo location (``features.repo_path``) names either the repo folder (its
``feature_store.yaml``, or the file ``FEAST_FS_YAML_FILE_PATH`` names, as Feast reads it)
or one yaml file inside the folder, e.g. ``feature_repo/feature_store.scale.yaml``.
``${NAME}`` and ``${NAME:-default}`` in a yaml are filled from the environment variable
``NAME``, else the key ``name`` (lower case) of ``conf/local/credentials.yml`` of the
project holding the repo folder, else the default; a placeholder with none of the three
is an error naming them.

Every racecast workaround of Feast internals is written for, and checked against, Feast
``FEAST_VERSION``; :func:`check_feast_version` fails on any other version so that they
are reviewed. They are the ones below (SQL registry path, Spark in UTC, Spark entity rows
and served frames) and three that live with the code they speed up, each calling the check
(the two stores through :func:`feast_attribute_swapped`, their one swap mechanism):

- :class:`racecast.features.offline_store.AsofDuckDBOfflineStore` swaps Feast's ibis
  ``point_in_time_join`` for an ASOF join while it runs;
- :class:`racecast.features.offline_store_spark.AsofSparkOfflineStore` swaps Feast's Spark
  point-in-time query template for a sort-based as-of one while it renders;
- :class:`racecast.features.online_read.OnlineReader` reads Feast's SQLite online table
  layout and decodes its ``Value`` protobufs directly.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

#: The Feast release the workarounds of this module were written for.
FEAST_VERSION = "0.49.0"
#: Feast's own variable naming the active yaml of a repo (read by ``feast.utils``).
FEAST_YAML_VARIABLE = "FEAST_FS_YAML_FILE_PATH"
DEFAULT_YAML = "feature_store.yaml"
#: The ``offline_store.type`` of racecast's as-of Spark store (a Feast Spark store).
SPARK_ASOF_TYPE = "racecast.features.offline_store_spark.AsofSparkOfflineStore"
#: Offline store types that are Feast's Spark store (SparkSources, pyspark and Java).
SPARK_TYPES = ("spark", SPARK_ASOF_TYPE)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class EngineUnavailable(RuntimeError):
    """An engine the feature store's yaml names cannot be used here (one-line message)."""


def check_feast_version() -> None:
    """Fail unless the installed Feast is the release the workarounds were written for.

    Raises:
        RuntimeError: If ``feast.__version__`` is not ``FEAST_VERSION``.
    """
    import feast

    if feast.__version__ != FEAST_VERSION:
        raise RuntimeError(
            f"racecast.features.engines holds workarounds for feast {FEAST_VERSION}, found "
            f"feast {feast.__version__}: review them (and constraints.txt) before upgrading"
        )


#: Serializes :func:`feast_attribute_swapped` across threads (one swap at a time).
_SWAP_LOCK = threading.RLock()


@contextlib.contextmanager
def feast_attribute_swapped(module: Any, name: str, replacement: Any) -> Iterator[None]:
    """``module.name`` is ``replacement`` inside the block, Feast's own again after it.

    The one mechanism of the workarounds that replace a Feast module attribute while a
    Feast method runs (the offline stores' point-in-time joins): the Feast version is
    checked first (:func:`check_feast_version`), and a lock keeps two threads from
    interleaving their swaps and restores.

    Raises:
        RuntimeError: If the installed Feast is not ``FEAST_VERSION``.
    """
    check_feast_version()
    with _SWAP_LOCK:
        original = getattr(module, name)
        setattr(module, name, replacement)
        try:
            yield
        finally:
            setattr(module, name, original)


def locate(repo_path: str | Path) -> tuple[Path, Path]:
    """The repo folder and the yaml file of a repo location.

    Args:
        repo_path: A repo folder, or a ``*.yaml`` file inside one.

    Returns:
        ``(folder, yaml)``, both absolute. For a folder the yaml is the one Feast would
        read (``FEAST_FS_YAML_FILE_PATH`` when set, else ``feature_store.yaml``).

    Raises:
        FileNotFoundError: If the yaml does not exist.
    """
    path = Path(repo_path).resolve()
    if path.suffix in (".yaml", ".yml"):
        folder, config = path.parent, path
    else:
        from feast.utils import get_default_yaml_file_path

        folder = path
        config = Path(get_default_yaml_file_path(path))
        config = config if config.is_absolute() else (Path.cwd() / config).resolve()
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: run racecast from the project root")
    return folder, config


def _credentials(folder: Path) -> dict[str, Any]:
    """``conf/local/credentials.yml`` of the project holding the repo folder ({} if none)."""
    path = folder.parent / "conf" / "local" / "credentials.yml"
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    return loaded


def expand(text: str, folder: Path, environ: dict[str, str] | None = None) -> str:
    """Fill the ``${NAME}`` / ``${NAME:-default}`` placeholders of a yaml text.

    Args:
        text: The yaml text.
        folder: The repo folder (its project's ``conf/local/credentials.yml`` is read).
        environ: Environment variables (``os.environ`` by default).

    Returns:
        The text with every placeholder replaced.

    Raises:
        EngineUnavailable: If a placeholder has no value and no default.
    """
    env = os.environ if environ is None else environ
    names = set(_PLACEHOLDER.findall(text))
    credentials = _credentials(folder) if any(n not in env for n, _ in names) else {}

    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if name.lower() in credentials:
            return str(credentials[name.lower()])
        if default is not None:
            return default
        raise EngineUnavailable(
            f"{name} is not set: export it or set {name.lower()} in conf/local/credentials.yml"
        )

    return _PLACEHOLDER.sub(value, text)


def load_config(repo_path: str | Path) -> tuple[Path, Path, Any]:
    """Read a repo location's yaml into a Feast ``RepoConfig``.

    A SQLite SQL registry's relative path is taken from the repo folder (as Feast takes
    the file registry's), and its engine commits each statement (see
    :func:`_sqlite_registry_workaround`).

    Args:
        repo_path: Repo folder or yaml file (see :func:`locate`).

    Returns:
        ``(folder, yaml, RepoConfig)``.
    """
    from feast.repo_config import RepoConfig

    folder, config_path = locate(repo_path)
    raw = yaml.safe_load(expand(config_path.read_text(encoding="utf-8"), folder))
    registry = raw.get("registry")
    if isinstance(registry, dict) and registry.get("registry_type") == "sql":
        raw["registry"] = _sqlite_registry_workaround(registry, folder)
    offline = raw.get("offline_store")
    if isinstance(offline, dict) and offline.get("type") in SPARK_TYPES:
        raw["offline_store"] = _spark_in_utc(offline)
    config = RepoConfig(**raw)
    config.repo_path = folder
    return folder, config_path, config


def _sqlite_registry_workaround(registry: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A SQL registry on SQLite that Feast 0.49 can write.

    Feast 0.49's ``SqlRegistry`` writes the project row and the last-updated time in a
    second transaction opened inside the first (feast-dev/feast#5565), which SQLite
    answers with ``database is locked``. With ``AUTOCOMMIT`` every statement commits on
    its own, so the inner writes find no open write transaction. Other databases are
    left as configured.
    """
    url = str(registry.get("path", ""))
    if not url.startswith("sqlite:///"):
        return registry
    check_feast_version()
    file = Path(url.removeprefix("sqlite:///"))
    if not file.is_absolute():
        file = folder / file
    file.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"echo": False, **registry.get("sqlalchemy_config_kwargs", {})}
    kwargs.setdefault("isolation_level", "AUTOCOMMIT")
    return {**registry, "path": f"sqlite:///{file}", "sqlalchemy_config_kwargs": kwargs}


def _spark_in_utc(offline: dict[str, Any]) -> dict[str, Any]:
    """The Spark store's settings with the session in UTC (Spark's timestamps come back
    without a zone, in the session's; :func:`spark_served` marks them UTC)."""
    conf = {**(offline.get("spark_conf") or {})}
    zone = conf.setdefault("spark.sql.session.timeZone", "UTC")
    if zone != "UTC":
        raise ValueError(f"spark.sql.session.timeZone must be UTC for racecast, not {zone!r}")
    return {**offline, "spark_conf": conf}


def offline_store_type(folder: str | Path) -> str:
    """The offline store type of the yaml Feast reads for a repo folder (definitions use it).

    Args:
        folder: The repo folder.

    Returns:
        ``offline_store.type`` of that yaml (``"file"`` when the yaml names none).
    """
    _, config_path = locate(folder)
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    offline = raw.get("offline_store") or {}
    return str(offline.get("type", "file")) if isinstance(offline, dict) else str(offline)


@contextlib.contextmanager
def active_yaml(folder: Path, config_path: Path) -> Iterator[None]:
    """Within the block Feast (and :func:`offline_store_type`) read ``config_path`` as the
    yaml of ``folder``, through Feast's ``FEAST_FS_YAML_FILE_PATH``."""
    old = os.environ.get(FEAST_YAML_VARIABLE)
    if config_path == folder / DEFAULT_YAML and old is None:
        yield
        return
    os.environ[FEAST_YAML_VARIABLE] = str(config_path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(FEAST_YAML_VARIABLE, None)
        else:
            os.environ[FEAST_YAML_VARIABLE] = old


def state_source(view: str, data_dir: Path, folder: Path) -> Any:
    """The offline source of a view's post-race state table, for the repo's offline store.

    One definition for every engine: a ``FileSource`` (DuckDB and file stores) or, when
    the active yaml names the Spark offline store, a ``SparkSource`` (the only source it
    accepts) over the same parquet file, with the same name and timestamp field.

    Args:
        view: Feature view name (the table is ``<data_dir>/<view>.parquet``).
        data_dir: Folder of the state tables.
        folder: The repo folder (its active yaml decides the source kind).

    Returns:
        The data source.
    """
    common = {
        "name": f"{view}_state",
        "path": str(Path(data_dir) / f"{view}.parquet"),
        "timestamp_field": "event_timestamp",
        "description": f"Post-race state of {view}, written by the Kedro features pipeline.",
    }
    if offline_store_type(folder) in SPARK_TYPES:
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        return SparkSource(file_format="parquet", **common)
    from feast import FileSource
    from feast.data_format import ParquetFormat

    return FileSource(file_format=ParquetFormat(), **common)


# --------------------------------------------------------------------------- checks
def _redis_address(connection_string: str) -> tuple[str, int]:
    first = connection_string.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return (host or "localhost"), int(port or 6379)


def check_online(config: Any) -> None:
    """Fail with one line when the online store's server does not answer.

    Only the Redis store has a server; others pass.

    Raises:
        EngineUnavailable: If Redis does not answer a PING (or its client is missing).
    """
    online = config.online_store
    if getattr(online, "type", None) != "redis":
        return
    if importlib.util.find_spec("redis") is None:
        raise EngineUnavailable(
            'the Redis online store needs the redis client: pip install -e ".[scale]"'
        )
    import redis

    host, port = _redis_address(online.connection_string)
    try:
        redis.Redis(host=host, port=port, socket_timeout=3, socket_connect_timeout=3).ping()
    except redis.exceptions.AuthenticationError:
        return  # the server is there; Feast's own client passes the password
    except redis.exceptions.RedisError as exc:
        raise EngineUnavailable(
            f"Redis online store at {host}:{port} does not answer ({exc}): start redis-server "
            "or set RACECAST_REDIS_URL (racecast_redis_url in conf/local/credentials.yml)"
        ) from None


def java_binary() -> str | None:
    """The ``java`` Spark would start: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


def check_offline(config: Any) -> None:
    """Fail with one line when the offline store's engine cannot start here.

    Only the Spark store needs more than Python: pyspark and a Java runtime.

    Raises:
        EngineUnavailable: If pyspark or Java is missing.
    """
    if not is_spark(config):
        return
    if importlib.util.find_spec("pyspark") is None:
        raise EngineUnavailable(
            'the Spark offline store needs pyspark: pip install -c constraints.txt -e ".[scale]"'
        )
    if java_binary() is None:
        where = "JAVA_HOME" if os.environ.get("JAVA_HOME") else "PATH"
        raise EngineUnavailable(
            f"the Spark offline store needs Java 17 (none found on {where}): "
            "apt-get install openjdk-17-jre-headless or set JAVA_HOME"
        )


# ---------------------------------------------------------------- Spark workarounds
def is_spark(config: Any) -> bool:
    """Whether the store's offline store is Feast's Spark store (or racecast's as-of one)."""
    return getattr(config.offline_store, "type", None) in SPARK_TYPES


def spark_entity_rows(entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Entity rows for Feast 0.49's Spark store: a copy, since the store converts the
    timestamp column of the frame it is given in place."""
    check_feast_version()
    return entity_rows.copy()


def spark_served(served: pd.DataFrame) -> pd.DataFrame:
    """Spark's answer with the DuckDB store's timestamp types.

    Spark returns timestamps without a zone, in the session's zone (UTC, see
    :func:`load_config`); they are marked UTC again.
    """
    out = served.copy()
    for name, dtype in out.dtypes.items():
        if pd.api.types.is_datetime64_dtype(dtype) and not isinstance(dtype, pd.DatetimeTZDtype):
            out[name] = out[name].dt.tz_localize("UTC")
    return out
