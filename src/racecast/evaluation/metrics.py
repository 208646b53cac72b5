"""Metrics of ``docs/evaluation-protocol.md``, computed on a runner-level frame.

Input convention: one row per runner (non-runners never present) with ``race_id``,
``off_time`` (UTC), ``won`` (0/1; dead-heat winners are both 1), ``position``
(nullable finishing position), ``odds_final`` (decimal odds including the stake, may
be NaN) and one or more probability columns that sum to 1 within each race.

Conventions shared by every metric:

* The protocol's metrics are taken on races with **exactly one winner**;
  :func:`evaluate` counts single-winner, dead-heat and no-winner races and reports
  them, then computes every metric on the single-winner races only. The functions that
  need a unique winner (pseudo R², log loss, top-k, ROI, Kelly) raise on other races.
* **Ranking**: runners are ranked by probability, highest first; equal probabilities
  are ranked in the order of the rows in the frame (stable sort). On the Hong Kong
  data the runners of a race are listed by ``horse_no``, so joint favourites go to the
  lowest horse number; that is the tie-break that reproduces the protocol's reference
  figures (27 holdout races have joint favourites: breaking ties the other way gives
  top1 0.3127 and ROI -0.1158 instead of 0.3103 and -0.1231).
* **Settlement**: a winning bet returns ``stake * odds_final`` (full odds). Dead-heat
  races, whose settlement would need the dead-heat rule, are never bet on because
  ROI and Kelly run on single-winner races. A runner without final odds cannot be
  bet on.

The validated per-race arrays under every metric are built in
``racecast.evaluation.race_arrays``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from racecast.evaluation.blend import likelihood_ratio_test
from racecast.evaluation.race_arrays import (
    _check_single_winner,
    _probability_array,
    _race_codes,
    _ranks,
    _require_columns,
    _single_winner,
    _won_array,
)
from racecast.features.market import market_probabilities

logger = logging.getLogger(__name__)

__all__ = [
    "KellyResult",
    "brier_score",
    "evaluate",
    "expected_calibration_error",
    "kelly_simulation",
    "log_loss",
    "market_probability",
    "ndcg_at_k",
    "normalise_per_race",
    "pseudo_r2",
    "race_outcome_counts",
    "rank_within_race",
    "roi_flat_top1",
    "single_winner_races",
    "top_k_accuracy",
    "uniform_log_loss",
]

NDCG_MAX_GAIN = 5
"""Gain of a runner is ``max(0, NDCG_MAX_GAIN - finish_position)``: 4, 3, 2, 1 for 1st-4th."""


# ------------------------------------------------------------------ probabilities


def market_probability(
    frame: pd.DataFrame, odds_col: str = "odds_final", race_col: str = "race_id"
) -> pd.Series:
    """Market probability ``(1/odds) / sum over the race of (1/odds)``
    (:func:`racecast.features.market.market_probabilities`).

    A race with any runner lacking final odds has no market: all its runners get NaN.

    Args:
        frame: Runner-level frame.
        odds_col: Decimal odds column (stake included, so every price is >= 1).
        race_col: Race id column.

    Returns:
        Series ``p_market`` aligned to ``frame.index``.

    Raises:
        KeyError: If a column is missing.
        ValueError: If an odds value is below 1.
    """
    _require_columns(frame, [race_col, odds_col])
    odds = frame[odds_col].to_numpy(dtype=float, na_value=np.nan)
    if (odds < 1).any():
        raise ValueError(f"column '{odds_col}' has decimal odds below 1 (odds include the stake)")
    codes, races = _race_codes(frame, race_col)
    p, _ = market_probabilities(odds, codes, len(races))
    return pd.Series(p, index=frame.index, name="p_market")


def normalise_per_race(frame: pd.DataFrame, col: str, race_col: str = "race_id") -> pd.Series:
    """Rescale non-negative scores so they sum to 1 within each race.

    A race with any missing score gets NaN for all its runners.

    Args:
        frame: Runner-level frame.
        col: Non-negative score column.
        race_col: Race id column.

    Returns:
        Series named ``col`` aligned to ``frame.index``.

    Raises:
        KeyError: If a column is missing.
        ValueError: If a score is negative or infinite, or a race's scores sum to 0.
    """
    _require_columns(frame, [race_col, col])
    scores = frame[col].astype(float)
    if (scores < 0).any() or np.isinf(scores).any():
        raise ValueError(f"column '{col}' has negative or infinite values")
    races = frame[race_col]
    missing = scores.isna().groupby(races).transform("any")
    totals = scores.groupby(races).transform("sum")
    if ((totals == 0) & ~missing).any():
        raise ValueError(f"column '{col}' sums to 0 within at least one race")
    return (scores / totals).mask(missing).rename(col)


# -------------------------------------------------------------- race bookkeeping


def race_outcome_counts(
    frame: pd.DataFrame, race_col: str = "race_id", won_col: str = "won"
) -> dict[str, int]:
    """Count races by number of winners.

    Args:
        frame: Runner-level frame.
        race_col: Race id column.
        won_col: 0/1 winner column.

    Returns:
        ``{"n_races", "n_single_winner", "n_dead_heat", "n_no_winner"}``; a dead heat is
        a race with two or more winners.
    """
    codes, race_ids = _race_codes(frame, race_col)
    winners = np.bincount(codes, weights=_won_array(frame, won_col), minlength=len(race_ids))
    return {
        "n_races": len(race_ids),
        "n_single_winner": int((winners == 1).sum()),
        "n_dead_heat": int((winners >= 2).sum()),
        "n_no_winner": int((winners == 0).sum()),
    }


def single_winner_races(
    frame: pd.DataFrame, race_col: str = "race_id", won_col: str = "won"
) -> pd.DataFrame:
    """Rows of the races with exactly one winner (a new frame; row order kept).

    Args:
        frame: Runner-level frame.
        race_col: Race id column.
        won_col: 0/1 winner column.

    Returns:
        The subset of ``frame``.
    """
    codes, race_ids = _race_codes(frame, race_col)
    winners = np.bincount(codes, weights=_won_array(frame, won_col), minlength=len(race_ids))
    return frame.loc[winners[codes] == 1].copy()


def rank_within_race(frame: pd.DataFrame, prob_col: str, race_col: str = "race_id") -> pd.Series:
    """1-based rank by probability within each race, highest first; ties by row order.

    Args:
        frame: Runner-level frame.
        prob_col: Probability (or any score) column, no missing values.
        race_col: Race id column.

    Returns:
        Integer Series ``rank`` aligned to ``frame.index``.
    """
    codes, _ = _race_codes(frame, race_col)
    _require_columns(frame, [prob_col])
    values = frame[prob_col].to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(values).any():
        raise ValueError(f"column '{prob_col}' has missing values")
    return pd.Series(_ranks(codes, values), index=frame.index, name="rank")


# ----------------------------------------------------------------------- metrics


def log_loss(
    frame: pd.DataFrame, prob_col: str, race_col: str = "race_id", won_col: str = "won"
) -> float:
    """``-mean over races of log p_winner`` (single-winner races only).

    Args:
        frame: Runner-level frame of single-winner races.
        prob_col: Per-race normalised probability column.
        race_col: Race id column.
        won_col: 0/1 winner column.

    Returns:
        The log loss in nats (``inf`` if a winner had probability 0).
    """
    races = _single_winner(frame, prob_col, race_col, won_col)
    with np.errstate(divide="ignore"):
        return float(-np.log(races.winner_p).mean())


def uniform_log_loss(frame: pd.DataFrame, race_col: str = "race_id", won_col: str = "won") -> float:
    """Log loss of the uniform forecast ``1/N_race``: ``mean over races of log N_race``.

    Args:
        frame: Runner-level frame of single-winner races.
        race_col: Race id column.
        won_col: 0/1 winner column (checked: exactly one winner per race).

    Returns:
        The uniform baseline log loss in nats.
    """
    codes, race_ids = _race_codes(frame, race_col)
    _check_single_winner(codes, race_ids, _won_array(frame, won_col), won_col)
    return float(np.log(np.bincount(codes)).mean())


def pseudo_r2(
    frame: pd.DataFrame, prob_col: str, race_col: str = "race_id", won_col: str = "won"
) -> float:
    """Benter's pseudo R²: ``1 - sum log p_winner / sum log(1/N_race)``.

    Args:
        frame: Runner-level frame of single-winner races.
        prob_col: Per-race normalised probability column.
        race_col: Race id column.
        won_col: 0/1 winner column.

    Returns:
        The pseudo R² (0 for the uniform forecast, 1 for a perfect one).

    Raises:
        ValueError: If every race has a single runner (the uniform baseline is 0).
    """
    races = _single_winner(frame, prob_col, race_col, won_col)
    baseline = -np.log(races.field_sizes).sum()
    if baseline == 0:
        raise ValueError(f"column '{race_col}': every race has one runner; pseudo R² is undefined")
    with np.errstate(divide="ignore"):
        return float(1.0 - np.log(races.winner_p).sum() / baseline)


def top_k_accuracy(
    frame: pd.DataFrame, prob_col: str, k: int, race_col: str = "race_id", won_col: str = "won"
) -> float:
    """Share of races whose winner is among the model's first ``k`` picks.

    Args:
        frame: Runner-level frame of single-winner races.
        prob_col: Per-race normalised probability column.
        k: Number of picks (>= 1).
        race_col: Race id column.
        won_col: 0/1 winner column.

    Returns:
        The top-k accuracy in [0, 1].
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    races = _single_winner(frame, prob_col, race_col, won_col)
    winner_rank = _ranks(races.codes, races.p)[races.won == 1]
    return float((winner_rank <= k).mean())


