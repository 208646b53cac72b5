"""The lean online read of a FeatureService (serving path): :class:`OnlineReader`.

What ``FeatureStore.get_online_features`` returns, read without its per-call overhead:
the service resolved once, one SQLite statement for every view (one Redis pipeline of
every view's ``HMGET`` on Redis; the provider's ``online_read`` per view on any other
online store), the stored ``Value`` messages decoded with numpy. Part of the
Feast-version workarounds: the SQLite table layout (``<project>_<view>``, serialized
entity keys, one row per feature), the Redis layout (a hash per entity key and project,
a murmur3 field per ``<view>:<feature>``, ``_ts:<view>`` holding the event time) and the
``Value`` encodings are Feast 0.49's.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.types import String

from racecast.data.frames import column_arrays
from racecast.features.columnar import ColumnMatrix, is_null
from racecast.features.engines import check_feast_version
from racecast.features.store import service

__all__ = ["OnlineReader", "proto_value", "stored_value"]


class OnlineReader:
    """Lean online read of a FeatureService's view features.

    ``FeatureStore.get_online_features`` re-resolves the service, validates the request
    and builds protobuf responses on every call (~70 ms for six views in Feast 0.49).
    This reader resolves the service once. On the SQLite online store it reads every
    view's rows for the request's distinct entities in one statement (Feast's own
    ``SqliteOnlineStore.online_read`` query per view, joined by ``UNION ALL``, over a
    read-only connection) and decodes the stored ``Value`` messages with numpy (the
    ``double_val`` and ``int64_val`` encodings the state tables write; anything else
    through protobuf, :func:`stored_value`). On Redis it sends every view's ``HMGET`` of
    the request's entities in one pipeline (the fields and keys Feast's
    ``RedisOnlineStore.online_read`` asks for, one view at a time) and decodes the replies
    the same way. On any other store, or with ``lean=False``, it calls the provider's
    ``online_read`` (what ``get_online_features`` calls underneath) per view. It returns
    exactly the stored values (tested against ``get_online_features`` and the provider's
    ``online_read``). It keeps the
    serialized entity keys it has built (at most :attr:`KEY_CACHE_SIZE`) and, on SQLite,
    the decoded rows of the entities it has read (at most :attr:`ROW_CACHE_SIZE`) for as
    long as the store's ``PRAGMA data_version`` stays the same: any commit to the store
    by another connection (a materialization, a pushed result) forgets them all, so a
    kept row is never older than the store (:meth:`clear_cache` forgets them too). A reader lives
    as long as its FeatureStore: after a teardown (a rewinding materialization) open a
    new store and reader. On-demand views are not evaluated: their inputs are request
    data, and ``build_features`` computes the market features with the same function the
    on-demand view calls.

    Args:
        store: The feature store.
        service_name: FeatureService to read.
        lean: False: the provider's ``online_read`` per view on every store (the
            reference the lean reads are tested against; nothing kept).

    Raises:
        KeyError: If the service is not registered.
    """

    #: Serialized entity keys kept (a meeting's horses, jockeys, trainers and pairs).
    KEY_CACHE_SIZE = 65_536
    #: Most bound parameters in one SQLite statement (SQLite's limit is 32,766).
    SQL_PARAMS = 30_000
    #: Decoded entity rows kept between reads of the SQLite store (see :meth:`read`).
    ROW_CACHE_SIZE = 16_384

    def __init__(self, store: FeatureStore, service_name: str, lean: bool = True) -> None:
        from feast.infra.provider import get_provider

        check_feast_version()  # the SQLite and Redis layouts and Value decoding are Feast internals

        svc = service(store, service_name)
        views = {fv.name: fv for fv in store.list_feature_views()}
        self.service_name = service_name
        self._config = store.config
        self._provider = get_provider(store.config)
        self._plan = [
            (views[proj.name], [f.name for f in proj.features], sorted(views[proj.name].join_keys))
            for proj in svc.feature_view_projections
            if proj.name in views
        ]
        self.columns = [name for _, names, _ in self._plan for name in names]
        strings = {
            field.name
            for view, _, _ in self._plan
            for field in view.features
            if field.dtype == String
        }
        self._strings = [c for c in self.columns if c in strings]
        self._numeric = [c for c in self.columns if c not in strings]
        view_of = {name: v for v, (_, names, _) in enumerate(self._plan) for name in names}
        #: feature name -> numeric slot (>= 0) or string slot s as -1 - s
        self._numeric_row = {name: j for j, name in enumerate(self._numeric)}
        self._slot = _Slots(self._numeric_row)
        self._slot.update({name: -1 - s for s, name in enumerate(self._strings)})
        self._numeric_view = np.asarray([view_of[c] for c in self._numeric], dtype=np.intp)
        self._string_view = np.asarray([view_of[c] for c in self._strings], dtype=np.intp)
        self._numeric_slots = np.arange(len(self._numeric))[:, None]
        self._string_slots = np.arange(len(self._strings))[:, None]
        self._time_columns = pd.Index([view.name for view, _, _ in self._plan])
        self._join_keys = sorted({k for _, _, keys in self._plan for k in keys})
        self._sqlite_path = _sqlite_online_path(store.config) if lean else None
        self._redis_fields = _redis_fields(store.config, self._plan) if lean else None
        self._sqlite: sqlite3.Connection | None = None
        self._sqlite_lock = threading.Lock()
        self._keys: dict[tuple[int, tuple[str, ...]], bytes] = {}
        self._kept = _KeptRows(len(self._numeric), len(self._strings), self.ROW_CACHE_SIZE)
        self._rows_lock = threading.Lock()

    @property
    def join_keys(self) -> list[str]:
        """Every join key of the service's views (the entity row columns a read uses)."""
        return list(self._join_keys)

    def store_version(self) -> int | None:
        """The SQLite online store's ``PRAGMA data_version`` on the reader's connection
        (what its kept rows are of): it changes with every commit to the store by another
        connection (a materialization, a pushed result). None on any other store: it has
        no such version."""
        if self._sqlite_path is None or not os.path.isfile(self._sqlite_path):
            return None
        return self._connection().execute("PRAGMA data_version").fetchone()[0]

    def clear_cache(self) -> None:
        """Forget the decoded entity rows (the next read goes to the store for every one)."""
        with self._rows_lock:
            self._kept.clear()

    def _connection(self) -> sqlite3.Connection:
        """A read-only connection to the SQLite online store, without type detection."""
        with self._sqlite_lock:
            if self._sqlite is None:
                uri = f"{Path(self._sqlite_path).resolve().as_uri()}?mode=ro"
                self._sqlite = sqlite3.connect(uri, uri=True, check_same_thread=False)
            return self._sqlite

    def _entities(self, entity_rows: pd.DataFrame) -> list[tuple[np.ndarray, list[tuple]]]:
        """Per view: each runner's entity (index into the distinct keys, -1 for a null key)
        and the distinct key tuples (values as text) in order of first appearance."""
        n = len(entity_rows)
        present = set(entity_rows.columns.tolist())
        text: dict[str, list[str | None]] = {}
        columns = column_arrays(entity_rows, [k for k in self._join_keys if k in present])
        for k, values in columns.items():
            text[k] = [
                v if isinstance(v, str) else None if is_null(v) else str(v)
                for v in np.asarray(values, dtype=object).tolist()
            ]
        out = []
        for view, _, keys in self._plan:
            missing = [k for k in keys if k not in present]
            if missing:
                raise KeyError(f"entity rows lack join key(s) {missing} of view {view.name}")
            index = [-1] * n
            distinct: dict[tuple[str, ...], int] = {}
            rows = zip(*(text[k] for k in keys), strict=True) if keys else [()] * n
            for i, values in enumerate(rows):
                if None not in values:
                    index[i] = distinct.setdefault(values, len(distinct))
            out.append((np.asarray(index, dtype=np.intp), list(distinct)))
        return out

    def _key(self, view: int, keys: list[str], values: tuple[str, ...]) -> bytes:
        """Feast's serialized entity key of ``values`` (built once, then kept)."""
        found = self._keys.get((view, values))
        if found is None:
            from feast.infra.key_encoding_utils import serialize_entity_key
            from feast.protos.feast.types.EntityKey_pb2 import EntityKey
            from feast.protos.feast.types.Value_pb2 import Value

            proto = EntityKey(join_keys=keys, entity_values=[Value(string_val=v) for v in values])
            found = serialize_entity_key(
                proto,
                entity_key_serialization_version=self._config.entity_key_serialization_version,
            )
            if len(self._keys) >= self.KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[(view, values)] = found
        return found

    def _unread(self, total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(numeric, text, event time) arrays of ``total`` entities and the extra last row
        for runners without an entity, nothing read yet (NaN / None)."""
        return (
            np.full((total + 1, len(self._numeric)), np.nan),
            np.full((total + 1, len(self._strings)), None, dtype=object),
            np.full(total + 1, np.nan),
        )

    def _sqlite_rows(
        self, wanted: list[list[tuple[int, tuple]]]
    ) -> list[tuple[int, str, bytes, Any]]:
        """``(entity, feature_name, value, event_ts)`` of every stored row of the entities
        ``wanted`` per view as ``(entity, key values)``.

        One statement (several beyond :attr:`SQL_PARAMS` keys): per view, Feast's
        ``online_read`` query joined to the view's serialized keys, numbered by SQLite.
        """
        parts: list[tuple[str, list[bytes]]] = []
        for v, ((view, _, keys), need) in enumerate(zip(self._plan, wanted, strict=True)):
            serialized = [self._key(v, keys, values) for _, values in need]
            table = f"{self._config.project}_{view.name}"
            for start in range(0, len(serialized), self.SQL_PARAMS):
                chunk = serialized[start : start + self.SQL_PARAMS]
                numbered = ",".join(f"({g},?)" for g, _ in need[start : start + self.SQL_PARAMS])
                parts.append(
                    (
                        f"SELECT k.i, t.feature_name, t.value, t.event_ts FROM "  # noqa: S608 (names from the registry)
                        f"(SELECT column1 AS i, column2 AS key FROM (VALUES {numbered})) k "
                        f'JOIN "{table}" t ON t.entity_key = k.key',
                        chunk,
                    )
                )
        connection = self._connection()
        rows: list[tuple[int, str, bytes, Any]] = []
        statement: list[str] = []
        params: list[bytes] = []
        for sql, chunk in parts:
            if statement and len(params) + len(chunk) > self.SQL_PARAMS:
                rows += connection.execute(" UNION ALL ".join(statement), params).fetchall()
                statement, params = [], []
            statement.append(sql)
            params += chunk
        if statement:
            rows += connection.execute(" UNION ALL ".join(statement), params).fetchall()
        return rows

    def _read_sqlite(
        self,
        entities: list[tuple[np.ndarray, list[tuple]]],
        offsets: list[int],
        total: int,
        version: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(numeric, text, event time) per entity from the SQLite online store at
        :meth:`store_version` ``version`` (asked just before); one extra last row of
        NaN / None for runners without an entity."""
        numbers, texts, times = self._unread(total)
        wanted: list[list[tuple[int, tuple]]] = []
        kept = self._kept
        with self._rows_lock:
            if version != kept.version:  # the store changed (or never read): forget
                kept.clear()
                kept.version = version
            hits: list[int] = []
            rows: list[int] = []
            for v, (_, distinct) in enumerate(entities):
                need = []
                for i, values in enumerate(distinct):
                    row = kept.row.get((v, values))
                    if row is None:
                        need.append((offsets[v] + i, values))
                    else:
                        hits.append(offsets[v] + i)
                        rows.append(row)
                wanted.append(need)
            if hits:
                numbers[hits] = kept.numbers[rows]
                texts[hits] = kept.texts[rows]
                times[hits] = kept.times[rows]
        if any(wanted):
            self._decode_into(self._sqlite_rows(wanted), numbers, texts, times)
            read = [g for need in wanted for g, _ in need]
            keys = [(v, values) for v, need in enumerate(wanted) for _, values in need]
            with self._rows_lock:
                if kept.version == version:
                    kept.store(keys, numbers[read], texts[read], times[read])
        return numbers, texts, times

    def _decode_into(
        self,
        rows: list[tuple[int, str, bytes, Any]],
        numbers: np.ndarray,
        texts: np.ndarray,
        times: np.ndarray,
    ) -> None:
        """Decode stored rows into the per-entity arrays of :meth:`_read_sqlite`."""
        if not rows:
            return
        entity, names, blobs, stamps = zip(*rows, strict=True)
        slot = np.fromiter(map(self._slot.__getitem__, names), dtype=np.intp, count=len(names))
        at = np.asarray(entity, dtype=np.intp)
        wanted = slot != _Slots.SKIP
        if not wanted.all():  # features of the view that the service does not serve
            blobs = [blob for blob, keep in zip(blobs, wanted.tolist(), strict=True) if keep]
            stamps = [stamp for stamp, keep in zip(stamps, wanted.tolist(), strict=True) if keep]
            at, slot = at[wanted], slot[wanted]
        decoded, value = _decode_numbers(blobs)
        numeric = slot >= 0
        fast = numeric & decoded
        numbers[at[fast], slot[fast]] = value[fast]
        sizes = np.fromiter(map(len, blobs), dtype=np.intp, count=len(blobs))
        for i in np.flatnonzero(~fast & (sizes > 0)).tolist():  # text and rare encodings
            python = stored_value(blobs[i])
            if python is None:
                continue
            if slot[i] >= 0:
                numbers[at[i], slot[i]] = python
            else:
                texts[at[i], -1 - slot[i]] = python
        try:
            when = np.asarray(stamps, dtype=np.float64)
        except (TypeError, ValueError):  # datetimes or text (other Feast versions)
            when = np.asarray([_epoch_seconds(s) for s in stamps], dtype=np.float64)
        _latest(times, at, when)

    def _read_redis(
        self, entities: list[tuple[np.ndarray, list[tuple]]], offsets: list[int], total: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`_read_sqlite`, from Redis: one pipeline of every view's ``HMGET``."""
        from google.protobuf.timestamp_pb2 import Timestamp

        numbers, texts, times = self._unread(total)
        project = self._config.project.encode("utf-8")
        client = self._provider.online_store._get_client(self._config.online_store)
        asked: list[tuple[int, int]] = []  # (view, entity) of each HMGET
        with client.pipeline(transaction=False) as pipe:
            for v, ((_, _, keys), (_, distinct)) in enumerate(
                zip(self._plan, entities, strict=True)
            ):
                for i, values in enumerate(distinct):
                    pipe.hmget(self._key(v, keys, values) + project, self._redis_fields[v])
                    asked.append((v, offsets[v] + i))
            replies = pipe.execute() if asked else []
        rows: list[tuple[int, str, bytes, float]] = []
        known: dict[int, float] = {}
        for (v, entity), reply in zip(asked, replies, strict=True):
            *blobs, stamp = reply
            # Feast reads the event time's whole seconds; a missing one is epoch 0
            when = float(Timestamp.FromString(bytes(stamp)).seconds) if stamp else 0.0
            names = self._plan[v][1]
            found = [(entity, n, bytes(b), when) for n, b in zip(names, blobs, strict=True) if b]
            if found or when:  # an entity without a row: no value and time 0 (no time)
                rows += found
                known[entity] = when
        self._decode_into(rows, numbers, texts, times)
        times[list(known)] = list(known.values())
        return numbers, texts, times

    def _read_provider(
        self, entities: list[tuple[np.ndarray, list[tuple]]], offsets: list[int], total: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`_read_sqlite`, through the provider's ``online_read`` per view."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        numbers, texts, times = self._unread(total)
        for v, ((view, names, keys), (_, distinct)) in enumerate(
            zip(self._plan, entities, strict=True)
        ):
            if not distinct:
                continue
            protos = [
                EntityKey(join_keys=keys, entity_values=[Value(string_val=x) for x in values])
                for values in distinct
            ]
            # a copy: Feast 0.49's Redis online_read appends ``_ts:<view>`` to the list
            found = self._provider.online_read(self._config, view, protos, list(names))
            for i, (ts, stored) in enumerate(found):
                python, when = _provider_row(ts, stored)
                for name, value in (python or {}).items():
                    slot = self._slot.get(name)
                    if value is None or slot is None:
                        continue
                    if slot >= 0:
                        numbers[offsets[v] + i, slot] = value
                    else:
                        texts[offsets[v] + i, -1 - slot] = value
                if when is not None:
                    times[offsets[v] + i] = when
        return numbers, texts, times

    def read(self, entity_rows: pd.DataFrame) -> pd.DataFrame:
        """Stored features of the runners' entities (NaN/None where there is no row).

        Args:
            entity_rows: One row per runner with every join key of the service's views.

        Returns:
            One column per served view feature, aligned to ``entity_rows``' index:
            float64 for numeric features (NaN where missing), ``string`` for text.

        Raises:
            KeyError: If a join key column is missing.
        """
        return self._read(entity_rows, with_times=False)[0]

    def read_with_times(self, entity_rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """:meth:`read`, plus when each runner's state rows were stamped.

        Args:
            entity_rows: As for :meth:`read`.

        Returns:
            ``(features, times)``: ``features`` as :meth:`read`; ``times`` has one column
            per view of the service (epoch seconds UTC of the entity's online row, NaN
            where the entity has none), aligned to ``entity_rows``' index.

        Raises:
            KeyError: If a join key column is missing.
        """
        return self._read(entity_rows, with_times=True)

    def read_state(
        self, entity_rows: pd.DataFrame, version: int | None = None
    ) -> tuple[ColumnMatrix, dict[str, np.ndarray], pd.DataFrame]:
        """:meth:`read_with_times` as columns: what serving hands to the transform
        (:func:`racecast.features.transform.build_features_from_state`) without a frame.

        Args:
            entity_rows: As for :meth:`read`.
            version: :meth:`store_version` as the caller just asked it (None: asked here).

        Returns:
            ``(numeric, text, times)``: numeric feature -> float64 array (NaN where
            missing; the rows of one matrix, a read-only
            :class:`~racecast.features.columnar.ColumnMatrix`), text feature -> object
            array (None where missing), both aligned to ``entity_rows``; ``times`` as
            :meth:`read_with_times` gives it.

        Raises:
            KeyError: If a join key column is missing.
        """
        numeric, text, stamps = self._read_arrays(entity_rows, version)
        numbers = ColumnMatrix(numeric, self._numeric_row)
        strings = dict(zip(self._strings, text, strict=True))
        return numbers, strings, self._times(stamps, entity_rows.index)

    def _read_arrays(
        self, entity_rows: pd.DataFrame, version: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(numeric values: a row per numeric feature, text values: a row per text
        feature, event times: a column per view of :attr:`_plan`), a runner per column
        (per row for the times)."""
        entities = self._entities(entity_rows)
        sizes = [len(distinct) for _, distinct in entities]
        offsets = [0, *itertools.accumulate(sizes)][:-1]
        total = sum(sizes)
        if version is None:
            version = self.store_version()
        if version is not None:
            numbers, texts, times = self._read_sqlite(entities, offsets, total, version)
        elif self._redis_fields is not None:
            numbers, texts, times = self._read_redis(entities, offsets, total)
        else:
            numbers, texts, times = self._read_provider(entities, offsets, total)
        # each runner's row of every view's entity table (the extra last row: no entity)
        index = np.asarray([index for index, _ in entities], dtype=np.intp)
        index = index.reshape(len(entities), len(entity_rows))
        runner = np.where(index >= 0, index + np.asarray(offsets, dtype=np.intp)[:, None], total)
        numeric = numbers[runner[self._numeric_view], self._numeric_slots]
        text = texts[runner[self._string_view], self._string_slots]
        return numeric, text, times[runner].T

    def _read(self, entity_rows: pd.DataFrame, with_times: bool) -> tuple[pd.DataFrame, Any]:
        numeric, text, stamps = self._read_arrays(entity_rows)
        frame = pd.DataFrame(numeric.T, index=entity_rows.index, columns=self._numeric)
        if self._strings:
            for s, name in enumerate(self._strings):
                frame[name] = pd.array(text[s], dtype="string")
            frame = frame[self.columns]
        if not with_times:
            return frame, None
        return frame, self._times(stamps, entity_rows.index)

    def _times(self, stamps: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """The event times frame: one column per view (one block: a frame of columns costs
        more than the read of a race)."""
        return pd.DataFrame(stamps, index=index, columns=self._time_columns.view())


class _KeptRows:
    """Decoded entity rows kept between reads: one matrix of rows per kind (numeric, text,
    event time) and a dict ``(view, key values) -> row``, so the rows of a request's
    entities come back in one gather. Full at ``capacity`` rows: then all are forgotten.
    Not locked: :class:`OnlineReader` holds its lock around every use."""

    def __init__(self, numeric: int, text: int, capacity: int) -> None:
        self.capacity = capacity
        self.row: dict[tuple[int, tuple[str, ...]], int] = {}
        self.version: int | None = None  # the store's PRAGMA data_version the rows are of
        self.used = 0
        self.numbers = np.empty((0, numeric))
        self.texts = np.empty((0, text), dtype=object)
        self.times = np.empty(0)

    def clear(self) -> None:
        """Forget every row."""
        self.row.clear()
        self.version = None
        self.used = 0

    def store(
        self,
        keys: list[tuple[int, tuple[str, ...]]],
        numbers: np.ndarray,
        texts: np.ndarray,
        times: np.ndarray,
    ) -> None:
        """Keep the rows of ``keys`` (the first ``capacity`` of them when there are more)."""
        keys = keys[: self.capacity]
        if self.used + len(keys) > self.capacity:
            self.row.clear()
            self.used = 0
        start, end = self.used, self.used + len(keys)
        if end > len(self.times):  # grow geometrically up to the capacity
            size = min(self.capacity, max(end, 2 * len(self.times), 64))
            grown = (
                np.full((size, self.numbers.shape[1]), np.nan),
                np.full((size, self.texts.shape[1]), None, dtype=object),
                np.full(size, np.nan),
            )
            for new, old in zip(grown, (self.numbers, self.texts, self.times), strict=True):
                new[: self.used] = old[: self.used]
            self.numbers, self.texts, self.times = grown
        self.numbers[start:end] = numbers[: len(keys)]
        self.texts[start:end] = texts[: len(keys)]
        self.times[start:end] = times[: len(keys)]
        self.row.update(zip(keys, range(start, end), strict=True))
        self.used = end


class _Slots(dict):
    """Feature name -> slot of :class:`OnlineReader`; :attr:`SKIP` for a name not served."""

    SKIP = -(2**40)

    def __missing__(self, name: str) -> int:
        return self.SKIP


def _latest(times: np.ndarray, at: np.ndarray, when: np.ndarray) -> None:
    """``times[e] = max(when[at == e])`` over the known ``when`` (NaN stays NaN)."""
    known = ~np.isnan(when)
    if not known.any():
        return
    at, when = at[known], when[known]
    order = np.lexsort((when, at))
    at, when = at[order], when[order]
    last = np.ones(at.shape[0], dtype=bool)
    last[:-1] = at[1:] != at[:-1]
    times[at[last]] = when[last]


def _decode_numbers(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``(decoded, value)``: the blobs that are one ``double_val`` or one ``int64_val``
    field (as :func:`stored_value` reads them) and their values as float64."""
    m = len(blobs)
    sizes = np.fromiter(map(len, blobs), dtype=np.intp, count=m)
    data = np.frombuffer(b"".join(blobs) + bytes(12), dtype=np.uint8)
    starts = np.cumsum(sizes) - sizes
    tag = np.where(sizes > 0, data[starts], 0)
    value = np.full(m, np.nan)
    double = (sizes == 9) & (tag == _DOUBLE_TAG)
    if double.any():
        raw = data[starts[double, None] + 1 + np.arange(8)]
        value[double] = np.ascontiguousarray(raw).view("<f8")[:, 0]
    varint = (tag == _INT64_TAG) & (sizes >= 2) & (sizes <= 11)
    if varint.any():
        length = sizes[varint] - 1  # bytes of the varint: 1 .. 10
        raw = data[starts[varint, None] + 1 + np.arange(10)].astype(np.uint64)
        inside = np.arange(10) < length[:, None]
        more = (raw & 0x80) != 0
        # every byte but the last continues, the last ends it; a 10th byte adds bit 63 only
        canonical = (
            (more | ~inside | (np.arange(10) == length[:, None] - 1)).all(axis=1)
            & ~more[np.arange(length.shape[0]), length - 1]
            & ((length < 10) | (raw[:, 9] <= 1))
        )
        shifts = (7 * np.arange(10)).astype(np.uint64)
        number = np.where(inside, (raw & np.uint64(0x7F)) << shifts, np.uint64(0)).sum(
            axis=1, dtype=np.uint64
        )
        rows = np.flatnonzero(varint)
        value[rows[canonical]] = number[canonical].view(np.int64).astype(np.float64)
        varint[rows[~canonical]] = False
    return double | varint, value


def _provider_row(ts: Any, values: dict | None) -> tuple[dict | None, float | None]:
    """One entity of a provider's ``online_read`` as (values, epoch seconds), (None, None)
    when it has no row. Feast 0.49's Redis store answers an entity without a row with
    every requested feature unset at epoch 0 (a written row always carries its time)."""
    if values is None:
        return None, None
    python = {n: proto_value(v) for n, v in values.items()}
    when = _epoch_seconds(ts)
    if not when and all(v is None for v in python.values()):
        return None, None
    return python, when


def _epoch_seconds(value: Any) -> float | None:
    """Epoch seconds (UTC) of an online store event time: a datetime (naive = UTC), epoch
    seconds as SQLite keeps them, or ISO text; None when missing."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.timestamp()


_DOUBLE = struct.Struct("<d")
_DOUBLE_TAG = 0x29  # Value.double_val: field 5, 64-bit
_INT64_TAG = 0x20  # Value.int64_val: field 4, varint


def proto_value(value: Any) -> Any:
    """The Python value of a Feast ``Value`` proto (None when no field is set)."""
    kind = value.WhichOneof("val")
    return None if kind is None else getattr(value, kind)


def _varint_to_end(blob: bytes, start: int) -> int | None:
    """The varint starting at ``start`` when it ends exactly at the end of ``blob``."""
    result = shift = 0
    last = len(blob) - 1
    for i in range(start, len(blob)):
        byte = blob[i]
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result if i == last else None
    return None


def stored_value(blob: bytes) -> Any:
    """The Python value of a serialized Feast ``Value``, as ``Value.FromString`` gives it.

    The two encodings the state tables store (one ``double_val`` or one ``int64_val``
    field) are read directly, ~3x faster than building the message; anything else goes
    through protobuf. ``tests/features/test_feast.py`` compares both on edge cases.

    Args:
        blob: A serialized ``feast.types.Value``.

    Returns:
        The set field's value, or None when no field is set.
    """
    if len(blob) == 9 and blob[0] == _DOUBLE_TAG:
        return _DOUBLE.unpack_from(blob, 1)[0]
    if len(blob) >= 2 and blob[0] == _INT64_TAG:
        number = _varint_to_end(blob, 1)
        if number is not None and number < 1 << 64:
            return number - (1 << 64) if number >= 1 << 63 else number
    from feast.protos.feast.types.Value_pb2 import Value

    return proto_value(Value.FromString(blob))


def _redis_fields(
    config: Any, plan: list[tuple[Any, list[str], list[str]]]
) -> list[list[bytes]] | None:
    """Per view of ``plan``, the hash fields Feast 0.49's Redis store reads for its
    features (murmur3 of ``<view>:<feature>``), then ``_ts:<view>``; None for other stores."""
    if getattr(config.online_store, "type", None) != "redis":
        return None
    from feast.infra.online_stores.helpers import _mmh3

    return [
        [_mmh3(f"{view.name}:{name}") for name in names] + [f"_ts:{view.name}".encode()]
        for view, names, _ in plan
    ]


def _sqlite_online_path(config: Any) -> str | None:
    """The SQLite online store's file (as Feast resolves it), None for other stores."""
    online = config.online_store
    if getattr(online, "type", None) != "sqlite":
        return None
    path = Path(online.path)
    if config.repo_path and not path.is_absolute():
        path = Path(config.repo_path) / path
    return str(path)
