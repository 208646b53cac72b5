"""Neural race models: TabNet (row-wise) and a set-attention network over each race's field."""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from racecast.models.base import (
    ClassifierRaceModel,
    GroupLayout,
    RaceModel,
    fold_indicator_importance,
    imputed_feature_names,
    make_impute_scale,
    merge_params,
    torch_threads,
    winner_weights,
)
from racecast.models.fastpath import transform

logger = logging.getLogger(__name__)

LOSSES = ("softmax", "bce")


class TabNetModel(ClassifierRaceModel):
    """pytorch-tabnet ``TabNetClassifier`` on ``won`` with imputed, standardised inputs.

    Trains for exactly ``max_epochs`` epochs (no early stopping; keep it small) on CPU.
    Probabilities are the per-race normalisation of ``P(won=1 | x)``.

    Args:
        n_d: Width of the decision layer.
        n_a: Width of the attention layer.
        n_steps: Decision steps.
        gamma: Feature re-use coefficient.
        lambda_sparse: Sparsity regularisation.
        learning_rate: Adam learning rate.
        max_epochs: Training epochs.
        batch_size: Rows per batch.
        virtual_batch_size: Rows per ghost batch-norm batch.
        random_state: Seed (TabNet's ``seed``).
        n_threads: ``torch.set_num_threads`` during fit/predict (``None`` = leave as is).
        model_params: Extra keyword arguments for ``TabNetClassifier``.

    Attributes:
        preprocessor_: The fitted impute + scale pipeline.
        network_: The fitted ``TabNetClassifier`` (racecast.models.tabnet_internals).
    """

    importance_kind: ClassVar[str] = "TabNet attention mask importance"

    def __init__(
        self,
        n_d: int = 8,
        n_a: int = 8,
        n_steps: int = 3,
        gamma: float = 1.3,
        lambda_sparse: float = 1e-3,
        learning_rate: float = 2e-2,
        max_epochs: int = 20,
        batch_size: int = 256,
        virtual_batch_size: int = 64,
        random_state: int = 0,
        n_threads: int | None = 1,
        model_params: dict[str, Any] | None = None,
    ) -> None:
        self.n_d = n_d
        self.n_a = n_a
        self.n_steps = n_steps
        self.gamma = gamma
        self.lambda_sparse = lambda_sparse
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.virtual_batch_size = virtual_batch_size
        self.random_state = random_state
        self.n_threads = n_threads
        self.model_params = model_params

    def _fit_classifier(self, X: np.ndarray, y: np.ndarray) -> None:
        from racecast.models.tabnet_internals import tabnet_classifier

        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be at least 1, got {self.max_epochs}")
        params = merge_params(
            {
                "n_d": self.n_d,
                "n_a": self.n_a,
                "n_steps": self.n_steps,
                "gamma": self.gamma,
                "lambda_sparse": self.lambda_sparse,
                "optimizer_params": {"lr": self.learning_rate},
                "seed": self.random_state,
                "verbose": 0,
                "device_name": "cpu",
            },
            self.model_params,
            type(self).__name__,
        )
        pre = make_impute_scale()
        Z = pre.fit_transform(X).astype(np.float32)
        with torch_threads(self.n_threads), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No early stopping will be performed")
            torch.manual_seed(self.random_state)
            network = tabnet_classifier(**params)
            network.fit(
                Z,
                y,
                max_epochs=int(self.max_epochs),
                batch_size=int(self.batch_size),
                virtual_batch_size=int(self.virtual_batch_size),
                # a last batch of one row would break batch-norm in training
                drop_last=Z.shape[0] > self.batch_size,
                pin_memory=False,
            )
        self.preprocessor_ = pre
        self.network_ = network

    def _positive_proba(self, X: np.ndarray) -> np.ndarray:
        Z = transform(self.preprocessor_, X).astype(np.float32)
        with torch_threads(self.n_threads):
            return tabnet_proba(self.network_, Z)[:, 1]

    def _importance_values(self) -> Mapping[str, float]:
        names = imputed_feature_names(
            self.preprocessor_.named_steps["impute"], self.feature_names_in_
        )
        return fold_indicator_importance(self.network_.feature_importances_, names)


def tabnet_proba(network: Any, Z: np.ndarray) -> np.ndarray:
    """``TabNetClassifier.predict_proba`` without its DataLoader and autograd.

    The same batches (``network.batch_size`` rows, in order) through the same eval-mode
    module and softmax, under ``torch.inference_mode``: the library's loader only stacks
    the rows of each batch, and its forward pass records a graph nobody uses.

    Args:
        network: A fitted ``pytorch_tabnet`` classifier.
        Z: Float32 input rows.

    Returns:
        Class probabilities, shape ``(rows, n_classes)``.
    """
    module = network.network
    if module.training:  # eval() is recursive: one check of the root is enough
        module.eval()
    size = int(network.batch_size)
    batches = []
    with torch.inference_mode():
        for first in range(0, Z.shape[0], size):
            rows = torch.from_numpy(np.ascontiguousarray(Z[first : first + size]))
            logits, _ = module(rows.to(network.device).float())
            batches.append(torch.softmax(logits, dim=1).cpu().numpy())
    return np.vstack(batches)


