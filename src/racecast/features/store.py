"""Feast I/O: apply the repo, materialize, and read state offline and online.

Everything that touches Feast goes through this module so that training (historical
retrieval) and serving (online retrieval) ask the same FeatureService in the same way.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from feast import FeatureService, FeatureStore, Field
from feast.types import Float64, Int64, String

from racecast.features import engines
from racecast.features.specs import ViewSpec

logger = logging.getLogger(__name__)

_FEAST_TYPES = {"float64": Float64, "int64": Int64, "string": String}

#: ANSI colour codes (Feast colours what it prints).
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: One state of a tqdm progress bar (Feast draws one per view).
_BAR = re.compile(r"\s*\d{1,3}%\|.*\]\s*$")
REPO_MODULES = ("entities", "data_sources", "feature_views", "feature_services", "market")


def feast_schema(spec: ViewSpec) -> list[Field]:
    """Turn a view spec into Feast fields.

    Args:
        spec: The view's specification from ``racecast.features.specs.VIEWS``.

    Returns:
        One Feast ``Field`` per feature, in spec order.

    Raises:
        ValueError: If a feature has a dtype Feast cannot store here.
    """
    fields = []
    for name, dtype in spec.features.items():
        if dtype not in _FEAST_TYPES:
            raise ValueError(f"feature {spec.name}.{name}: unsupported dtype {dtype!r}")
        fields.append(Field(name=name, dtype=_FEAST_TYPES[dtype]))
    return fields


@contextlib.contextmanager
def _inside_repo(repo_path: Path) -> Iterator[None]:
    """Import the repo's definition files fresh, as the Feast CLI does (cwd = repo)."""
    old_cwd = os.getcwd()
    names = {p.stem for p in repo_path.glob("*.py")} | set(REPO_MODULES)
    for name in names:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(repo_path))
    os.chdir(repo_path)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        with contextlib.suppress(ValueError):
            sys.path.remove(str(repo_path))
        for name in names:
            sys.modules.pop(name, None)


def get_store(repo_path: str | Path = "feature_repo") -> FeatureStore:
    """Open the feature store of a repo location.

    Args:
        repo_path: The repo folder (relative to the project root), or one of its yaml
            files such as ``feature_repo/feature_store.scale.yaml``
            (:mod:`racecast.features.engines`: which yaml, its settings).

    Returns:
        The Feast ``FeatureStore``.

    Raises:
        FileNotFoundError: If the location has no yaml.
        EngineUnavailable: If the yaml's online store (Redis) does not answer.
    """
    folder, _, config = engines.load_config(repo_path)
    (folder / "data").mkdir(exist_ok=True)
    engines.check_online(config)
    return FeatureStore(repo_path=str(folder), config=config)


def apply_repo(repo_path: str | Path = "feature_repo") -> dict[str, Any]:
    """``feast apply``: register the repo's definitions, deleting ones that were removed.

    Args:
        repo_path: Repo location (folder or yaml, as for :func:`get_store`); the
            definition files are the folder's.

    Returns:
        A summary ``{"project", "feature_views", "on_demand_feature_views",
        "feature_services", "entities"}`` with the applied object names.
    """
    from feast.repo_operations import extract_objects_for_apply_delete, parse_repo

    folder, config_path = engines.locate(repo_path)
    store = get_store(repo_path)
    with engines.active_yaml(folder, config_path), _inside_repo(folder):
        repo = parse_repo(folder)
    to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
        store.project, store.registry, repo
    )
    store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    summary = {
        "project": store.project,
        "entities": sorted(e.name for e in repo.entities if e.name != "__dummy"),
        "feature_views": sorted(v.name for v in repo.feature_views),
        "on_demand_feature_views": sorted(v.name for v in repo.on_demand_feature_views),
        "feature_services": sorted(s.name for s in repo.feature_services),
    }
    logger.info("feast apply: %s", summary)
    return summary


