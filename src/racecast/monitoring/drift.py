"""Drift monitoring: pure functions on runner-level frames.

Feature drift
    :func:`feature_drift` compares recent runner rows with the training reference,
    feature by feature, with alibi-detect's ``TabularDrift`` (two-sample
    Kolmogorov-Smirnov test for numeric features, chi-square test of the category
    counts for categorical ones) and a Bonferroni correction: drift is declared when a
    p-value is below ``p_val / n_tests``.

    * **Missing values.** alibi-detect needs finite numbers, and a change in how often a
      feature is missing (e.g. more debutants, a broken feed) is drift in its own right.
      Numeric features are imputed with the reference median (observed values) for the
      KS test, and every numeric feature with a missing value in either frame gets a
      second test: chi-square on its missing/present counts (``missing_p_value``).
      Both tests count in the Bonferroni correction. Categorical features are coded
      with missing as a category of its own, so their chi-square test covers it.
    * **Race-level features** (``race_level``, e.g. ``n_runners``, ``going_code``) are
      constant within a race; they are tested on one row per race, since the runners
      of a race are not independent draws of them (runner rows would inflate their
      sample size about tenfold and their significance with it). Runner-level features
      are still correlated within a race, so their p-values are somewhat optimistic:
      read the test as a trigger for a look, not as an exact error rate.
    * The reference is sub-sampled by whole races to at most ``max_reference`` runners
      (seeded), which bounds the cost and the power of the tests.
    * A feature without any value in the reference rows (e.g. built from an optional
      racecard field the feed never gives) has nothing to compare with: it is skipped
      and listed in ``skipped`` with the reason, not tested.

Prediction drift
    :func:`prediction_drift` applies alibi-detect's ``KSDrift`` to ``log(p * N)``, the
    log of a runner's probability relative to the uniform share ``1/N`` of its race:
    raw probabilities shift whenever field sizes do, which ``n_runners`` already
    monitors.

Performance and action
    :mod:`racecast.monitoring.performance` scores a model on a window of races;
    :mod:`racecast.monitoring.actions` turns drift and performance into an action.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["MIN_PROBABILITY", "NO_REFERENCE_VALUE", "feature_drift", "prediction_drift", "sample_races"]

MIN_PROBABILITY = 1e-12
"""Probabilities are clipped to at least this before taking logs."""

NO_REFERENCE_VALUE = "no value in the reference rows"
"""Why :func:`feature_drift` skips a feature (e.g. an optional field the feed omits)."""


# --------------------------------------------------------------------------- helpers


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    """Raise ``KeyError`` naming the frame and the first missing column."""
    for col in columns:
        if col not in frame.columns:
            raise KeyError(f"column '{col}' is missing from the {name} frame")


def _check_p_val(p_val: float) -> None:
    if not 0.0 < p_val < 1.0:
        raise ValueError(f"p_val must be in (0, 1), got {p_val}")


def sample_races(
    frame: pd.DataFrame, max_rows: int | None, seed: int, race_col: str = "race_id"
) -> pd.DataFrame:
    """Whole races drawn at random until at most ``max_rows`` runners are kept.

    Args:
        frame: Runner-level frame.
        max_rows: Runner budget; ``None`` keeps every row.
        seed: Seed of the race shuffle.
        race_col: Race id column.

    Returns:
        The rows of the sampled races (a new frame, original row order), or ``frame``
        itself when it fits the budget.

    Raises:
        ValueError: If ``max_rows`` is below 1.
    """
    if max_rows is None or len(frame) <= max_rows:
        return frame
    if max_rows < 1:
        raise ValueError(f"max_reference must be >= 1, got {max_rows}")
    _require_columns(frame, [race_col], "reference")
    sizes = frame.groupby(race_col, sort=True, observed=True).size()
    order = np.random.default_rng(seed).permutation(len(sizes))
    shuffled = sizes.iloc[order]
    keep = shuffled.index[shuffled.cumsum().to_numpy() <= max_rows]
    if len(keep) == 0:  # a single race larger than the budget: keep that race
        keep = shuffled.index[:1]
    return frame[frame[race_col].isin(keep)]


def _has_value(frame: pd.DataFrame, feature: str) -> bool:
    """Whether ``feature`` has a finite value in some row of ``frame``."""
    values = pd.to_numeric(frame[feature], errors="coerce").to_numpy(dtype=float)
    return bool(np.isfinite(values).any())


def _race_rows(frame: pd.DataFrame, race_col: str) -> pd.DataFrame:
    """The first row of every race."""
    return frame.drop_duplicates(subset=[race_col], keep="first")


def _tabular_test(
    reference: np.ndarray, current: np.ndarray, categorical: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column p-values and statistics of alibi-detect's ``TabularDrift``.

    alibi-detect (and the torch it imports) is loaded on first use, so that importing
    the pipelines stays fast.
    """
    from alibi_detect.cd import TabularDrift

    detector = TabularDrift(
        reference,
        p_val=0.05,  # the decision is taken by the caller over every test
        categories_per_feature={int(i): None for i in categorical},
        correction="bonferroni",
    )
    result = detector.predict(current, drift_type="feature", return_p_val=True)
    data = result["data"]
    return np.asarray(data["p_val"], dtype=float), np.asarray(data["distance"], dtype=float)


