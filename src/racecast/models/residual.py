"""A gradient-boosted per-race softmax model on top of a fixed market offset.

The utility of runner ``i`` is ``offset_i + f(x_i)`` where ``offset`` is the corrected
market's log-probability (:class:`racecast.models.market.MarketCorrection`) and ``f`` is
a LightGBM forest fitted with a per-race softmax (conditional logit) objective: the
offset is LightGBM's ``init_score``, so the trees learn only what the market misses.
Fundamental features only (no odds-derived column in ``x``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from racecast.models.fastpath import small_batch
from racecast.models.market import RaceData, single_winner_rows

logger = logging.getLogger(__name__)

__all__ = ["ResidualBooster"]


class ResidualBooster(BaseEstimator):
    """LightGBM per-race softmax on a fixed offset (the market's log-probability).

    Args:
        n_estimators: Boosting rounds.
        learning_rate: Shrinkage.
        num_leaves: Leaves per tree.
        min_child_samples: Minimum runners per leaf.
        min_child_weight: Minimum hessian per leaf.
        colsample_bytree: Feature fraction per tree.
        reg_lambda: L2 penalty on leaf values.
        n_jobs: LightGBM threads.
        random_state: Seed.

    Attributes:
        booster_: The fitted ``lightgbm.Booster``.
        feature_names_in_: Feature columns.
    """

    def __init__(
        self,
        n_estimators: int = 150,
        learning_rate: float = 0.03,
        num_leaves: int = 7,
        min_child_samples: int = 300,
        min_child_weight: float = 1.0,
        colsample_bytree: float = 0.5,
        reg_lambda: float = 20.0,
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.min_child_weight = min_child_weight
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _params(self, objective: Any) -> dict[str, Any]:
        return {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "min_sum_hessian_in_leaf": self.min_child_weight,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "num_threads": self.n_jobs,
            "seed": self.random_state,
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
        }

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, offset: np.ndarray
    ) -> ResidualBooster:
        """Fit the trees on the single-winner races, with ``offset`` as the initial score.

        Args:
            X: Fundamental features (NaN allowed).
            y: 0/1 winners.
            groups: Race ids.
            offset: Per-runner market log-probability (or any utility up to a per-race
                constant).

        Returns:
            self.
        """
        import lightgbm as lgb  # imported here: an optional heavy dependency

        groups = np.asarray(groups)
        keep = single_winner_rows(np.asarray(y), groups)
        if not keep.any():
            raise ValueError("no race has exactly one winner")
        data = RaceData(np.zeros((int(keep.sum()), 1)), groups[keep])
        order = data.order
        x = X.to_numpy(dtype=float, na_value=np.nan)[keep][order]
        label = np.asarray(y, dtype=float)[keep][order]
        init = np.asarray(offset, dtype=float)[keep][order]

        def softmax_objective(preds: np.ndarray, _: Any) -> tuple[np.ndarray, np.ndarray]:
            peak = np.maximum.reduceat(preds, data.starts)
            e = np.exp(preds - np.repeat(peak, data.lengths))
            p = e / np.repeat(np.add.reduceat(e, data.starts), data.lengths)
            return p - label, np.maximum(p * (1.0 - p), 1e-6)

        dataset = lgb.Dataset(x, label=label, init_score=init, free_raw_data=True)
        self.booster_ = lgb.train(
            self._params(softmax_objective), dataset, num_boost_round=self.n_estimators
        )
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        logger.info(
            "residual booster: %d trees on %d runners of %d races",
            self.n_estimators,
            len(x),
            len(data.starts),
        )
        return self

    def predict_proba_array(
        self, x: np.ndarray, groups: np.ndarray, offset: np.ndarray
    ) -> np.ndarray:
        """Per-race softmax of ``offset + trees(x)`` (x: feature matrix in fitted order)."""
        check_is_fitted(self, "booster_")
        data = np.asarray(x, dtype=float)
        # a request's race on one thread (rows are scored independently: same numbers)
        threads = {"num_threads": 1} if small_batch(data) else {}
        u = np.asarray(offset, dtype=float) + self.booster_.predict(data, **threads)
        data = RaceData(u[:, None], np.asarray(groups))
        p, _ = data.softmax(np.ones(1))
        return data.unsort(p)

    def predict_proba(self, X: pd.DataFrame, groups: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Per-race probabilities of the runners of ``X``, in input order."""
        check_is_fitted(self, "booster_")
        columns = list(self.feature_names_in_)
        return self.predict_proba_array(
            X[columns].to_numpy(dtype=float, na_value=np.nan), groups, offset
        )
