"""DuckDB offline store with an ASOF point-in-time join.

Feast 0.49's DuckDB store joins every entity row to *every* earlier state row of its
entity and then keeps the latest (a quadratic join): entities with long histories
(jockeys, trainers) took ~25 s each on 32k runners. DuckDB's native ``ASOF JOIN`` does
the same lookup -- the latest state row with ``event_timestamp <= entity timestamp``,
within the view's TTL -- in well under a second. Everything else (sources, on-demand
views, retrieval jobs, materialization) is Feast's own DuckDB store, unchanged.

A workaround of Feast internals (see :mod:`racecast.features.engines`, which lists them
all and holds the version check). Select it in ``feature_store.yaml``::

    offline_store:
      type: racecast.features.offline_store.AsofDuckDBOfflineStore
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import ibis
from feast.infra.offline_stores import ibis as feast_ibis
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig

from racecast.features.engines import feast_attribute_swapped


class AsofDuckDBOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """Same options as Feast's DuckDB store."""

    type: str = "racecast.features.offline_store.AsofDuckDBOfflineStore"


def asof_point_in_time_join(
    entity_table: Any,
    feature_tables: list[tuple[Any, str, str | None, dict[str, str], list[str], timedelta | None]],
    event_timestamp_col: str = "event_timestamp",
    event_expire_timestamp_fn: Any = None,
) -> Any:
    """Point-in-time join of feature tables onto entity rows with ASOF joins.

    Same contract as ``feast.infra.offline_stores.ibis.point_in_time_join``: for each
    entity row and view, the view row with the latest ``timestamp_field <= entity
    timestamp`` among rows of the same join keys (of rows with equal timestamps, the one
    created last), ignored when older than the TTL; every
    entity row is kept (left join), features are null when nothing matches.

    Args:
        entity_table: Ibis table of entity rows.
        feature_tables: Per view: (table, timestamp field, created-timestamp field, join
            key map {view key: entity column}, feature names, TTL).
        event_timestamp_col: Entity timestamp column.
        event_expire_timestamp_fn: Unused (kept for signature compatibility).

    Returns:
        The entity table with every requested feature column.
    """
    acc = entity_table
    for i, (table, ts_field, created, join_key_map, feature_refs, ttl) in enumerate(feature_tables):
        ts_name = f"__racecast_fts_{i}"
        key_names = {key: f"__racecast_key_{i}_{key}" for key in join_key_map}
        right = table.select(
            **{ts_name: table[ts_field]},
            **{alias: table[key] for key, alias in key_names.items()},
            **{name: table[name] for name in feature_refs},
            **({"__racecast_created": table[created]} if created else {}),
        )
        if created:  # of rows with equal keys and timestamp, the latest created one
            rank = ibis.row_number().over(
                group_by=[*key_names.values(), ts_name], order_by=ibis.desc(right["__racecast_created"])
            )
            right = right.mutate(__racecast_rank=rank)
            right = right.filter(right["__racecast_rank"] == 0).drop("__racecast_rank", "__racecast_created")
        # Only state rows some entity row can use: none after the last entity timestamp and,
        # with a TTL, none expired before the first (each would be a miss or a null anyway).
        when = entity_table[event_timestamp_col]
        usable = right[ts_name] <= when.max().as_scalar()
        if ttl:
            usable &= right[ts_name] >= when.min().as_scalar() - ibis.interval(seconds=int(ttl.total_seconds()))
        right = right.filter(usable)
        # The lookup depends only on the view's keys and the timestamp: ASOF-join the distinct
        # (keys, timestamp) probes -- a narrow left side, not the entity rows with every column
        # joined so far -- then hash-join the found features back onto the entity rows.
        probe_columns = [*dict.fromkeys(join_key_map.values()), event_timestamp_col]
        probe_names = {col: f"__racecast_probe_{i}_{n}" for n, col in enumerate(probe_columns)}
        probes = entity_table.select(**{alias: entity_table[col] for col, alias in probe_names.items()}).distinct()
        predicates = [probes[probe_names[join_key_map[key]]] == right[alias] for key, alias in key_names.items()]
        found = probes.asof_join(right, on=probes[probe_names[event_timestamp_col]] >= right[ts_name], predicates=predicates)
        if ttl:
            fresh = found[ts_name] >= found[probe_names[event_timestamp_col]] - ibis.interval(seconds=int(ttl.total_seconds()))
            found = found.mutate(
                **{name: ibis.ifelse(fresh, found[name], ibis.null().cast(found[name].type())) for name in feature_refs}
            )
        found = found.select(*probe_names.values(), *feature_refs)
        back = [acc[col] == found[alias] for col, alias in probe_names.items()]
        acc = acc.left_join(found, back).drop(*probe_names.values())
    if "entity_row_id" in acc.columns:
        acc = acc.drop("entity_row_id")
    return acc


class AsofDuckDBOfflineStore(DuckDBOfflineStore):
    """Feast's DuckDB offline store, with the ASOF point-in-time join."""

    @staticmethod
    def get_historical_features(*args: Any, **kwargs: Any):  # noqa: ANN205 - Feast's signature
        """Feast's DuckDB historical retrieval, joined with ``asof_point_in_time_join``.

        The swap of ``feast.infra.offline_stores.ibis.point_in_time_join`` is a Feast
        internal (:func:`~racecast.features.engines.feast_attribute_swapped`: any other
        Feast release than the one it was written for is refused).
        """
        with feast_attribute_swapped(feast_ibis, "point_in_time_join", asof_point_in_time_join):
            return DuckDBOfflineStore.get_historical_features(*args, **kwargs)
