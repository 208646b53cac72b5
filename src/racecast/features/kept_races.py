"""Fundamental feature rows of races kept between requests: :class:`KeptRaces`.

On race day the same race is scored again and again until the off while only its tote
prices move. Everything of a runner's features but the market features
(:func:`racecast.features.transform.fundamental_features`) is a pure function of the
online store's content and the racecard's non-price fields, so a race asked for again
with the same fields, while the store has not changed, needs neither the online read, nor
the point-in-time guard, nor the fundamental transform: only the market features of its
new prices (:func:`racecast.features.transform.features_from_fundamentals`).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.frames import column_arrays, values_keys
from racecast.data.lru import Lru

__all__ = ["KeptRaces"]


class KeptRaces:
    """Fundamental feature rows per race, keyed by a store version and the race's rows.

    A race's key is its rows' values, in row order, of the given columns (every column
    the online read, the point-in-time guard and the fundamental transform read: never a
    price); every kept race is of one *version* (the SQLite online store's
    ``PRAGMA data_version`` on one reader's connection and the transform's parameters:
    :func:`racecast.features.online.online_features` builds it): a lookup or an addition at
    another version forgets them all first, so a race is only ever found for the very
    store content and racecard fields its rows were computed from. A store without such a
    version (Redis, the provider path) keeps nothing: the caller does not use this class
    then. At most ``size`` races are kept, the least recently used leaving first; every
    method is safe to call from several threads.

    Args:
        size: Most races kept (``ServingSettings.race_cache_size``).
    """

    def __init__(self, size: int) -> None:
        self._items = Lru(size)  # its own lock guards each item; ours, the version with them
        self._version: Hashable = None
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Most races kept."""
        return self._items.size

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def races(
        entity_rows: pd.DataFrame, columns: Sequence[str]
    ) -> list[tuple[np.ndarray, Hashable]]:
        """Each race's row positions and key, races in order of first appearance.

        Args:
            entity_rows: Parsed racecard rows (``race_id`` among ``columns``).
            columns: The columns a key holds (each once).

        Returns:
            ``[(positions, key), ...]``: the key holds the race's values of every column
            in ``columns``' order, exactly (:func:`racecast.data.frames.values_keys`: a
            null that is not a singleton never equals another, so such a race is a
            miss, never another race's rows).

        Raises:
            KeyError: If a column is missing.
        """
        arrays = column_arrays(entity_rows, columns)
        race_ids = np.asarray(arrays["race_id"], dtype=object).tolist()
        first: dict[Any, list[int]] = {}
        for i, race in enumerate(race_ids):
            first.setdefault(race, []).append(i)
        out = []
        for race, rows in first.items():
            whole = len(rows) == len(race_ids)
            at = np.asarray(rows, dtype=np.intp)
            key = (race, values_keys([arrays[c] for c in columns], None if whole else at))
            out.append((at, key))
        return out

    def get(self, version: Hashable, key: Hashable) -> tuple[np.ndarray, np.ndarray] | None:
        """The kept ``(values, debut)`` of a race (read-only arrays), None when not kept
        at ``version``."""
        with self._lock:
            self._at(version)
            return self._items.get(key)

    def put(self, version: Hashable, key: Hashable, values: np.ndarray, debut: np.ndarray) -> None:
        """Keep a race's fundamental rows (copied) as of ``version``."""
        kept = (np.array(values, dtype=np.float64), np.array(debut, dtype=bool))
        for array in kept:
            array.setflags(write=False)
        with self._lock:
            self._at(version)
            self._items.put(key, kept)

    def clear(self) -> None:
        """Forget every race."""
        with self._lock:
            self._items.clear()
            self._version = None

    def _at(self, version: Hashable) -> None:
        """Forget every race when ``version`` is not theirs (hold the lock)."""
        if version != self._version:
            self._items.clear()
            self._version = version
