"""Small vectorised column helpers shared by entity frames, state tables and the transform.

Required-column checks, UTC nanoseconds and epoch seconds, floats, and the derived
keys and slots the feature views group by: track key, going group
(:data:`GOING_GROUP_MAP`, keywords for unlisted descriptions), distance band, surface
slot, draw range, category codes, and the shrunk rate every win rate uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from racecast.features.specs import (
    DISTANCE_BAND_EDGES_M,
    DISTANCE_BANDS,
    DRAW_RANGES,
    SURFACE_SLOTS,
)

# Going descriptions -> going group. Unlisted descriptions fall back to keywords.
GOING_GROUP_MAP: dict[str, str] = {
    "hard": "firm",
    "firm": "firm",
    "good to firm": "firm",
    "fast": "firm",
    "standard to fast": "firm",
    "good": "good",
    "standard": "good",
    "wet fast": "good",
    "good to soft": "soft",
    "good to yielding": "soft",
    "yielding": "soft",
    "yielding to soft": "soft",
    "soft": "soft",
    "soft to heavy": "soft",
    "heavy": "soft",
    "standard to slow": "soft",
    "slow": "soft",
    "wet slow": "soft",
    "muddy": "soft",
    "sloppy": "soft",
}
_GOING_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("soft", r"heavy|soft|yield|slow|mud|slop"),
    ("firm", r"firm|fast|hard"),
    ("good", r"good|standard"),
)


def require_columns(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], table: str) -> None:
    """Raise if ``frame`` lacks any of ``columns``.

    Args:
        frame: Frame to check.
        columns: Required column names.
        table: Name used in the error message (e.g. ``"runners"``).

    Raises:
        KeyError: Naming the table and every missing column.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{table}: missing required column(s) {missing}")


_UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def utc_ns(values: pd.Series, column: str) -> pd.Series:
    """Return ``values`` as ``datetime64[ns, UTC]``.

    Args:
        values: Timestamps (tz-aware, naive UTC or ISO strings).
        column: Column name used in the error message.

    Returns:
        A new Series of UTC nanosecond timestamps.

    Raises:
        ValueError: If a value is null or cannot be parsed.
    """
    return pd.Series(utc_ns_array(values, column), index=values.index, name=values.name)


def utc_ns_array(values: pd.Series, column: str) -> pd.api.extensions.ExtensionArray:
    """:func:`utc_ns` as a new array (an entity frame's off times are only copied).

    Args:
        values: As for :func:`utc_ns`.
        column: As for :func:`utc_ns`.

    Returns:
        A new ``datetime64[ns, UTC]`` array aligned with ``values``.

    Raises:
        ValueError: If a value is null or cannot be parsed.
    """
    if values.dtype == _UTC_NS:  # already converted (an entity frame's off_time)
        out = values.array.copy()
    else:
        try:
            out = pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]").array
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{column}: cannot parse as UTC timestamps ({exc})") from exc
    missing = out.isna()
    if missing.any():
        raise ValueError(
            f"{column}: {int(missing.sum())} null timestamp(s); every race needs an off_time"
        )
    return out


def epoch_seconds(values: pd.Series) -> pd.Series:
    """Return timestamps as float seconds since 1970-01-01 UTC (NaT -> NaN).

    Args:
        values: tz-aware timestamps.

    Returns:
        Float Series aligned with ``values``.
    """
    return (pd.to_datetime(values, utc=True) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)


def as_float(values: pd.Series) -> pd.Series:
    """Return ``values`` as float64 with nulls as NaN (nullable dtypes included)."""
    return pd.to_numeric(values, errors="coerce").astype("float64")


def track_key(course: pd.Series, surface: pd.Series, distance_m: pd.Series) -> pd.Series:
    """Build the track entity key ``course|surface|distance`` (e.g. ``"ST|turf|1200"``).

    Args:
        course: Course codes (kept as given, stripped).
        surface: Surfaces (lower-cased).
        distance_m: Distances in metres (rounded to whole metres).

    Returns:
        A ``string`` Series aligned with ``course``; null where any part is null.
    """
    keys = track_keys(course.array, surface.array, distance_m.array)
    return pd.Series(keys, index=course.index, dtype="string", name="track_key")


def track_keys(course: Any, surface: Any, distance_m: Any) -> list[str | None]:
    """:func:`track_key` of array-likes, as a list (None where any part is null).

    Each distinct (course, surface, whole metres) is keyed once, so a request's race
    pays no pandas string operations and a training table pays one per track.
    """
    if not isinstance(getattr(distance_m, "dtype", None), pd.Int64Dtype):
        distance_m = pd.to_numeric(pd.Series(distance_m), errors="coerce").round().astype("Int64")
    parts = zip(
        _string_values(course), _string_values(surface), list(distance_m), strict=True
    )
    known: dict[tuple[Any, Any, Any], str | None] = {}
    out = []
    for part in parts:
        key = known.get(part, _UNKEYED)
        if key is _UNKEYED:
            key = known[part] = _track_key_of(*part)
        out.append(key)
    return out