def _encode(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: set[str],
) -> tuple[np.ndarray, np.ndarray, list[int], list[tuple[str, str]]]:
    """Finite matrices of the tests, the categorical column indices and the column roles.

    Returns:
        ``(x_ref, x_cur, categorical_indices, roles)``: column ``i`` tests ``roles[i]`` =
        ``(feature, "value" | "missing")``.
    """
    ref_cols: list[np.ndarray] = []
    cur_cols: list[np.ndarray] = []
    cat_idx: list[int] = []
    roles: list[tuple[str, str]] = []
    for feat in features:
        ref = pd.to_numeric(reference[feat], errors="coerce").to_numpy(dtype=float)
        cur = pd.to_numeric(current[feat], errors="coerce").to_numpy(dtype=float)
        ref_missing, cur_missing = ~np.isfinite(ref), ~np.isfinite(cur)
        if feat in categorical:
            # missing is a category of its own; codes over the union of both frames
            both = pd.Series(np.concatenate([ref, cur])).where(
                lambda s: np.isfinite(s), other=np.nan
            )
            codes, _ = pd.factorize(both, sort=True, use_na_sentinel=False)
            cat_idx.append(len(ref_cols))
            ref_cols.append(codes[: len(ref)].astype(float))
            cur_cols.append(codes[len(ref) :].astype(float))
            roles.append((feat, "value"))
            continue
        median = float(np.median(ref[~ref_missing]))
        ref_cols.append(np.where(ref_missing, median, ref))
        cur_cols.append(np.where(cur_missing, median, cur))
        roles.append((feat, "value"))
        if ref_missing.any() or cur_missing.any():
            cat_idx.append(len(ref_cols))
            ref_cols.append(ref_missing.astype(float))
            cur_cols.append(cur_missing.astype(float))
            roles.append((feat, "missing"))
    x_ref = np.column_stack(ref_cols) if ref_cols else np.empty((len(reference), 0))
    x_cur = np.column_stack(cur_cols) if cur_cols else np.empty((len(current), 0))
    return x_ref, x_cur, cat_idx, roles


