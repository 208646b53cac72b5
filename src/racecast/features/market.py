"""The market's win probability from final decimal odds: the one implementation.

``p_i = (1 / odds_i) / sum over the race of (1 / odds_j)``. Every layer uses it: the
``mkt_*`` features (:mod:`racecast.features.transform`), the protocol's ``market``
(:func:`racecast.evaluation.metrics.market_probability`) and the inference bundle.
Per-race sums are taken in row order with Kahan compensation, exactly as pandas'
``groupby().sum()`` does, so the array and frame paths give the same bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["market_probabilities", "race_sums"]


def race_sums(values: np.ndarray, codes: np.ndarray, n_races: int) -> np.ndarray:
    """Per-race sums of ``values`` (NaN skipped), bit for bit as pandas' groupby sum.

    pandas adds a group's values in row order with Kahan compensation; this does the same
    (a plain ``np.bincount`` can differ in the last bit).

    Args:
        values: One float per row.
        codes: Race code (0 .. n_races - 1) per row.
        n_races: Number of races.

    Returns:
        One sum per race code.
    """
    sums = [0.0] * n_races
    carry = [0.0] * n_races
    for value, code in zip(values.tolist(), codes.tolist(), strict=True):
        if value != value:  # NaN
            continue
        step = value - carry[code]
        total = sums[code] + step
        carry[code] = total - sums[code] - step
        if carry[code] != carry[code]:  # inf - inf: pandas resets the compensation
            carry[code] = 0.0
        sums[code] = total
    return np.asarray(sums, dtype=np.float64)


def market_probabilities(
    odds: np.ndarray,
    codes: np.ndarray,
    n_races: int,
    *,
    partial: bool = False,
    invalid: str = "raise",
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ``1 / odds`` per race, and the race's book (sum of ``1 / odds``) per row.

    Args:
        odds: Final decimal odds per runner (stake included; NaN: not priced).
        codes: Race code (0 .. n_races - 1) per runner; -1 (no race) gives NaN.
        n_races: Number of races.
        partial: False (the protocol's market): every runner of a race where any runner
            lacks odds gets NaN. True (the features): the priced runners are normalised
            among themselves.
        invalid: ``"raise"``: odds below 1 raise; ``"nan"``: they count as not priced.

    Returns:
        ``(p, book)`` per runner.

    Raises:
        ValueError: If ``invalid="raise"`` and an odds value is below 1, or ``invalid``
            is neither value.
    """
    odds = np.asarray(odds, dtype=np.float64)
    codes = np.asarray(codes)
    if invalid not in ("raise", "nan"):
        raise ValueError(f"invalid must be 'raise' or 'nan', got {invalid!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        below = odds < 1.0
        if below.any():
            if invalid == "raise":
                raise ValueError(
                    "column 'odds_final' has decimal odds below 1 (odds include the stake)"
                )
            odds = np.where(below, np.nan, odds)
        known = codes >= 0
        every = bool(known.all())  # the usual case: no mask to apply
        safe = codes if every else np.where(known, codes, 0)
        inverse = 1.0 / odds if every else np.where(known, 1.0 / odds, np.nan)
        book = race_sums(inverse, safe, n_races)[safe]
        p = inverse / book
    if not partial:
        missing = np.bincount(safe[known], weights=np.isnan(odds[known]), minlength=n_races) > 0
        p[missing[safe]] = np.nan
    if every:
        return p, book
    p[~known] = np.nan
    return p, np.where(known, book, np.nan)
