"""Rolling-origin second stage: market_corrected, the combined-track candidates and the decision.

Training races only (the protocol holdout is never seen here):

1. **Stacked out-of-fold fundamental.** The race days of the out-of-fold rows (every
   base model predicted) are cut by :func:`~racecast.models.split.time_folds` into a
   first chunk (``first_fraction``) and ``n_folds`` later blocks; for each block a
   stacker is fitted on every earlier out-of-fold row and predicts the block.
2. **Rolling origin.** For each block but the first, on everything strictly before it:
   :class:`~racecast.models.market.MarketCorrection` is fitted on every earlier
   training race, the :class:`~racecast.evaluation.blend.BenterBlend` of the stacked
   out-of-fold ``p_fund`` with ``market_corrected`` on the earlier blocks, and the
   :class:`~racecast.models.residual.ResidualBooster` on every earlier training race;
   all three predict the block.
3. **Decision.** The pooled per-race gains of each candidate over ``market_corrected``
   go through :func:`racecast.evaluation.decision.decide`.
4. **Final fits** on all training races (the blend on every stacked out-of-fold row),
   held by a :class:`CombinedTrack` that predicts the chosen candidate.

Market structure beyond the base terms is kept only when it earns its place:
:func:`select_market_terms` tests each extra term by rolling origin over the training
races with the same one-sided test.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from racecast.evaluation.blend import BenterBlend
from racecast.evaluation.decision import decide, gain_test
from racecast.evaluation.metrics import market_probability
from racecast.evaluation.stakeability import not_assessed, staking_validation
from racecast.features.specs import ODDS_CAPPED
from racecast.models.market import MarketCorrection, RaceGroups, single_winner_rows
from racecast.models.residual import ResidualBooster
from racecast.models.split import compute_race_days, time_folds
from racecast.threads import map_processes

logger = logging.getLogger(__name__)

__all__ = ["CANDIDATES", "CombinedTrack", "rolling_second_stage", "select_market_terms"]

#: The combined track's candidates (besides its fallback, ``market_corrected``).
CANDIDATES = ("benter", "residual")
BASE_TERMS = ("log_p", "log_p_sq", "capped")


def market_inputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plain market probability, cap flag 0/1, has-a-complete-market mask) per runner."""
    p = market_probability(frame).to_numpy(dtype=float)
    if ODDS_CAPPED in frame.columns:
        capped = frame[ODDS_CAPPED].astype("boolean").fillna(False).to_numpy(dtype=float)
    else:
        capped = np.zeros(len(frame))
    return p, capped, np.isfinite(p)


def _winner_log_p(p: np.ndarray, won: np.ndarray, groups: np.ndarray) -> pd.Series:
    """``log p`` of the winner of every single-winner race, indexed by race id."""
    keep = single_winner_rows(won, groups) & (won == 1)
    return pd.Series(np.log(np.clip(p[keep], 1e-12, 1.0)), index=groups[keep])


def per_race_gain(frame: pd.DataFrame, col: str, base_col: str) -> np.ndarray:
    """``log p_col(winner) - log p_base(winner)`` per single-winner race of ``frame``."""
    won = frame["won"].to_numpy(dtype=float)
    groups = frame["race_id"].to_numpy()
    a = _winner_log_p(frame[col].to_numpy(dtype=float), won, groups)
    b = _winner_log_p(frame[base_col].to_numpy(dtype=float), won, groups)
    return (a - b).to_numpy()