class SetAttentionBlock(nn.Module):
    """Self-attention over a race's runners + feed-forward, both residual and layer-normed."""

    def __init__(self, hidden_dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(
            hidden_dim, n_heads, dropout=dropout, batch_first=True
        )
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_dim, 2 * hidden_dim), nn.ReLU(), nn.Linear(2 * hidden_dim, hidden_dim)
        )
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            h: ``(races, slots, hidden_dim)`` runner embeddings.
            padding_mask: ``(races, slots)``, True where the slot is padding.

        Returns:
            Updated embeddings of the same shape.
        """
        attended, _ = self.attention(h, h, h, key_padding_mask=padding_mask, need_weights=False)
        h = self.norm1(h + self.dropout(attended))
        return self.norm2(h + self.dropout(self.feed_forward(h)))


class RaceSetNetwork(nn.Module):
    """Per-runner MLP embedding -> self-attention blocks -> per-runner logit.

    No positional encoding, so the network is permutation-equivariant over a race's
    runners; padded slots are excluded as attention keys and so cannot affect real
    runners' outputs.
    """

    def __init__(
        self, n_features: int, hidden_dim: int, n_heads: int, n_layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            nn.Linear(n_features, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim)
        )
        self.blocks = nn.ModuleList(
            [SetAttentionBlock(hidden_dim, n_heads, dropout) for _ in range(n_layers)]
        )
        self.head = nn.Linear(hidden_dim, 1)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Score every slot.

        Args:
            x: ``(races, slots, n_features)`` padded features.
            padding_mask: ``(races, slots)``, True where the slot is padding.

        Returns:
            ``(races, slots)`` logits (padding slots hold meaningless values).
        """
        h = self.embed(x)
        for block in self.blocks:
            h = block(h, padding_mask)
        return self.head(h).squeeze(-1)