_UNKEYED = object()


def _track_key_of(course: Any, surface: Any, metres: Any) -> str | None:
    """One track key of typed parts (``str`` or NA, ``str`` or NA, ``int`` or NA)."""
    if course is pd.NA or surface is pd.NA or metres is pd.NA:
        return None
    return f"{course.strip()}|{surface.strip().lower()}|{metres}"


def _string_values(values: Any) -> list[Any]:
    """Values as the ``string`` dtype gives them: ``str`` or ``pd.NA``."""
    if isinstance(values, pd.arrays.StringArray) and values.dtype == "string":
        return values.tolist()
    return pd.array(values, dtype="string").tolist()


def going_group(going: pd.Series) -> pd.Series:
    """Map going descriptions onto the groups ``firm``, ``good`` and ``soft``.

    Known descriptions use ``GOING_GROUP_MAP``; others fall back to keywords
    (heavy/soft/yielding/slow -> soft, firm/fast/hard -> firm, good/standard -> good).

    Args:
        going: Going descriptions in any case (e.g. ``"GOOD TO FIRM"``).

    Returns:
        A ``string`` Series of groups, null where the going is null or unrecognised.
    """
    # Classify each distinct description once; code -1 (null) picks the trailing NA.
    codes, uniques = pd.factorize(going.astype("string"), use_na_sentinel=True)
    norm = (
        pd.Series(uniques, dtype="string")
        .str.lower()
        .str.strip()
        .str.replace(r"\s+", " ", regex=True)
    )
    mapped = norm.map(GOING_GROUP_MAP, na_action="ignore")
    conditions = [
        norm.str.contains(pattern, regex=True).fillna(False).to_numpy(bool)
        for _, pattern in _GOING_KEYWORDS
    ]
    fallback = np.select(conditions, [group for group, _ in _GOING_KEYWORDS], default="")
    groups = mapped.where(mapped.notna(), pd.Series(fallback, index=norm.index).replace("", pd.NA))
    table = np.append(groups.astype(object).to_numpy(), pd.NA)
    return pd.Series(table[codes], index=going.index, dtype="string")


def distance_band(distance_m: pd.Series) -> pd.Series:
    """Map distances onto ``DISTANCE_BANDS`` (<=1200, 1201-1600, 1601-2000, >2000 m).

    Args:
        distance_m: Distances in metres.

    Returns:
        A ``string`` Series of band names, null where the distance is null.
    """
    edges = [-np.inf, *DISTANCE_BAND_EDGES_M, np.inf]
    bands = pd.cut(as_float(distance_m), bins=edges, labels=list(DISTANCE_BANDS), right=True)
    return pd.Series(bands, index=distance_m.index).astype("string")


def surface_slot(surface: pd.Series) -> pd.Series:
    """Normalise surfaces onto ``SURFACE_SLOTS`` (``all-weather`` -> ``allweather``).

    Args:
        surface: Surface names.

    Returns:
        A ``string`` Series, null where the surface is null or not a known slot.
    """
    norm = surface.astype("string").str.lower().str.replace(r"[^a-z]", "", regex=True)
    return norm.where(norm.isin(SURFACE_SLOTS)).astype("string")


def draw_range(draw: pd.Series, field_size: pd.Series) -> pd.Series:
    """Place a draw in the low, mid or high third of the field.

    ``third = clip(ceil(3 * draw / field_size), 1, 3)``: with 12 runners draws 1-4 are
    low, 5-8 mid and 9-12 high; draws above the field size count as high.

    Args:
        draw: Stall numbers.
        field_size: Active runners in the race.

    Returns:
        A ``string`` Series of ``DRAW_RANGES`` names, null where either input is null.
    """
    d = as_float(draw)
    n = as_float(field_size).where(lambda s: s > 0)
    third = np.ceil(3.0 * d / n).clip(1, 3).fillna(0).astype(np.int64).to_numpy()
    table = np.array([pd.NA, *DRAW_RANGES], dtype=object)
    return pd.Series(table[third], index=draw.index, dtype="string")


def category_codes(values: pd.Series, categories: tuple[str, ...] | list[str]) -> np.ndarray:
    """Return the position of each value in ``categories`` (-1 for null or unknown).

    Args:
        values: Category labels.
        categories: Allowed labels, in slot order.

    Returns:
        An int array aligned with ``values``.
    """
    return pd.Categorical(
        values.astype("object").where(values.notna(), None), categories=list(categories)
    ).codes.astype(np.int64)


def shrunk_rate(successes: pd.Series, trials: pd.Series, k: float, prior: float) -> pd.Series:
    """Return ``(successes + k * prior) / (trials + k)`` (empirical-Bayes shrinkage).

    Args:
        successes: Wins or places.
        trials: Runs.
        k: Prior strength in pseudo-runs.
        prior: Prior rate.

    Returns:
        Float Series; NaN where either input is NaN.
    """
    return (as_float(successes) + k * prior) / (as_float(trials) + k)