def ndcg_at_k(
    frame: pd.DataFrame,
    prob_col: str,
    k: int,
    race_col: str = "race_id",
    position_col: str = "position",
) -> float:
    """Mean over races of NDCG@k with gain ``max(0, 5 - finish_position)``.

    Runners are ranked by probability (ties by row order); ``DCG@k = sum over ranks
    r <= k of gain_r / log2(r + 1)``; the ideal DCG ranks the runners by gain. A
    runner without a finishing position has gain 0.

    Args:
        frame: Runner-level frame.
        prob_col: Per-race normalised probability column.
        k: Cut-off rank (>= 1).
        race_col: Race id column.
        position_col: Finishing position column (nullable).

    Returns:
        The mean NDCG@k in [0, 1].

    Raises:
        ValueError: If a race has no runner placed 1st-4th (its ideal DCG is 0).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    codes, race_ids = _race_codes(frame, race_col)
    if len(race_ids) == 0:
        raise ValueError(f"no races in the frame (column '{race_col}' is empty)")
    p = _probability_array(frame, prob_col, codes, len(race_ids))
    _require_columns(frame, [position_col])
    position = frame[position_col].to_numpy(dtype=float, na_value=np.nan)
    gain = np.nan_to_num(np.maximum(0.0, NDCG_MAX_GAIN - position), nan=0.0)

    def dcg(ranks: np.ndarray) -> np.ndarray:
        weights = np.where(ranks <= k, gain / np.log2(ranks + 1.0), 0.0)
        return np.bincount(codes, weights=weights, minlength=len(race_ids))

    ideal = dcg(_ranks(codes, gain))
    if (ideal == 0).any():
        bad = race_ids[ideal == 0][:5].tolist()
        raise ValueError(f"column '{position_col}': races {bad} have no runner placed 1st-4th")
    return float((dcg(_ranks(codes, p)) / ideal).mean())


def brier_score(
    frame: pd.DataFrame, prob_col: str, race_col: str = "race_id", won_col: str = "won"
) -> float:
    """Per race ``sum_i (p_i - won_i)^2``, averaged over races.

    Args:
        frame: Runner-level frame.
        prob_col: Per-race normalised probability column.
        race_col: Race id column.
        won_col: 0/1 winner column.

    Returns:
        The Brier score (0 is perfect).
    """
    codes, race_ids = _race_codes(frame, race_col)
    if len(race_ids) == 0:
        raise ValueError(f"no races in the frame (column '{race_col}' is empty)")
    p = _probability_array(frame, prob_col, codes, len(race_ids))
    return float(((p - _won_array(frame, won_col)) ** 2).sum() / len(race_ids))


def expected_calibration_error(
    frame: pd.DataFrame,
    prob_col: str,
    n_bins: int = 10,
    race_col: str = "race_id",
    won_col: str = "won",
) -> float:
    """Runner-level expected calibration error over equal-width bins of p.

    Bin ``j`` holds ``j/n_bins <= p < (j+1)/n_bins`` (the last bin includes 1);
    ``ECE = sum over bins of (n_bin / n) * |mean p - win rate|``
    ``= sum over bins of |sum p - sum won| / n``.

    Args:
        frame: Runner-level frame.
        prob_col: Per-race normalised probability column.
        n_bins: Number of bins.
        race_col: Race id column.
        won_col: 0/1 winner column.

    Returns:
        The ECE in [0, 1].
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    codes, race_ids = _race_codes(frame, race_col)
    if len(race_ids) == 0:
        raise ValueError(f"no races in the frame (column '{race_col}' is empty)")
    p = _probability_array(frame, prob_col, codes, len(race_ids))
    won = _won_array(frame, won_col)
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    gap = np.bincount(bins, weights=p, minlength=n_bins) - np.bincount(
        bins, weights=won, minlength=n_bins
    )
    return float(np.abs(gap).sum() / len(p))