def pad_races(
    values: np.ndarray, layout: GroupLayout, races: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter sorted per-runner rows into a ``(races, max_field, ...)`` padded array.

    Args:
        values: Per-row values (1-D or 2-D), rows sorted by race.
        layout: The rows' :class:`~racecast.models.base.GroupLayout`.
        races: Race codes to include (default: all, in code order).

    Returns:
        The padded array (padding = 0) and the ``(races, max_field)`` padding mask
        (True = padding).
    """
    races = np.arange(layout.n_groups) if races is None else np.asarray(races)
    sizes = layout.sizes[races]
    width = int(sizes.max())
    slot_race = np.repeat(np.arange(races.shape[0]), sizes)
    slot_pos = np.arange(slot_race.shape[0]) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    rows = np.repeat(layout.starts[races], sizes) + slot_pos
    padded = np.zeros((races.shape[0], width, *values.shape[1:]), dtype=values.dtype)
    padded[slot_race, slot_pos] = values[rows]
    mask = np.ones((races.shape[0], width), dtype=bool)
    mask[slot_race, slot_pos] = False
    return padded, mask


class RaceSetAttention(RaceModel):
    """Runners of a race attend to each other before each gets a win logit.

    Races are padded to their largest field with a mask; a per-runner MLP embeds the
    (imputed, standardised) features, multi-head self-attention with
    ``key_padding_mask`` mixes the field, and a linear head gives each runner a logit.
    With ``loss="softmax"`` training minimises the per-race softmax cross-entropy on the
    winner (dead heats split the target) and the score is the logit; with
    ``loss="bce"`` it minimises per-runner binary cross-entropy and the score is
    ``log sigmoid(logit)``, so probabilities are normalised ``P(won)``. Adam with early
    stopping on the last ``validation_fraction`` of the training races in order of first
    appearance (pass races chronologically so this is a time-ordered tail).

    Args:
        hidden_dim: Embedding width (divisible by ``n_heads``).
        n_heads: Attention heads.
        n_layers: Attention blocks.
        dropout: Dropout in the attention blocks.
        loss: ``"softmax"`` or ``"bce"``.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        max_epochs: Epoch cap.
        batch_races: Races per mini-batch.
        patience: Epochs without validation improvement before stopping.
        validation_fraction: Share of (the last) training races held out for early
            stopping; 0 trains for ``max_epochs`` on all races.
        random_state: Seed for ``torch.manual_seed`` and batch shuffling.
        n_threads: ``torch.set_num_threads`` during fit/predict (``None`` = leave as is).

    Attributes:
        preprocessor_: The fitted impute + scale pipeline.
        network_: The trained :class:`RaceSetNetwork` (eval mode).
        n_epochs_: Epochs run.
        best_epoch_: Epoch whose weights were kept (1-based).
        history_: Per-epoch ``{"train": ..., "valid": ...}`` losses.
    """

    probability_method: ClassVar[str] = "softmax"

    def __init__(
        self,
        hidden_dim: int = 32,
        n_heads: int = 4,
        n_layers: int = 1,
        dropout: float = 0.1,
        loss: str = "softmax",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        max_epochs: int = 100,
        batch_races: int = 64,
        patience: int = 10,
        validation_fraction: float = 0.2,
        random_state: int = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.hidden_dim = hidden_dim
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.dropout = dropout
        self.loss = loss
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_races = batch_races
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.n_threads = n_threads

    def _check_params(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.hidden_dim % self.n_heads:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.max_epochs < 1 or self.batch_races < 1:
            raise ValueError("max_epochs and batch_races must be at least 1")

    def _batch_loss(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean loss over the batch's races (softmax) or real runners (bce)."""
        if self.loss == "softmax":
            log_p = torch.log_softmax(logits.masked_fill(mask, float("-inf")), dim=1)
            nll = -(target * log_p.masked_fill(mask, 0.0)).sum()
            return nll / target.sum().clamp_min(1e-12)
        real = ~mask
        return nn.functional.binary_cross_entropy_with_logits(logits[real], target[real])

    def _fit_sorted(
        self,
        X: np.ndarray,
        y: np.ndarray,
        layout: GroupLayout,
        relevance: np.ndarray | None,
    ) -> None:
        self._check_params()
        n_races = layout.n_groups
        n_valid = int(round(self.validation_fraction * n_races))
        if n_valid < 1 or n_valid >= n_races:
            n_valid = 0
        n_train = n_races - n_valid
        cut = int(layout.starts[n_train]) if n_valid else X.shape[0]
        pre = make_impute_scale().fit(X[:cut])
        Z = pre.transform(X).astype(np.float32)
        target_rows = winner_weights(y, layout) if self.loss == "softmax" else y.astype(np.float64)

        def tensors(races: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x_pad, mask = pad_races(Z, layout, races)
            t_pad, _ = pad_races(target_rows.astype(np.float32), layout, races)
            return torch.from_numpy(x_pad), torch.from_numpy(t_pad), torch.from_numpy(mask)

        train_races = np.arange(n_train)
        valid = tensors(np.arange(n_train, n_races)) if n_valid else None
        generator = np.random.default_rng(self.random_state)
        history: list[dict[str, float]] = []
        with torch_threads(self.n_threads):
            torch.manual_seed(self.random_state)
            network = RaceSetNetwork(
                Z.shape[1], self.hidden_dim, self.n_heads, self.n_layers, self.dropout
            )
            optimiser = torch.optim.Adam(
                network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
            )
            best_loss, best_state, best_epoch, stale = np.inf, None, 0, 0
            for epoch in range(1, int(self.max_epochs) + 1):
                network.train()
                permuted = generator.permutation(train_races)
                total, weight = 0.0, 0
                for start in range(0, n_train, int(self.batch_races)):
                    x_b, t_b, m_b = tensors(permuted[start : start + int(self.batch_races)])
                    optimiser.zero_grad()
                    batch_loss = self._batch_loss(network(x_b, m_b), t_b, m_b)
                    batch_loss.backward()
                    optimiser.step()
                    total += batch_loss.item() * x_b.shape[0]
                    weight += x_b.shape[0]
                record = {"train": total / max(weight, 1)}
                if valid is not None:
                    network.eval()
                    with torch.no_grad():
                        record["valid"] = float(
                            self._batch_loss(network(valid[0], valid[2]), *valid[1:])
                        )
                    if record["valid"] < best_loss - 1e-6:
                        best_loss, best_epoch, stale = record["valid"], epoch, 0
                        best_state = copy.deepcopy(network.state_dict())
                    else:
                        stale += 1
                history.append(record)
                if valid is not None and stale >= self.patience:
                    break
            if best_state is not None:
                network.load_state_dict(best_state)
            else:
                best_epoch = len(history)
            network.eval()
        self.preprocessor_ = pre
        self.network_ = network
        self.n_epochs_ = len(history)
        self.best_epoch_ = best_epoch
        self.history_ = history

    def _score_sorted(self, X: np.ndarray, layout: GroupLayout) -> np.ndarray:
        Z = transform(self.preprocessor_, X).astype(np.float32)
        scores = np.empty(Z.shape[0], dtype=np.float64)
        chunk = 1024
        if self.network_.training:
            self.network_.eval()
        with torch_threads(self.n_threads), torch.inference_mode():
            for first in range(0, layout.n_groups, chunk):
                races = np.arange(first, min(first + chunk, layout.n_groups))
                x_pad, mask = pad_races(Z, layout, races)
                logits = self.network_(torch.from_numpy(x_pad), torch.from_numpy(mask))
                if self.loss == "bce":
                    logits = nn.functional.logsigmoid(logits)
                lo = int(layout.starts[races[0]])
                hi = int(layout.starts[races[-1]] + layout.sizes[races[-1]])
                scores[lo:hi] = logits.numpy()[~mask]
        return scores