def service(store: FeatureStore, name: str) -> FeatureService:
    """Fetch a FeatureService, with an error that lists the ones that exist.

    Args:
        store: The feature store.
        name: FeatureService name (e.g. ``fundamental_v1``).

    Returns:
        The registered FeatureService.

    Raises:
        KeyError: If no service of that name is registered.
    """
    names = [s.name for s in store.list_feature_services()]
    if name not in names:
        raise KeyError(
            f"feature service {name!r} is not registered (have: {', '.join(sorted(names))})"
        )
    return store.get_feature_service(name)


def service_view_features(store: FeatureStore, name: str) -> list[str]:
    """Names of the state features a service serves from its (non on-demand) views."""
    svc = service(store, name)
    odfv_names = {v.name for v in store.list_on_demand_feature_views()}
    return [
        f.name
        for proj in svc.feature_view_projections
        if proj.name not in odfv_names
        for f in proj.features
    ]


def _utc(ts: Any) -> datetime:
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


@contextlib.contextmanager
def _feast_console() -> Iterator[None]:
    """What Feast prints inside the block: as is on a terminal, else logged as plain text.

    Feast ``print``s colour-coded lines to stdout and draws a progress bar per view on
    stderr while it materializes; in a pipe or a log file the lines become INFO records
    without the ANSI codes, in the log's format, and the bars are left out.
    """
    if sys.stdout.isatty() and sys.stderr.isatty():
        yield
        return
    printed, drawn = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(drawn):
            yield
    finally:
        text = _ANSI.sub("", printed.getvalue() + "\n" + drawn.getvalue())
        for line in re.split(r"[\r\n]", text):
            if line.strip() and not _BAR.match(line):
                logger.info("feast: %s", line.strip())


def materialized_until(store: FeatureStore) -> datetime | None:
    """Latest end of any materialization interval of the store's views (None if never)."""
    ends = [iv[1] for fv in store.list_feature_views() for iv in fv.materialization_intervals]
    return max(ends) if ends else None


def materialize(
    store: FeatureStore, end: Any, repo_path: str | Path = "feature_repo"
) -> dict[str, Any]:
    """Load state rows up to ``end`` into the online store, incrementally.

    Views never materialized are loaded from the beginning of time (Feast's own
    incremental start, ``now - ttl``, would skip historical data such as Hong Kong
    1997-2005). Asking for an ``end`` earlier than what the online store already holds
    rewinds it: the store is torn down, the repo re-applied and loaded up to ``end``, so
    the online store never holds results from after the cut-off.

    Args:
        store: The feature store.
        end: Load state rows with ``event_timestamp <= end`` (naive = UTC).
        repo_path: The repo, re-applied when rewinding.

    Returns:
        ``{"end": ISO time, "mode": "incremental" | "initial" | "rewind", "views": [...]}``.
    """
    engines.check_offline(store.config)
    end_dt = _utc(end)
    done = materialized_until(store)
    mode = "incremental"
    if done is not None and end_dt < done:
        logger.info("online store holds state until %s; rewinding to %s", done, end_dt)
        store.teardown()
        apply_repo(repo_path)
        store = get_store(repo_path)
        mode = "rewind"
    views = store.list_feature_views()
    fresh = [fv.name for fv in views if not fv.materialization_intervals]
    seen = [fv.name for fv in views if fv.materialization_intervals]
    if fresh:
        mode = "initial" if mode == "incremental" and not seen else mode
    with _feast_console():
        if fresh:
            store.materialize(
                start_date=datetime(1970, 1, 1, tzinfo=UTC), end_date=end_dt, feature_views=fresh
            )
        if seen:
            store.materialize_incremental(end_date=end_dt, feature_views=seen)
    logger.info("feast materialize (%s) until %s", mode, end_dt.isoformat())
    return {"end": end_dt.isoformat(), "mode": mode, "views": sorted(fresh + seen)}


