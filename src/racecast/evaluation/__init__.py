"""Evaluation of racecast forecasts, as specified in ``docs/evaluation-protocol.md``.

The walk-forward holdout and folds live one layer down, in :mod:`racecast.models.split`.

* :mod:`~racecast.evaluation.metrics`: market probabilities and every protocol metric;
* :mod:`~racecast.evaluation.blend`: the Benter (1994) market blend and its LR test;
* :mod:`~racecast.evaluation.second_stage`: the combined track by rolling origin
  (market_corrected, the candidates, the final fits) and
  :mod:`~racecast.evaluation.decision`: its decision rule, power and minimum detectable
  effect;
* :mod:`~racecast.evaluation.stakeability`: may a track be staked (its staking rule's
  return on validation races);
* :mod:`~racecast.evaluation.plots`: reliability, Kelly and feature-importance figures.
"""

from racecast.evaluation.blend import BenterBlend, likelihood_ratio_test
from racecast.evaluation.metrics import (
    KellyResult,
    brier_score,
    evaluate,
    expected_calibration_error,
    kelly_simulation,
    log_loss,
    market_probability,
    ndcg_at_k,
    normalise_per_race,
    pseudo_r2,
    race_outcome_counts,
    rank_within_race,
    roi_flat_top1,
    single_winner_races,
    top_k_accuracy,
    uniform_log_loss,
)

__all__ = [
    "BenterBlend",
    "KellyResult",
    "brier_score",
    "evaluate",
    "expected_calibration_error",
    "kelly_simulation",
    "likelihood_ratio_test",
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