def roi_flat_top1(
    frame: pd.DataFrame,
    prob_col: str,
    odds_col: str = "odds_final",
    race_col: str = "race_id",
    won_col: str = "won",
) -> float:
    """ROI of 1 unit on each race's top pick at final odds: ``returns / stakes - 1``.

    Single-winner races only; a winning bet returns ``odds`` (full odds, stake
    included). A race whose top pick has no final odds is not bet on.

    Args:
        frame: Runner-level frame of single-winner races.
        prob_col: Per-race normalised probability column.
        odds_col: Decimal odds column.
        race_col: Race id column.
        won_col: 0/1 winner column.

    Returns:
        The ROI (NaN if no bet could be placed).
    """
    races = _single_winner(frame, prob_col, race_col, won_col)
    _require_columns(frame, [odds_col])
    odds = frame[odds_col].to_numpy(dtype=float, na_value=np.nan)
    top = _ranks(races.codes, races.p) == 1
    priced = top & np.isfinite(odds)
    if priced.sum() < top.sum():
        logger.warning(
            "roi_flat_top1: %d top picks have no '%s' and are not bet on",
            int(top.sum() - priced.sum()),
            odds_col,
        )
    stakes = int(priced.sum())
    if stakes == 0:
        return float("nan")
    returns = (odds[priced] * races.won[priced]).sum()
    return float(returns / stakes - 1.0)