def write_online(store: FeatureStore, view_name: str, rows: pd.DataFrame) -> None:
    """Make ``rows`` their entities' online state of a view (``write_to_online_store``).

    Feast's SQLite store replaces what it holds. Feast 0.49's Redis store silently keeps a
    stored row whose event time is not older than the written one, so a correction (same
    event times, other values) would be dropped: on Redis the view's stored event times of
    these entities are cleared first.

    Args:
        store: The feature store.
        view_name: Feature view written.
        rows: State rows (join keys, ``event_timestamp`` and the view's features).
    """
    if getattr(store.config.online_store, "type", None) == "redis":
        _clear_redis_times(store, view_name, rows)
    store.write_to_online_store(view_name, rows)


def _clear_redis_times(store: FeatureStore, view_name: str, rows: pd.DataFrame) -> None:
    """Delete the ``_ts:<view>`` field of the rows' entities in Feast's Redis hashes."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.infra.provider import get_provider
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    keys = sorted(store.get_feature_view(view_name).join_keys)
    entities = rows[keys].dropna().astype(str).drop_duplicates()
    version = store.config.entity_key_serialization_version
    client = get_provider(store.config).online_store._get_client(store.config.online_store)
    with client.pipeline(transaction=False) as pipe:
        for values in entities.itertuples(index=False):
            proto = EntityKey(join_keys=keys, entity_values=[Value(string_val=v) for v in values])
            pipe.hdel(_redis_key(store.config.project, proto, version), f"_ts:{view_name}")
        pipe.execute()


def historical_state(
    store: FeatureStore,
    entity_rows: pd.DataFrame,
    service_name: str,
    row_keys: tuple[str, ...] = ("race_id", "horse_id"),
) -> pd.DataFrame:
    """Point-in-time join of a service's features onto entity rows (training path).

    Args:
        store: The feature store.
        entity_rows: One row per runner with the entity keys, ``event_timestamp`` (the off
            time) and any request data the service needs (e.g. ``race_id``, ``odds_final``).
        service_name: FeatureService to read.
        row_keys: Columns identifying a runner, used to align Feast's output to the input.

    Returns:
        The served columns aligned to ``entity_rows``' index, exactly one row per runner.

    Raises:
        RuntimeError: If Feast returned a different number of rows than runners.
    """
    svc = service(store, service_name)
    spark = engines.is_spark(store.config)
    if spark:
        engines.check_offline(store.config)
    asked = engines.spark_entity_rows(entity_rows) if spark else entity_rows
    served = store.get_historical_features(entity_df=asked, features=svc).to_df()
    if spark:
        served = engines.spark_served(served)
    if len(served) != len(entity_rows) or served.duplicated(list(row_keys)).any():
        raise RuntimeError(
            f"feature service {service_name}: point-in-time join returned {len(served)} rows "
            f"for {len(entity_rows)} runners; expected exactly one row per runner"
        )
    keyed = entity_rows[list(row_keys)].reset_index()
    aligned = keyed.merge(served, on=list(row_keys), how="left", suffixes=("", "_served"))
    aligned = aligned.set_index("index").loc[entity_rows.index]
    aligned.index.name = entity_rows.index.name
    return aligned


def online_state(
    store: FeatureStore,
    entity_rows: pd.DataFrame,
    service_name: str,
    request_columns: tuple[str, ...] = ("race_id", "odds_final"),
    join_keys: tuple[str, ...] = ("horse_id", "jockey_id", "trainer_id", "track_key"),
) -> pd.DataFrame:
    """Read a service's features for runners from the online store (serving path).

    Args:
        store: The feature store.
        entity_rows: One row per runner with the entity keys and request data.
        service_name: FeatureService to read.
        request_columns: Request-data columns passed through to on-demand views.
        join_keys: Entity join keys of the service's views.

    Returns:
        The served columns aligned to ``entity_rows``' index, plus the keys.
    """
    svc = service(store, service_name)
    cols = [c for c in (*join_keys, *request_columns) if c in entity_rows.columns]
    rows = (
        entity_rows[cols].astype(object).where(entity_rows[cols].notna(), None).to_dict("records")
    )
    response = store.get_online_features(features=svc, entity_rows=rows).to_df()
    response.index = entity_rows.index
    return response