# ------------------------------------------------------------------- feature drift


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str] = (),
    p_val: float = 0.05,
    max_reference: int | None = 5000,
    seed: int = 0,
    race_level: Sequence[str] = (),
    race_col: str = "race_id",
) -> dict[str, Any]:
    """Feature-wise drift tests of ``current`` against ``reference`` (see module doc).

    Args:
        reference: Reference runner rows (the training set).
        current: Recent runner rows.
        features: Monitored feature columns.
        categorical: Features among ``features`` tested as categories (chi-square);
            their values are coded as integers over both frames, missing included.
        p_val: Family-wise significance level before the Bonferroni correction.
        max_reference: Runner budget of the reference sample (whole races); ``None``
            uses every reference row.
        seed: Seed of the reference sample.
        race_level: Features among ``features`` that are constant within a race;
            tested on one row per race.
        race_col: Race id column (sampling and race-level rows).

    Returns:
        ``{"p_val", "n_tests", "threshold", "is_drift", "n_reference", "n_current",
        "n_reference_races", "n_current_races", "drifted", "features"}``:
        ``threshold = p_val / n_tests`` (Bonferroni over the value tests and the
        missing-rate tests; ``p_val`` when nothing is tested), ``drifted`` the features
        with a test below it, sorted by p-value, ``features[name]`` = ``{"test": "ks" |
        "chi2", "level": "runner" | "race", "p_value", "distance",
        "missing_rate_reference", "missing_rate_current", "missing_p_value",
        "missing_distance", "is_drift"}`` for every tested feature (``missing_*`` is
        None when the feature is categorical or never missing), and ``skipped`` =
        ``{name: reason}`` for the features without a value in the reference rows.

    Raises:
        KeyError: If a feature or ``race_col`` is missing from a frame.
        ValueError: If there are no features, an empty frame, ``categorical`` or
            ``race_level`` name a feature that is not monitored, or ``p_val`` is not in
            (0, 1).
    """
    features = list(dict.fromkeys(features))
    if not features:
        raise ValueError("no features to monitor (parameter monitoring.features is empty)")
    _check_p_val(p_val)
    for label, subset in (("categorical", categorical), ("race_level", race_level)):
        unknown = sorted(set(subset) - set(features))
        if unknown:
            raise ValueError(f"parameter monitoring.{label}: {unknown} are not monitored features")
    _require_columns(reference, [race_col, *features], "reference")
    _require_columns(current, [race_col, *features], "current")
    if reference.empty or current.empty:
        raise ValueError(
            f"feature drift needs rows in both frames (reference {len(reference)}, "
            f"current {len(current)})"
        )
    reference = sample_races(reference, max_reference, seed, race_col)
    cat, per_race = set(categorical), set(race_level)
    levels = {
        "runner": [f for f in features if f not in per_race],
        "race": [f for f in features if f in per_race],
    }

    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for level, feats in levels.items():
        ref = reference if level == "runner" else _race_rows(reference, race_col)
        cur = current if level == "runner" else _race_rows(current, race_col)
        skipped.update({f: NO_REFERENCE_VALUE for f in feats if not _has_value(ref, f)})
        feats = [f for f in feats if f not in skipped]
        if not feats:
            continue
        x_ref, x_cur, cat_idx, roles = _encode(ref, cur, feats, cat)
        p_values, distances = _tabular_test(x_ref, x_cur, cat_idx)
        for (feat, role), p, d in zip(roles, p_values, distances, strict=True):
            entry = results.setdefault(
                feat,
                {
                    "test": "chi2" if feat in cat else "ks",
                    "level": level,
                    "p_value": None,
                    "distance": None,
                    "missing_rate_reference": float(ref[feat].isna().mean()),
                    "missing_rate_current": float(cur[feat].isna().mean()),
                    "missing_p_value": None,
                    "missing_distance": None,
                },
            )
            prefix = "" if role == "value" else "missing_"
            entry[f"{prefix}p_value"] = float(p)
            entry[f"{prefix}distance"] = float(d)

    n_tests = sum(1 + (r["missing_p_value"] is not None) for r in results.values())
    threshold = p_val / n_tests if n_tests else p_val
    for entry in results.values():
        tests = [entry["p_value"], entry["missing_p_value"]]
        entry["is_drift"] = any(p is not None and p < threshold for p in tests)
    ordered = {f: results[f] for f in features if f in results}
    drifted = sorted(
        (f for f, r in ordered.items() if r["is_drift"]),
        key=lambda f: min(
            p for p in (ordered[f]["p_value"], ordered[f]["missing_p_value"]) if p is not None
        ),
    )
    logger.info(
        "feature drift: %d tests on %d features, threshold %.2e, drifted %s",
        n_tests,
        len(features),
        threshold,
        drifted or "none",
    )
    if skipped:
        logger.warning(
            "feature drift: %d features not tested (%s): %s",
            len(skipped),
            NO_REFERENCE_VALUE,
            ", ".join(skipped),
        )
    return {
        "p_val": float(p_val),
        "n_tests": int(n_tests),
        "threshold": float(threshold),
        "is_drift": bool(drifted),
        "n_reference": int(len(reference)),
        "n_current": int(len(current)),
        "n_reference_races": int(reference[race_col].nunique()),
        "n_current_races": int(current[race_col].nunique()),
        "drifted": drifted,
        "features": ordered,
        "skipped": {f: skipped[f] for f in features if f in skipped},
    }


