"""pytorch-tabnet's ``TabNetClassifier`` without two per-fit overheads (its internals).

:class:`LeanTabNetClassifier` trains and scores exactly as ``TabNetClassifier`` does (the
same batches in the same order, the same random draws, the same network and optimiser
steps: its weights and ``feature_importances_`` are bit-identical, tested against the
library's class) and differs in two places of ``pytorch_tabnet`` 4.1.0's internals:

* **the training loader** hands out whole batches: the library's ``DataLoader`` fetches a
  batch row by row and collates it (a ``torch.as_tensor`` per row, about 700,000 calls per
  Hong Kong fit); here a ``BatchSampler`` over the same ``RandomSampler`` gives each batch's
  row indices, and the batch is one fancy index of the arrays;
* **the feature importances** after the fit sum the explanation matrix alone: the library
  computes it through ``explain``, which also stacks every step's attention masks with one
  ``np.vstack`` per batch (quadratic in the rows: 5-6 s of a 60 s Hong Kong fit), then
  throws the masks away.

Under any other pytorch-tabnet release :func:`tabnet_classifier` returns the library's own
class (the internals above may differ there).
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

import numpy as np
import torch
from pytorch_tabnet.tab_model import TabNetClassifier
from pytorch_tabnet.utils import PredictDataset
from scipy.sparse import csc_matrix, issparse
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

__all__ = ["LeanTabNetClassifier", "SUPPORTED_TABNET", "tabnet_classifier", "tabnet_supported"]

logger = logging.getLogger(__name__)

#: The pytorch-tabnet release whose internals :class:`LeanTabNetClassifier` replaces.
SUPPORTED_TABNET = "4.1.0"


def tabnet_supported() -> bool:
    """True when the installed pytorch-tabnet is :data:`SUPPORTED_TABNET`."""
    return version("pytorch-tabnet") == SUPPORTED_TABNET


def tabnet_classifier(**params: Any) -> TabNetClassifier:
    """A :class:`LeanTabNetClassifier` under :data:`SUPPORTED_TABNET`, else the library's
    ``TabNetClassifier`` (same figures either way)."""
    if tabnet_supported():
        return LeanTabNetClassifier(**params)
    logger.warning(
        "pytorch-tabnet %s is not %s: TabNet trains through the library's own loaders",
        version("pytorch-tabnet"),
        SUPPORTED_TABNET,
    )
    return TabNetClassifier(**params)


class _Batches(Dataset):
    """Training rows fetched a batch at a time: ``dataset[indices] -> (x, y)`` arrays."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return self.x[indices], self.y[indices]


class LeanTabNetClassifier(TabNetClassifier):
    """``TabNetClassifier`` with a batch-at-a-time training loader and feature importances
    without the attention masks (see the module docstring); dense inputs, no sample
    weights, no eval sets and no loader workers (how racecast fits it), else the
    library's own code runs."""

    def _construct_loaders(self, X_train, y_train, eval_set):
        lean = (
            not issparse(X_train)
            and not eval_set
            and isinstance(self.updated_weights, int)
            and self.updated_weights == 0
            and not self.num_workers
        )
        if not lean:
            return super()._construct_loaders(X_train, y_train, eval_set)
        rows = _Batches(X_train.astype(np.float32), self.prepare_target(y_train))
        # the library's loader: shuffle=True -> RandomSampler + BatchSampler (same draws)
        batches = BatchSampler(RandomSampler(rows), self.batch_size, self.drop_last)
        loader = DataLoader(rows, batch_size=None, sampler=batches, pin_memory=self.pin_memory)
        return loader, []

    def _compute_feature_importances(self, X):
        if issparse(X):
            return super()._compute_feature_importances(X)
        self.network.eval()
        # the library's batches, through its loader (whose iterator draws one seed)
        loader = DataLoader(PredictDataset(X), batch_size=self.batch_size, shuffle=False)
        parts = []
        with torch.inference_mode():
            for data in loader:
                explain, _ = self.network.forward_masks(data.to(self.device).float())
                parts.append(csc_matrix.dot(explain.cpu().numpy(), self.reducing_matrix))
        sum_explain = np.vstack(parts).sum(axis=0)
        return sum_explain / np.sum(sum_explain)
