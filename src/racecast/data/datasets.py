"""Kedro datasets of the project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro_datasets.partitions import PartitionedDataset
from kedro_datasets.pickle import PickleDataset


class OptionalPartitionedDataset(PartitionedDataset):
    """A ``PartitionedDataset`` that loads as ``{}`` when its folder holds no partition.

    For inputs that are empty on most runs (the race-day pushes): Kedro has no optional
    node inputs, and ``PartitionedDataset`` refuses to load an empty folder.
    """

    def load(self) -> dict[str, Any]:
        """The partitions (id -> load function), ``{}`` when there are none."""
        if not self._list_partitions():
            return {}
        return super().load()


class LazyPickleDataset(PickleDataset):
    """A ``PickleDataset`` whose ``load`` returns a function that reads the pickle.

    For a large input a node may not need: the scoring pipeline reads this run's
    inference bundle only when ``scoring.bundle_uri`` is null, so scoring with a registry
    bundle needs no ``data/06_models/inference_bundle.pkl``. Saving is ``PickleDataset``'s.
    Nodes take the input through :func:`loaded`.
    """

    def load(self) -> Callable[[], Any]:
        """A zero-argument function that loads the pickle when called."""
        return super().load


def loaded(value: Any) -> Any:
    """The value of an input that may be lazy: a :class:`LazyPickleDataset` loader is
    called, anything else (e.g. an in-memory object) is returned as is."""
    return value() if callable(value) else value