# ---------------------------------------------------------------- prediction drift


def _relative_log_probability(frame: pd.DataFrame, p_col: str, race_col: str) -> np.ndarray:
    """``log(p * N_race)`` of every row with a finite probability."""
    _require_columns(frame, [race_col, p_col], "prediction")
    p = frame[p_col].to_numpy(dtype=float, na_value=np.nan)
    field = frame.groupby(race_col, observed=True)[race_col].transform("size").to_numpy(float)
    keep = np.isfinite(p)
    return np.log(np.clip(p[keep], MIN_PROBABILITY, None) * field[keep])


def prediction_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    p_val: float = 0.05,
    max_reference: int | None = 5000,
    seed: int = 0,
    p_col: str = "p",
    race_col: str = "race_id",
) -> dict[str, Any]:
    """KS test (alibi-detect ``KSDrift``) of the model's probabilities, recent vs reference.

    The tested value is ``log(p * N)`` (``N`` the number of rows of the runner's race in
    its frame, ``p`` clipped at :data:`MIN_PROBABILITY`); rows without a probability
    are left out, the reference is sub-sampled by whole races like
    :func:`feature_drift`'s.

    Args:
        reference: Reference predictions (``race_id``, ``p``), e.g. out-of-fold.
        current: Recent predictions.
        p_val: Significance level of the single test.
        max_reference: Runner budget of the reference sample.
        seed: Seed of the reference sample.
        p_col: Probability column.
        race_col: Race id column.

    Returns:
        ``{"test": "ks", "value": "log(p * n_runners)", "p_value", "distance",
        "threshold", "is_drift", "n_reference", "n_current", "reference_median",
        "current_median"}`` (medians of the tested value).

    Raises:
        KeyError: If a column is missing.
        ValueError: If a frame has no probability or ``p_val`` is not in (0, 1).
    """
    from alibi_detect.cd import KSDrift

    _check_p_val(p_val)
    _require_columns(reference, [race_col, p_col], "reference prediction")
    reference = sample_races(reference, max_reference, seed, race_col)
    ref = _relative_log_probability(reference, p_col, race_col)
    cur = _relative_log_probability(current, p_col, race_col)
    if len(ref) == 0 or len(cur) == 0:
        raise ValueError(
            f"prediction drift needs probabilities in both frames "
            f"(reference {len(ref)}, current {len(cur)} rows with a finite '{p_col}')"
        )
    detector = KSDrift(ref.reshape(-1, 1), p_val=p_val)
    data = detector.predict(cur.reshape(-1, 1))["data"]
    p_value = float(np.asarray(data["p_val"], dtype=float)[0])
    result = {
        "test": "ks",
        "value": "log(p * n_runners)",
        "p_value": p_value,
        "distance": float(np.asarray(data["distance"], dtype=float)[0]),
        "threshold": float(p_val),
        "is_drift": bool(p_value < p_val),
        "n_reference": int(len(ref)),
        "n_current": int(len(cur)),
        "reference_median": float(np.median(ref)),
        "current_median": float(np.median(cur)),
    }
    logger.info(
        "prediction drift: KS p=%.3g (distance %.3f) on %d vs %d runners",
        result["p_value"],
        result["distance"],
        result["n_reference"],
        result["n_current"],
    )
    return result
