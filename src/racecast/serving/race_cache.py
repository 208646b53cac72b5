"""The predictions ``GET /api/v1/races/{race_id}`` answers from: no cross-client state.

Two kinds of entries, each a bounded LRU:

* **server-owned** races (:meth:`RaceCache.put_server`): racecards the server scored
  from its own inputs (the upcoming folder, pushed results). Every client reads them.
* **client-posted** races (:meth:`RaceCache.put`): what one API key posted to
  ``/api/v1/predict``, kept under that key's id (never the raw key). Only the same key
  reads them back.

A lookup prefers the server-owned race: a post can never overwrite or shadow a race
another client reads, and what one client posts is never what another client reads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["RaceCache"]


class _Lru:
    """A bounded least-recently-used mapping (not thread-safe on its own)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, dict[str, Any]] = OrderedDict()

    def put(self, key: Any, value: dict[str, Any]) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, key: Any) -> dict[str, Any] | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value


class RaceCache:
    """Thread-safe cache of race predictions: server-owned, and per client.

    Args:
        size: Races kept of each kind (server-owned; client-posted, all clients together).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"race cache size must be >= 1, got {size}")
        self._server = _Lru(size)
        self._clients = _Lru(size)
        self._lock = threading.Lock()

    def put_server(self, race: dict[str, Any]) -> None:
        """Keep a race the server scored from its own racecards (every client reads it)."""
        with self._lock:
            self._server.put(race["race_id"], race)

    def put(self, owner: str, race: dict[str, Any]) -> None:
        """Keep a race a client posted, readable only by ``owner`` (an API key id)."""
        with self._lock:
            self._clients.put((owner, race["race_id"]), race)

    def get(self, owner: str, race_id: str) -> dict[str, Any] | None:
        """The server-owned race, else the one ``owner`` posted, else None."""
        with self._lock:
            race = self._server.get(race_id)
            return race if race is not None else self._clients.get((owner, race_id))
