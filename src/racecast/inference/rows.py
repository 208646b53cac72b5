"""The inference bundle's rows: the time order, the race layout and each model's columns.

:class:`~racecast.inference.bundle.InferenceBundle` puts a request's feature rows in the
model_zoo helpers' time order once (:class:`TimeOrdered`) and hands every model the
columns it was fitted on (:class:`Columns`, whose index arrays are worked out once per
fitted model, not per request).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from racecast.features.market import race_sums
from racecast.models.base import GroupLayout, RaceModel, group_layout
from racecast.models.split import TIME_ORDER

__all__ = ["OUTPUT_COLUMNS", "RUNNER_KEYS", "Columns", "TimeOrdered", "time_order"]

#: The columns that name a runner.
RUNNER_KEYS = ["race_id", "horse_id"]

#: Columns of :meth:`~racecast.inference.bundle.InferenceBundle.predict`.
OUTPUT_COLUMNS = [*RUNNER_KEYS, "p_fundamental", "p_market", "p_combined"]


class Columns:
    """Fundamental feature name -> column of the bundle's matrix, and each model's input
    columns as an index array (computed once per fitted model, not per request)."""

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.position = {name: j for j, name in enumerate(self.names)}
        self.index = pd.Index(self.names, dtype=object)
        #: the columns :meth:`~racecast.inference.bundle.InferenceBundle.predict` needs
        self.required = pd.Index(RUNNER_KEYS + self.names, dtype=object)
        #: the prediction frame's columns (``bundle.OUTPUT_COLUMNS``)
        self.output = pd.Index(OUTPUT_COLUMNS, dtype=object)
        self._names: dict[int, tuple[Any, list[str]]] = {}
        self._of: dict[int, tuple[Any, np.ndarray]] = {}

    def names_of(self, model: Any) -> list[str]:
        """The model's ``feature_names_in_`` as strings (kept with the model object)."""
        kept = self._names.get(id(model))
        if kept is None or kept[0] is not model:
            kept = self._names[id(model)] = (model, [str(c) for c in model.feature_names_in_])
        return kept[1]

    def stacked(self, stacker: Any, base: dict[str, np.ndarray], values: np.ndarray) -> np.ndarray:
        """The stacker's input matrix: its ``p_<model>`` columns from ``base``, the others
        (fundamental features) from ``values``, in ``feature_names_in_`` order."""
        names = self.names_of(stacker)
        out = np.empty((values.shape[0], len(names)), dtype=np.float64)
        features = [j for j, name in enumerate(names) if name not in base]
        out[:, features] = values[:, [self.position[names[j]] for j in features]]
        for j, name in enumerate(names):
            if name in base:
                out[:, j] = base[name]
        return out

    def of(self, model: Any) -> np.ndarray:
        """Positions of the model's ``feature_names_in_`` in the fundamental features."""
        kept = self._of.get(id(model))
        if kept is None or kept[0] is not model:
            at = [self.position[c] for c in self.names_of(model)]
            kept = self._of[id(model)] = (model, np.asarray(at, dtype=np.intp))
        return kept[1]


class TimeOrdered:
    """Input rows in the model_zoo helpers' order (``off_time``, ``race_id``, ``horse_id``).

    Attributes:
        order: Positions of the input rows in time order.
        race_ids: Race id per ordered row.
        layout: :func:`~racecast.models.base.group_layout` of the ordered rows.
        values: Fundamental feature matrix of the ordered rows (float64, NaN missing).
        position: Fundamental feature name -> column of ``values``.
    """

    def __init__(
        self, order: np.ndarray, race_ids: np.ndarray, values: np.ndarray, names: Columns
    ) -> None:
        self.order = order
        self.race_ids = race_ids
        self.layout: GroupLayout = group_layout(race_ids)
        #: race code of each ordered row (the layout's codes are in its sorted order)
        self.codes = self.layout.codes[self.layout.inverse]
        self.values = values
        self.names = names
        self.position = names.position

    @classmethod
    def of(
        cls,
        features: pd.DataFrame,
        values: np.ndarray,
        names: list[str] | Columns,
        keys: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> TimeOrdered:
        """Feature rows and their matrix ``values`` in time order (as ``model_zoo.nodes._sorted``;
        ``keys``: the rows' race and horse ids as object arrays, when the caller has them)."""
        if keys is None:
            keys = (
                features["race_id"].to_numpy(dtype=object),
                features["horse_id"].to_numpy(dtype=object),
            )
        order = time_order(features, keys)
        race_ids = keys[0][order]
        columns = names if isinstance(names, Columns) else Columns(names)
        return cls(order, race_ids, values[order], columns)

    def digest(self) -> bytes:
        """The ordered rows as a key: their race ids, race grouping and ``values``, byte
        for byte (equal keys, equal input to every model of the bundle)."""
        digest = hashlib.blake2b(np.ascontiguousarray(self.values).tobytes(), digest_size=32)
        digest.update(repr(self.values.shape).encode())
        digest.update(np.ascontiguousarray(self.codes, dtype=np.int64).tobytes())
        digest.update(json.dumps([str(r) for r in self.race_ids.tolist()]).encode())
        return digest.digest()

    def columns(self, model: RaceModel) -> np.ndarray:
        """The model's input matrix: its ``feature_names_in_`` columns of ``values``."""
        return self.values[:, self.names.of(model)]

    def normalised(self, p: np.ndarray) -> np.ndarray:
        """``p`` divided by its per-race sum, as ``predict_holdout`` normalises."""
        return p / race_sums(p, self.codes, self.layout.n_groups)[self.codes]

    def to_input_order(self, values: np.ndarray) -> np.ndarray:
        """Values of the ordered rows, back in input order."""
        out = np.empty_like(values)
        out[self.order] = values
        return out


def time_order(frame: pd.DataFrame, keys: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Positions of the rows sorted stably by (off_time, race_id, horse_id), NaT last.

    The order of ``frame.sort_values(TIME_ORDER, kind="mergesort")``, by a Python sort
    of the few rows of a request (falls back to pandas for a non-datetime off_time);
    ``keys`` are the frame's race and horse ids (object arrays).
    """
    nat = int(np.iinfo(np.int64).min)
    if "off_time" not in frame.columns:
        ticks = [nat] * len(frame)
    elif frame["off_time"].dtype.kind == "M" or isinstance(
        frame["off_time"].dtype, pd.DatetimeTZDtype
    ):
        ticks = frame["off_time"].array.asi8.tolist()
    else:
        positional = frame[TIME_ORDER].reset_index(drop=True)
        return positional.sort_values(TIME_ORDER, kind="mergesort").index.to_numpy()
    races, horses = keys[0].tolist(), keys[1].tolist()
    rank = [(t == nat, t, races[i], horses[i]) for i, t in enumerate(ticks)]
    return np.asarray(sorted(range(len(rank)), key=rank.__getitem__), dtype=np.int64)