@dataclass(frozen=True)
class KellyResult:
    """Outcome of a fractional-Kelly betting simulation.

    Attributes:
        bankroll: Bankroll after each race, indexed by race id in race order (starts
            from 1.0 before the first race, which is not a row).
        final_bankroll: Bankroll after the last race.
        max_drawdown: Largest fall from a running peak, as a fraction of the peak
            (the starting bankroll 1.0 counts as a peak).
        n_bets: Number of bets placed.
        sharpe: Mean / standard deviation (ddof=1) of the per-bet profit as a fraction
            of the bankroll at the start of its race; NaN with fewer than 2 bets or
            zero spread. Not annualised.
    """

    bankroll: pd.Series
    final_bankroll: float
    max_drawdown: float
    n_bets: int
    sharpe: float


def kelly_simulation(
    frame: pd.DataFrame,
    prob_col: str,
    odds_col: str = "odds_final",
    fraction: float = 0.25,
    race_col: str = "race_id",
    won_col: str = "won",
    time_col: str = "off_time",
) -> KellyResult:
    """Fractional-Kelly betting on every runner with ``p * odds > 1``, races in time order.

    Sizing of simultaneous bets: every runner with ``p * o > 1`` in a race gets the
    bankroll fraction ``f = fraction * (p * o - 1) / (o - 1)`` (its single-bet Kelly
    fraction times ``fraction``), all taken from the bankroll at the start of the race.
    The fractions of a race never sum to more than 1, so no cap is needed: each
    single-bet Kelly fraction is below the runner's probability
    (``(p*o - 1)/(o - 1) < p`` for ``p < 1``) and the probabilities sum to 1. The
    bankroll then grows by the factor ``1 - sum f + sum over winning bets of f * o``.
    Races are ordered by ``(off_time, race_id)``.

    Args:
        frame: Runner-level frame of single-winner races.
        prob_col: Per-race normalised probability column.
        odds_col: Decimal odds column (NaN: no bet).
        fraction: Kelly multiplier (0.25 is quarter Kelly), in (0, 1].
        race_col: Race id column.
        won_col: 0/1 winner column.
        time_col: Off-time column that orders the races.

    Returns:
        The :class:`KellyResult`.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    races = _single_winner(frame, prob_col, race_col, won_col)
    _require_columns(frame, [odds_col, time_col])
    odds = frame[odds_col].to_numpy(dtype=float, na_value=np.nan)
    priced = np.isfinite(odds) & (odds > 1.0)
    edge = np.where(priced, races.p * np.where(priced, odds, 1.0) - 1.0, 0.0)
    bet = edge > 0
    stake = np.where(bet, fraction * edge / np.where(priced, odds - 1.0, 1.0), 0.0)
    total = np.bincount(races.codes, weights=stake, minlength=races.n_races)
    payout = np.bincount(
        races.codes, weights=np.where(bet, stake * odds * races.won, 0.0), minlength=races.n_races
    )
    growth = 1.0 - total + payout

    off_times = (
        pd.DataFrame({"race": races.codes, "t": frame[time_col].to_numpy()})
        .groupby("race")["t"]
        .min()
        .sort_index()
    )
    order_frame = pd.DataFrame({"t": off_times.to_numpy(), "race_id": races.race_ids})
    order = order_frame.sort_values(["t", "race_id"], kind="mergesort").index.to_numpy()
    path = np.cumprod(growth[order])
    with_start = np.r_[1.0, path]
    drawdown = 1.0 - with_start / np.maximum.accumulate(with_start)

    bet_profit = stake[bet] * (odds[bet] * races.won[bet] - 1.0)
    spread = bet_profit.std(ddof=1) if len(bet_profit) >= 2 else 0.0
    sharpe = float(bet_profit.mean() / spread) if spread > 0 else float("nan")
    return KellyResult(
        bankroll=pd.Series(path, index=races.race_ids[order], name="bankroll"),
        final_bankroll=float(path[-1]),
        max_drawdown=float(drawdown.max()),
        n_bets=int(bet.sum()),
        sharpe=sharpe,
    )


# -------------------------------------------------------------------- entry point


def evaluate(
    frame: pd.DataFrame,
    prob_col: str,
    market_col: str | None = None,
    oracle_col: str | None = None,
    *,
    combined: bool = False,
    odds_col: str = "odds_final",
    race_col: str = "race_id",
    won_col: str = "won",
    position_col: str = "position",
    time_col: str = "off_time",
    kelly_fraction: float = 0.25,
) -> dict[str, float]:
    """Every protocol metric of one model on the races of ``frame`` (e.g. the holdout).

    Races are counted (``n_races``, ``n_single_winner``, ``n_dead_heat``,
    ``n_no_winner``), then every metric is computed on the single-winner races. The NDCG
    keys are ``ndcg_at_1/3/4`` (MLflow metric names cannot contain ``@``).

    Keys always present: the four counts, ``pseudo_r2``, ``log_loss``,
    ``uniform_log_loss``, ``top1``, ``top3``, ``ndcg_at_1``, ``ndcg_at_3``,
    ``ndcg_at_4``, ``brier``, ``ece``, ``roi_flat_top1``, ``kelly_final_bankroll``,
    ``kelly_max_drawdown``, ``kelly_n_bets``, ``kelly_sharpe``.
    With ``market_col``: ``market_pseudo_r2`` and ``delta_r2_vs_market``; and, if
    ``combined`` (``prob_col`` is the Benter blend of a fundamental model with
    ``market_col``), ``lr_test_p``: the likelihood-ratio test of the combined model
    against the market alone on these races (see
    :func:`racecast.evaluation.blend.likelihood_ratio_test`, 2 degrees of freedom).
    On a holdout the blend's ``(a, b)`` were fit on other races, so the chi-square
    reference is approximate there; the exact nested (in-sample) test is
    ``BenterBlend.lr_test_p_``.
    With ``oracle_col`` (true probabilities, synthetic world only):
    ``oracle_log_loss``, ``gap_to_oracle`` and ``signal_recovered``.

    Args:
        frame: Runner-level frame.
        prob_col: The model's per-race normalised probability column.
        market_col: Market probability column (see :func:`market_probability`).
        oracle_col: True win probability column.
        combined: Whether ``prob_col`` is a market blend (adds ``lr_test_p``).
        odds_col: Decimal final odds column (ROI, Kelly).
        race_col: Race id column.
        won_col: 0/1 winner column.
        position_col: Finishing position column (NDCG).
        time_col: Off-time column (Kelly race order).
        kelly_fraction: Kelly multiplier.

    Returns:
        Metric name -> value.

    Raises:
        ValueError: If no race has exactly one winner, or ``combined`` is set without
            ``market_col``.
    """
    if combined and market_col is None:
        raise ValueError("combined=True needs market_col (the LR test is against the market)")
    counts = race_outcome_counts(frame, race_col, won_col)
    if counts["n_single_winner"] == 0:
        raise ValueError(f"column '{won_col}': no race has exactly one winner")
    logger.info(
        "evaluate %s: %d races, %d single-winner, %d dead heats, %d without a winner",
        prob_col,
        counts["n_races"],
        counts["n_single_winner"],
        counts["n_dead_heat"],
        counts["n_no_winner"],
    )
    single = single_winner_races(frame, race_col, won_col)
    keys = {"race_col": race_col, "won_col": won_col}
    model_ll = log_loss(single, prob_col, **keys)
    kelly = kelly_simulation(
        single, prob_col, odds_col, kelly_fraction, race_col, won_col, time_col
    )
    metrics: dict[str, float] = {
        **counts,
        "pseudo_r2": pseudo_r2(single, prob_col, **keys),
        "log_loss": model_ll,
        "uniform_log_loss": uniform_log_loss(single, **keys),
        "top1": top_k_accuracy(single, prob_col, 1, **keys),
        "top3": top_k_accuracy(single, prob_col, 3, **keys),
        **{
            f"ndcg_at_{k}": ndcg_at_k(single, prob_col, k, race_col, position_col)
            for k in (1, 3, 4)
        },
        "brier": brier_score(single, prob_col, **keys),
        "ece": expected_calibration_error(single, prob_col, 10, **keys),
        "roi_flat_top1": roi_flat_top1(single, prob_col, odds_col, **keys),
        "kelly_final_bankroll": kelly.final_bankroll,
        "kelly_max_drawdown": kelly.max_drawdown,
        "kelly_n_bets": kelly.n_bets,
        "kelly_sharpe": kelly.sharpe,
    }
    if market_col is not None:
        market_r2 = pseudo_r2(single, market_col, **keys)
        metrics["market_pseudo_r2"] = market_r2
        metrics["delta_r2_vs_market"] = metrics["pseudo_r2"] - market_r2
        if combined:
            n = counts["n_single_winner"]
            market_ll = log_loss(single, market_col, **keys)
            metrics["lr_test_p"] = likelihood_ratio_test(-model_ll * n, -market_ll * n, df=2)
    if oracle_col is not None:
        oracle_ll = log_loss(single, oracle_col, **keys)
        metrics["oracle_log_loss"] = oracle_ll
        metrics["gap_to_oracle"] = model_ll / oracle_ll - 1.0
        metrics["signal_recovered"] = (metrics["uniform_log_loss"] - model_ll) / (
            metrics["uniform_log_loss"] - oracle_ll
        )
    return metrics