class CombinedTrack:
    """The combined track as fitted: market_corrected, the candidates and the choice.

    Attributes (set by :func:`rolling_second_stage`):
        market_: :class:`~racecast.models.market.MarketCorrection`.
        benter_: :class:`~racecast.evaluation.blend.BenterBlend` of ``p_fund`` with
            ``market_corrected`` (``market_col="p_market"`` holds the corrected market).
        residual_: :class:`~racecast.models.residual.ResidualBooster` or None.
        choice_: ``"benter"``, ``"residual"`` or ``"market_corrected"``.
        decision_: The decision (:func:`~racecast.evaluation.decision.decide`) and the
            rolling-origin figures.
        validation_: ``{"staking": {track: staking figures}}``.
    """

    def __init__(self, choice: str = "market_corrected") -> None:
        self.choice = choice

    def predict_candidates(
        self,
        p_fund: np.ndarray,
        p_market: np.ndarray,
        capped: np.ndarray,
        features: np.ndarray | None,
        groups: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Per-race probabilities of ``market_corrected`` and every candidate.

        Args:
            p_fund: Stacked fundamental probabilities.
            p_market: Plain market probabilities (complete markets only).
            capped: Odds-cap flag (0/1).
            features: The residual booster's feature matrix (its ``feature_names_in_``
                columns, in that order); None when there is no residual booster.
            groups: Race ids.

        Returns:
            ``{"market_corrected", "benter", "residual"?, "combined"}`` arrays in input order.
        """
        return self._candidates(p_fund, p_market, capped, features, groups, None)

    def predict_combined(
        self,
        p_fund: np.ndarray,
        p_market: np.ndarray,
        capped: np.ndarray,
        features: np.ndarray | None,
        groups: np.ndarray,
    ) -> np.ndarray:
        """The chosen candidate's probabilities only (``predict_candidates(...)["combined"]``).

        The same computation as :meth:`predict_candidates` restricted to ``choice_`` (and
        ``market_corrected``, which every candidate reads): serving scores the choice
        only, so a residual booster that was not chosen costs nothing.

        Args:
            As for :meth:`predict_candidates`.

        Returns:
            Probabilities in input order.
        """
        return self._candidates(p_fund, p_market, capped, features, groups, self.choice_)[
            "combined"
        ]

    def _candidates(
        self,
        p_fund: np.ndarray,
        p_market: np.ndarray,
        capped: np.ndarray,
        features: np.ndarray | None,
        groups: np.ndarray,
        only: str | None,
    ) -> dict[str, np.ndarray]:
        """Every candidate (``only`` None), or ``market_corrected`` and ``only``."""
        if not hasattr(self, "choice_"):
            raise RuntimeError("CombinedTrack is not fitted (see rolling_second_stage)")
        groups = np.asarray(groups)
        races = RaceGroups(groups)  # the races once, for every candidate
        p_mc = self.market_.predict_proba(p_market, capped, races)
        out = {"market_corrected": p_mc}
        if only in (None, "benter"):
            out["benter"] = np.asarray(
                self.benter_.predict_proba(np.column_stack([p_fund, p_mc]), groups=races)
            )
        if only in (None, "residual") and self.residual_ is not None and features is not None:
            offset = self.market_.utility(p_market, capped, races)
            out["residual"] = self.residual_.predict_proba_array(features, groups, offset)
        out["combined"] = out[self.choice_]
        return out


def _block_stacker_p(
    fit_stacker: Callable[[pd.DataFrame], Any],
    rows: pd.DataFrame,
    block: pd.DataFrame,
    columns: list[str],
) -> np.ndarray:
    """Probabilities of ``block`` from a stacker fit on the earlier ``rows``."""
    stacker = fit_stacker(rows)
    return np.asarray(stacker.predict_proba(block[columns], block["race_id"]))


def _stacked_oof(
    meta: pd.DataFrame,
    columns: list[str],
    fit_stacker: Callable[[pd.DataFrame], Any],
    n_folds: int,
    first_fraction: float,
    n_jobs: int = 1,
) -> tuple[pd.Series, list[tuple[np.ndarray, np.ndarray]]]:
    """Out-of-fold stacker probabilities of the later blocks of ``meta`` and the folds.

    The blocks' stacker fits are independent: ``n_jobs`` processes share them
    (:func:`racecast.threads.map_processes`; the same probabilities as one process).
    """
    days = compute_race_days(meta)
    n_days = days.nunique()
    first = max(1, math.ceil(first_fraction * n_days))
    if first + n_folds > n_days:
        raise ValueError(f"{n_days} out-of-fold race days are too few for {n_folds} blocks")
    folds = time_folds(days, n_folds, first)
    blocks = map_processes(
        _block_stacker_p,
        [
            (
                fit_stacker,
                meta.iloc[train_idx].reset_index(drop=True),
                meta.iloc[valid_idx],
                columns,
            )
            for train_idx, valid_idx in folds
        ],
        n_jobs,
    )
    p_fund = np.full(len(meta), np.nan)
    for k, ((_, valid_idx), p) in enumerate(zip(folds, blocks, strict=True)):
        p_fund[valid_idx] = p
        logger.info(
            "second stage: stacked OOF block %d/%d (%d races)",
            k + 1,
            len(folds),
            meta.iloc[valid_idx]["race_id"].nunique(),
        )
    return pd.Series(p_fund, index=meta.index, name="p_fund"), folds


def _fit_market(frame: pd.DataFrame, terms: Sequence[str]) -> MarketCorrection:
    p, capped, has = market_inputs(frame)
    rows = frame[has]
    return MarketCorrection(terms=tuple(terms)).fit(
        p[has], capped[has], rows["won"].to_numpy(dtype=float), rows["race_id"].to_numpy()
    )


def _fit_residual(
    train: pd.DataFrame, market: MarketCorrection, features: list[str], kwargs: Mapping[str, Any]
) -> ResidualBooster:
    p, capped, has = market_inputs(train)
    rows = train[has]
    groups = rows["race_id"].to_numpy()
    offset = market.utility(p[has], capped[has], groups)
    return ResidualBooster(**dict(kwargs)).fit(
        rows[features], rows["won"].to_numpy(dtype=float), groups, offset
    )


def _predict_block(
    block: pd.DataFrame,
    market: MarketCorrection,
    benter: BenterBlend,
    residual: ResidualBooster | None,
    features: list[str],
) -> pd.DataFrame:
    p, capped, has = market_inputs(block)
    block = block[has].copy()
    track = CombinedTrack()
    track.market_, track.benter_, track.residual_, track.choice_ = (
        market,
        benter,
        residual,
        "benter",
    )
    x = block[features].to_numpy(dtype=float, na_value=np.nan) if residual is not None else None
    preds = track.predict_candidates(
        block["p_fund"].to_numpy(dtype=float), p[has], capped[has], x, block["race_id"].to_numpy()
    )
    block["p_market"] = p[has]
    for name, values in preds.items():
        if name != "combined":
            block[f"p_{name}"] = values
    return block


def _rolling_block(
    fit_rows: pd.DataFrame,
    earlier: pd.DataFrame,
    block: pd.DataFrame,
    terms: Sequence[str],
    features: list[str],
    residual_kwargs: Mapping[str, Any],
) -> pd.DataFrame:
    """One rolling-origin block: market_corrected, Benter blend and residual booster fit on
    what came before it (``fit_rows`` of the training races, ``earlier`` out-of-fold
    rows), their predictions of ``block``."""
    market = _fit_market(fit_rows, terms)
    p, capped, has = market_inputs(earlier)
    earlier = earlier[has].copy()
    earlier["p_mc"] = market.predict_proba(p[has], capped[has], earlier["race_id"].to_numpy())
    benter = BenterBlend(fund_col="p_fund", market_col="p_mc").fit(
        earlier[["race_id", "won", "p_fund", "p_mc"]]
    )
    residual = _fit_residual(fit_rows, market, features, residual_kwargs)
    return _predict_block(block, market, benter, residual, features)


def select_market_terms(
    train: pd.DataFrame, extra_terms: Sequence[str], params: Mapping[str, Any]
) -> tuple[list[str], dict[str, Any]]:
    """Base terms plus each extra term that beats them out of sample on training races.

    Rolling origin over the training race days (``n_folds`` blocks after the first
    ``first_fraction``); an extra term is kept when the one-sided test of its per-race
    gain over the base terms has p < ``alpha``.

    Returns:
        ``(terms, {term: gain_test(...)})``.
    """
    terms = list(BASE_TERMS)
    if not extra_terms:
        return terms, {}
    days = compute_race_days(train)
    n_folds = int(params.get("n_folds", 4))
    first = max(1, math.ceil(float(params.get("first_fraction", 0.25)) * days.nunique()))
    folds = time_folds(days, n_folds, first)
    report = {}
    for extra in extra_terms:
        scored = []
        for train_idx, valid_idx in folds:
            fit_rows, block = train.iloc[train_idx], train.iloc[valid_idx]
            p, capped, has = market_inputs(block)
            block = block[has].copy()
            for name, use in (("base", terms), ("extra", [*terms, extra])):
                model = _fit_market(fit_rows, use)
                block[f"p_{name}"] = model.predict_proba(
                    p[has], capped[has], block["race_id"].to_numpy()
                )
            scored.append(block)
        test = gain_test(
            per_race_gain(pd.concat(scored), "p_extra", "p_base"), float(params.get("alpha", 0.05))
        )
        report[extra] = test
        if test["passes"]:
            terms.append(extra)
        logger.info(
            "market term %s: gain %.5f (SE %.5f, p %.3g) -> %s",
            extra,
            test["mean_gain"],
            test["se"],
            test["p_value"],
            "kept" if test["passes"] else "dropped",
        )
    return terms, report


def rolling_second_stage(
    train: pd.DataFrame,
    meta: pd.DataFrame,
    columns: list[str],
    fit_stacker: Callable[[pd.DataFrame], Any],
    features: list[str],
    params: Mapping[str, Any],
) -> tuple[CombinedTrack, pd.DataFrame]:
    """Fit and test the combined track's candidates by rolling origin (module docstring).

    Args:
        train: Every training runner (``race_id``, ``off_time``, ``won``, ``odds_final``,
            optional ``odds_capped`` and the fundamental ``features``), in time order.
        meta: The out-of-fold rows (every base model predicted) with the stacker's
            input ``columns``, in time order.
        columns: The stacker's inputs.
        fit_stacker: Frame of ``meta`` rows -> fitted stacker.
        features: The residual booster's features (fundamental only).
        params: ``model_zoo.second_stage``: ``n_folds``, ``first_fraction``, ``alpha``,
            ``power``, ``reference_pseudo_r2_gain``, ``extra_market_terms``,
            ``residual`` (the residual booster's kwargs), ``n_jobs`` (processes for the
            blocks' independent fits, each held to the thread budget; the same figures
            for any value).

    Returns:
        ``(track, stacked_oof)``: the fitted :class:`CombinedTrack` and the stacked
        out-of-fold rows (``race_id, horse_id, off_time, p_fund``).
    """
    n_folds = int(params.get("n_folds", 5))
    first_fraction = float(params.get("first_fraction", 0.25))
    residual_kwargs = params.get("residual") or {}
    n_jobs = int(params.get("n_jobs", 1))
    terms, term_tests = select_market_terms(
        train, list(params.get("extra_market_terms") or []), params
    )
    meta = meta.copy()
    meta["p_fund"], folds = _stacked_oof(
        meta, columns, fit_stacker, n_folds, first_fraction, n_jobs
    )
    meta_keyed = meta.merge(
        train.drop(
            columns=[
                c for c in meta.columns if c in train.columns and c not in ("race_id", "horse_id")
            ]
        ),
        on=["race_id", "horse_id"],
        how="left",
        validate="one_to_one",
    )
    train_days = compute_race_days(train)
    blocks = []
    for k in range(1, len(folds)):
        valid_idx = folds[k][1]
        start = compute_race_days(meta_keyed.iloc[valid_idx]).min()
        earlier = meta_keyed.iloc[np.concatenate([folds[j][1] for j in range(k)])]
        blocks.append(
            (
                train[train_days < start],
                earlier,
                meta_keyed.iloc[valid_idx],
                terms,
                features,
                residual_kwargs,
            )
        )
    scored = map_processes(_rolling_block, blocks, n_jobs)
    logger.info("second stage: %d rolling-origin blocks scored", len(scored))
    test = pd.concat(scored, ignore_index=True)
    candidates = [c for c in CANDIDATES if f"p_{c}" in test.columns]
    uniform = np.log(test.groupby("race_id").size()).mean()
    reference = float(params.get("reference_pseudo_r2_gain", 0.002)) * float(uniform)
    decision = decide(
        {c: per_race_gain(test, f"p_{c}", "p_market_corrected") for c in candidates},
        alpha=float(params.get("alpha", 0.05)),
        power=float(params.get("power", 0.8)),
        reference_gain=reference,
    )
    decision["market_corrected_vs_market"] = gain_test(
        per_race_gain(test, "p_market_corrected", "p_market"), float(params.get("alpha", 0.05))
    )
    decision["test_period"] = {
        "start": str(compute_race_days(test).min().date()),
        "end": str(compute_race_days(test).max().date()),
        "n_blocks": len(folds) - 1,
        "mean_uniform_log_loss": float(uniform),
    }
    decision["market_terms"] = {"terms": terms, "extra_term_tests": term_tests}

    track = CombinedTrack(choice=decision["choice"])
    track.market_ = _fit_market(train, terms)
    p, capped, has = market_inputs(meta_keyed)
    mask = has & meta_keyed["p_fund"].notna().to_numpy()
    stacked = meta_keyed[mask].copy()
    stacked["p_mc"] = track.market_.predict_proba(
        p[mask], capped[mask], stacked["race_id"].to_numpy()
    )
    track.benter_ = BenterBlend(fund_col="p_fund", market_col="p_mc").fit(
        stacked[["race_id", "won", "p_fund", "p_mc"]]
    )
    track.residual_ = _fit_residual(train, track.market_, features, residual_kwargs)
    track.choice_ = decision["choice"]
    track.decision_ = decision
    track.validation_ = {"staking": _staking(test, track.choice_)}
    logger.info(
        "second stage: %d test races %s..%s; %s; combined track = %s",
        decision["tests"][candidates[0]]["n_races"],
        decision["test_period"]["start"],
        decision["test_period"]["end"],
        "; ".join(
            f"{c}: gain {t['mean_gain']:+.5f} SE {t['se']:.5f} p {t['p_value']:.3g} "
            f"MDE {t['mde']:.5f}"
            for c, t in decision["tests"].items()
        ),
        track.choice_,
    )
    stacked_oof = meta.loc[meta["p_fund"].notna(), ["race_id", "horse_id", "off_time", "p_fund"]]
    return track, stacked_oof.reset_index(drop=True)


def _staking(test: pd.DataFrame, choice: str) -> dict[str, dict[str, Any]]:
    """Staking validation of each track on the rolling-origin test races."""
    staking = {"fundamental": staking_validation(test, "p_fund")}
    if choice == "market_corrected":
        staking["combined"] = not_assessed(
            "the combined track is market_corrected (no candidate passed the decision rule): "
            "it has no edge over the market"
        )
    else:
        staking["combined"] = staking_validation(test, f"p_{choice}")
    return staking
