"""The shared request-time transform: racecard context + joined state -> model features.

Training (after Feast ``get_historical_features``) and online inference (after
``get_online_features``) call the same ``build_features``. Everything that depends on
THIS race's conditions (days since the last run, distance change, record at this
distance/going/course, the draw bias of this draw, race-relative ranks) is computed here
from the entities' latest state strictly before the off plus the racecard context. Rows
only interact with rows of the same race, so scoring one race alone gives the same
numbers as scoring it among others.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.frames import FrameLayout, frame_from_columns
from racecast.features.columnar import (
    SMALL,
    classify,
    codes_by_race,
    float_arrays,
    float_column,
    group_means,
    group_ranks,
    is_null,
    object_column,
    pick,
)
from racecast.features.columns import (
    as_float,
    category_codes,
    going_group,
    require_columns,
    surface_slot,
    utc_ns,
    utc_ns_array,
)
from racecast.features.market import market_probabilities
from racecast.features.specs import (
    CONTEXT_COLUMNS,
    DEBUT_FLAG,
    DISTANCE_BAND_EDGES_M,
    DRAW_SLOTS,
    FUNDAMENTAL_FEATURES,
    GOING_GROUPS,
    KEY_COLUMNS,
    MARKET_FEATURES,
    RELATIVE_COLUMNS,
    SURFACE_SLOTS,
    VIEWS,
    WINDOWS_DAYS,
    all_state_features,
    draw_bias_columns,
    resolve_params,
    suitability_columns,
)

logger = logging.getLogger(__name__)

FEMALE_SEXES = frozenset({"mare", "filly", "m", "f"})
ENTIRE_SEXES = frozenset({"horse", "colt", "rig", "stallion", "entire", "h", "c", "r"})
KNOWN_SEXES = FEMALE_SEXES | ENTIRE_SEXES | {"gelding", "g"}
NO_GEAR = frozenset({"", "-", "--", "none", "nil", "no"})
SECONDS_PER_DAY = 86400.0


# --------------------------------------------------------------------------------------
# Array helpers: the transform works on numpy arrays (``racecast.features.columnar``) so
# that one race (serving) costs microseconds per feature while 80k runners (training)
# stay vectorised.
# --------------------------------------------------------------------------------------

#: Inputs up to this many rows (a race or two, the serving case) take the small paths.
_SMALL = SMALL


def _relative_arrays(
    values: Mapping[str, np.ndarray], columns: list[str], codes: np.ndarray, n_groups: int
) -> dict[str, np.ndarray]:
    """``c_rel`` (minus the race mean) and ``c_rank`` (descending) for every column."""
    matrix = np.column_stack([values[col] for col in columns])
    means = group_means(matrix, codes, n_groups)
    ranks = group_ranks(matrix, codes, ascending=False)
    out: dict[str, np.ndarray] = {}
    for j, col in enumerate(columns):
        out[f"{col}_rel"] = matrix[:, j] - means[:, j]
        out[f"{col}_rank"] = ranks[:, j]
    return out


def _market_arrays(odds: np.ndarray, codes: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """The market features from decimal odds (invalid odds < 1 -> NaN)."""
    prob, book = market_probabilities(odds, codes, n_groups, partial=True, invalid="nan")
    with np.errstate(invalid="ignore"):
        valid = np.where(odds >= 1.0, odds, np.nan)
    with np.errstate(divide="ignore"):
        return {
            "mkt_log_prob": np.log(prob),
            "mkt_odds_rank": group_ranks(valid[:, None], codes, ascending=True)[:, 0],
            "mkt_norm_odds": valid * book,
        }


# --------------------------------------------------------------------------------------
# Race-relative and market features (frame API)
# --------------------------------------------------------------------------------------


def race_relative(frame: pd.DataFrame, columns: list[str], group: str = "race_id") -> pd.DataFrame:
    """Compare runners within their race.

    For every column ``c``: ``c_rel`` = value minus the race mean (NaN ignored in the
    mean; NaN stays NaN) and ``c_rank`` = rank within the race, always DESCENDING
    (1 = highest value, ties share the lowest rank, NaN unranked). For "lower is better"
    columns (e.g. ``h_ewm_rel_pos``) rank 1 is therefore the worst runner.

    Args:
        frame: Rows of one or more races.
        columns: Numeric columns to compare.
        group: Race identifier column.

    Returns:
        A new frame aligned with ``frame`` with ``c_rel``, ``c_rank`` per column, in order.
    """
    require_columns(frame, [group, *columns], "race_relative input")
    codes, n_groups = codes_by_race(object_column(frame[group]), f"column {group!r}")
    values = {col: float_column(frame[col]) for col in columns}
    out = _relative_arrays(values, columns, codes, n_groups)
    return pd.DataFrame(out, index=frame.index)


def market_features(context: pd.DataFrame) -> pd.DataFrame:
    """Odds-derived features, kept apart from the fundamental track.

    ``mkt_log_prob`` = log of ``(1/odds) / sum over the race of (1/odds)``;
    ``mkt_odds_rank`` = rank of the odds within the race (1 = favourite, ties share the
    lowest rank); ``mkt_norm_odds`` = ``odds * sum(1/odds)`` = ``1 / market probability``
    (the odds with the overround removed). The race sum runs over runners with valid
    odds (>= 1.0); a runner without odds gets NaN.

    Args:
        context: Rows with ``race_id`` and ``odds_final``.

    Returns:
        A new frame aligned with ``context`` with ``MARKET_FEATURES``.
    """
    require_columns(context, ["race_id", "odds_final"], "market context")
    codes, n_groups = codes_by_race(object_column(context["race_id"]), "column 'race_id'")
    out = _market_arrays(float_column(context["odds_final"]), codes, n_groups)
    return pd.DataFrame(out, index=context.index)[MARKET_FEATURES]


# --------------------------------------------------------------------------------------
# Helpers for the fundamental features (arrays in, arrays out)
# --------------------------------------------------------------------------------------


def _record_at_course(record: Any, course: Any) -> tuple[np.ndarray, np.ndarray]:
    """Runs and wins at this course from ``h_course_record`` text (NaN if no record).

    The record is ``"ST=5/1;HV=3/0"``; the entry of this course is found with numpy's
    element-wise string partition (no row loop). A known record without this course, or
    a malformed entry, counts 0 runs and 0 wins. ``record`` and ``course``: Series or
    object arrays.
    """
    if len(record) <= _SMALL:
        return _record_at_course_small(record, course)
    record = pd.Series(object_column(record), dtype=object)
    course = pd.Series(object_column(course), dtype=object)
    known = record.notna().to_numpy(bool)
    here = course.astype("string").str.strip()
    course_known = here.notna().to_numpy(bool)
    text = np.char.add(";", record.astype("string").fillna("").to_numpy(dtype=str))
    key = np.char.add(np.char.add(";", here.fillna("").to_numpy(dtype=str)), "=")
    entry = np.char.partition(np.char.partition(text, key)[:, 2], ";")[:, 0]
    parts = np.char.partition(entry, "/")
    runs = pd.to_numeric(pd.Series(parts[:, 0]), errors="coerce").to_numpy(np.float64)
    wins = pd.to_numeric(pd.Series(parts[:, 2]), errors="coerce").to_numpy(np.float64)
    valid = ~np.isnan(runs) & ~np.isnan(wins) & course_known
    runs = np.where(valid, runs, 0.0)
    wins = np.where(valid, wins, 0.0)
    return np.where(known, runs, np.nan), np.where(known, wins, np.nan)


def _record_at_course_small(record: Any, course: Any) -> tuple[np.ndarray, np.ndarray]:
    """``_record_at_course`` for a few runners: the same partitions with ``str`` methods."""
    runs: list[float] = []
    wins: list[float] = []
    for text, here in zip(
        object_column(record).tolist(), object_column(course).tolist(), strict=True
    ):
        if is_null(text):
            runs.append(np.nan)
            wins.append(np.nan)
            continue
        number_runs = number_wins = np.nan
        if not is_null(here):
            tail = f";{text}".partition(f";{str(here).strip()}=")[2]
            entry_runs, _, entry_wins = tail.partition(";")[0].partition("/")
            number_runs, number_wins = _to_number(entry_runs), _to_number(entry_wins)
        valid = number_runs == number_runs and number_wins == number_wins  # neither NaN
        runs.append(number_runs if valid else 0.0)
        wins.append(number_wins if valid else 0.0)
    return np.asarray(runs, dtype=np.float64), np.asarray(wins, dtype=np.float64)


def _to_number(text: str) -> float:
    """``float(text)``, NaN when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return np.nan


@functools.lru_cache(maxsize=4096)
def _normalised_gear(gear: str | None) -> str | None:
    """Upper-case gear without spaces; every 'no gear' spelling becomes ''."""
    if gear is None or gear is pd.NA or (isinstance(gear, float) and np.isnan(gear)):
        return None
    norm = re.sub(r"\s+", "", str(gear).upper())
    return "" if norm.lower() in NO_GEAR else norm


def _gear_features(
    gear_now: np.ndarray, gear_last: np.ndarray, debut: np.ndarray
) -> dict[str, np.ndarray]:
    """``first_time_gear`` (gear now, none last run) and ``gear_changed`` (0/1, NaN if unknown)."""
    now = classify(gear_now, _normalised_gear)
    last = classify(gear_last, _normalised_gear)
    now_known = np.not_equal(now, None)
    last_known = np.not_equal(last, None)
    known = now_known & last_known & ~debut
    first = (np.not_equal(now, "") & np.equal(last, "")).astype(np.float64)
    changed = np.not_equal(now, last).astype(np.float64)
    return {
        "first_time_gear": np.where(known, first, np.nan),
        "gear_changed": np.where(known, changed, np.nan),
    }


@functools.lru_cache(maxsize=256)
def _sex_flag_pair(sex: str | None) -> tuple[float, float]:
    """``(female, entire)`` flags of one sex description (NaN, NaN when unknown)."""
    if sex is None or sex is pd.NA or (isinstance(sex, float) and np.isnan(sex)):
        return (np.nan, np.nan)
    norm = str(sex).lower().strip()
    if norm not in KNOWN_SEXES:
        return (np.nan, np.nan)
    return (float(norm in FEMALE_SEXES), float(norm in ENTIRE_SEXES))


def _sex_flags(sex: np.ndarray) -> dict[str, np.ndarray]:
    """``sex_female`` and ``sex_entire`` (0/1; NaN when the sex is unknown)."""
    pairs = classify(sex, _sex_flag_pair)
    flags = np.array([*pairs], dtype=np.float64).reshape(len(sex), 2)
    return {"sex_female": flags[:, 0], "sex_entire": flags[:, 1]}


@functools.lru_cache(maxsize=1024)
def _going_slot(going: str | None) -> int:
    """Slot of a going description in ``GOING_GROUPS`` (-1 for null or unrecognised)."""
    group = going_group(pd.Series([going], dtype="string"))
    return int(category_codes(group, GOING_GROUPS)[0])


@functools.lru_cache(maxsize=256)
def _surface_slot(surface: str | None) -> int:
    """Slot of a surface in ``SURFACE_SLOTS`` (-1 for null or unknown)."""
    slot = surface_slot(pd.Series([surface], dtype="string"))
    return int(category_codes(slot, SURFACE_SLOTS)[0])


def _slot_codes(values: np.ndarray, classifier: Any) -> np.ndarray:
    """Integer slots of a categorical context column, classified once per distinct value."""
    return classify(values, classifier).astype(np.int64)


def _distance_slot(distance_m: np.ndarray) -> np.ndarray:
    """Slot in ``DISTANCE_BANDS`` (bands closed on the right, like ``distance_band``)."""
    edges = np.asarray(DISTANCE_BAND_EDGES_M, dtype=np.float64)
    slot = np.searchsorted(edges, distance_m, side="left")
    return np.where(np.isnan(distance_m), -1, slot).astype(np.int64)


def _draw_slot(draw: np.ndarray, n_runners: np.ndarray) -> np.ndarray:
    """Slot in ``DRAW_RANGES``: ``clip(ceil(3 * draw / field_size), 1, 3) - 1``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        third = np.ceil(3.0 * draw / np.where(n_runners > 0, n_runners, np.nan))
    third = np.minimum(np.maximum(third, 1.0), 3.0)  # np.clip, without its overhead
    return np.where(np.isnan(third), -1, third - 1).astype(np.int64)


def _shrunk(wins: np.ndarray, runs: np.ndarray, k: float, prior: float) -> np.ndarray:
    """``(wins + k * prior) / (runs + k)``; NaN where either input is NaN."""
    return (wins + k * prior) / (runs + k)


def _suitability(
    ctx: dict[str, np.ndarray],
    course_record: np.ndarray,
    st: dict[str, np.ndarray],
    p: dict[str, Any],
) -> dict[str, np.ndarray]:
    """The horse's record under THIS race's distance band, going, surface, course, draw range."""
    slots = {
        "dist": _distance_slot(ctx["distance_m"]),
        "going": _slot_codes(ctx["going"], _going_slot),
        "surf": _slot_codes(ctx["surface"], _surface_slot),
        "draw": _draw_slot(ctx["draw"], ctx["n_runners"]),
    }
    columns, starts = _suitability_columns()
    # one table of every family's runs and wins columns: each runner's pick per family
    slot = np.column_stack(list(slots.values()))
    position = np.where(slot >= 0, starts + 2 * slot, -1)
    runs = pick(st, columns, position)
    wins = pick(st, columns, np.where(position >= 0, position + 1, -1))
    rates = _shrunk(wins, runs, p["horse_k"], p["win_prior"])
    names = {"dist": "dist", "going": "going", "surf": "surface", "draw": "draw_range"}
    out: dict[str, np.ndarray] = {}
    for j, kind in enumerate(slots):
        out[f"{names[kind]}_runs"] = runs[:, j]
        out[f"{names[kind]}_win_rate"] = rates[:, j]
    runs, wins = _record_at_course(course_record, ctx["course"])
    out["course_runs"] = runs
    out["course_win_rate"] = _shrunk(wins, runs, p["horse_k"], p["win_prior"])
    out["going_code"] = np.where(slots["going"] >= 0, slots["going"], np.nan)
    return out


@functools.lru_cache(maxsize=1)
def _suitability_columns() -> tuple[list[str], np.ndarray]:
    """Every suitability family's runs and wins columns, interleaved (runs of category c
    at ``start + 2c``, its wins next), and the start of each family (dist, going, surf,
    draw)."""
    columns: list[str] = []
    starts = []
    for kind in ("dist", "going", "surf", "draw"):
        starts.append(len(columns))
        for runs, wins in zip(*suitability_columns(kind), strict=True):
            columns += [runs, wins]
    return columns, np.asarray(starts, dtype=np.int64)


def _pair_features(
    ctx: dict[str, np.ndarray], st: dict[str, np.ndarray], p: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Pair history; a pair with both keys known but no earlier state has 0 runs together."""
    out: dict[str, np.ndarray] = {}
    known = {k: ~pd.isna(ctx[k]) for k in ("horse_id", "jockey_id", "trainer_id")}
    for prefix, (a, b) in (("jt", ("jockey_id", "trainer_id")), ("hj", ("horse_id", "jockey_id"))):
        keys_known = np.asarray(known[a] & known[b], dtype=bool)
        runs = st[f"{prefix}_runs"]
        wins = st[f"{prefix}_wins"]
        runs = np.where(np.isnan(runs) & keys_known, 0.0, runs)
        wins = np.where(np.isnan(wins) & keys_known, 0.0, wins)
        out[f"{prefix}_runs"] = runs
        out[f"{prefix}_win_rate"] = _shrunk(wins, runs, p["pair_k"], p["win_prior"])
    return out


def _draw_bias(draw: np.ndarray, st: dict[str, np.ndarray]) -> np.ndarray:
    """The track-profile draw bias of this runner's draw (draws >= 16 share slot 16)."""
    slot = np.minimum(draw, DRAW_SLOTS) - 1
    slot = np.where(np.isnan(slot) | (slot < 0), -1, slot).astype(np.int64)
    return pick(st, draw_bias_columns(), slot)


def _handicap_features(feats: dict[str, np.ndarray], p: dict[str, Any]) -> dict[str, np.ndarray]:
    """How the horse is handicapped today, from its recent performance ratings.

    ``pr_vs_rating = h_mean3_pr - rating`` (ran above its mark when positive) and
    ``pr_weight_adv = pr_vs_rating - pr_units_per_kg * (weight - race mean weight)``
    (the same after today's weight relative to the field: ``weight_carried_kg_rel``,
    a relative column).
    """
    vs_rating = feats["h_mean3_pr"] - feats["rating"]
    extra = feats["weight_carried_kg_rel"]
    return {
        "pr_vs_rating": vs_rating,
        "pr_weight_adv": vs_rating - p["pr_units_per_kg"] * extra,
    }


# --------------------------------------------------------------------------------------
# Public transform
# --------------------------------------------------------------------------------------

_HORSE_PASSTHROUGH = [
    "h_runs",
    "h_wins",
    "h_places",
    "h_win_rate",
    "h_place_rate",
    "h_avg_rel_pos",
    "h_last_rel_pos",
    "h_ewm_rel_pos",
    "h_trend",
    "h_best_fig",
    "h_last_fig",
    "h_mean3_fig",
    "h_early_pos",
    "h_class_perf",
    "h_last_pr",
    "h_mean3_pr",
    "h_best5_pr",
]
_CONNECTION_PASSTHROUGH = [
    f"{prefix}_{name}"
    for prefix in ("j", "t")
    for name in ["win_rate", *[f"rate_{d}d" for d in WINDOWS_DAYS], "runs_365d", "recent_rel_pos"]
] + ["trk_races"]
_CONTEXT_NUMERIC = [
    "draw",
    "age",
    "weight_carried_kg",
    "body_weight_kg",
    "rating",
    "n_runners",
    "distance_m",
    "race_class",
]
_CHANGES = {
    "distance_change": ("distance_m", "h_last_distance"),
    "class_change": ("race_class", "h_last_class"),
    "weight_change": ("weight_carried_kg", "h_last_weight"),
    "body_weight_change": ("body_weight_kg", "h_last_body_weight"),
    "rating_change": ("rating", "h_last_rating"),
}
_CONTEXT_TEXT = [
    *("race_id", "horse_id", "jockey_id", "trainer_id"),
    *("course", "surface", "going", "sex", "gear"),
]
_STATE_STRINGS = frozenset({"h_course_record", "h_last_gear"})


#: Every state feature the transform reads as a number.
_NUMERIC_STATE = tuple(c for c in all_state_features() if c not in _STATE_STRINGS)


def build_features(
    context: pd.DataFrame, state: pd.DataFrame, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Turn racecard context + joined entity state into the model features.

    Works on numpy arrays column by column, so training (the Hong Kong training set in
    about a second) and serving share it: the state frame's columns go to
    :func:`build_features_from_state`, the one implementation of the transform.

    Args:
        context: ``entity_frame`` rows (``CONTEXT_COLUMNS``; labels are ignored).
        state: Index-aligned joined state: every feature of every view (NaN where the
            entity has no earlier state), e.g. from ``point_in_time_join`` or Feast.
        params: Overrides of ``specs.DEFAULT_PARAMS`` (shrinkage of the picked records).

    Returns:
        A new frame aligned with ``context``: ``KEY_COLUMNS`` + ``FUNDAMENTAL_FEATURES``
        + ``MARKET_FEATURES``. Debutants (no horse state) get NaN horse features and
        ``is_debut = 1``.

    Raises:
        KeyError: If a context column or a state feature is missing.
        ValueError: If ``context`` and ``state`` are not index-aligned.
    """
    require_columns(state, all_state_features(), "joined state")
    if not context.index.equals(state.index):
        raise ValueError(
            "state: index must equal the context index (one joined state row per context row)"
        )
    numeric = float_arrays(state, list(_NUMERIC_STATE))
    return build_features_from_state(
        context, numeric, {c: state[c] for c in _STATE_STRINGS}, params
    )


def build_features_from_state(
    context: pd.DataFrame,
    numeric: Mapping[str, np.ndarray],
    text: Mapping[str, Any],
    params: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """:func:`build_features` with the joined state given as columns, not as a frame.

    The transform itself: :func:`build_features` calls it with its state frame's columns,
    serving with the online reader's decoded arrays (no state frame is built).

    Args:
        context: As for :func:`build_features`.
        numeric: Numeric state feature -> float64 array aligned with ``context`` (NaN: none).
        text: ``h_course_record``, ``h_last_gear`` -> Series or object array (None: none).
        params: As for :func:`build_features`.

    Returns:
        As :func:`build_features`.

    Raises:
        KeyError: If a context column or a state feature is missing.
        ValueError: If a state column's length differs from ``context``'s.
    """
    p = resolve_params(params)
    require_columns(context, CONTEXT_COLUMNS, "context")
    missing = [c for c in _NUMERIC_STATE if c not in numeric]
    missing += [c for c in sorted(_STATE_STRINGS) if c not in text]
    if missing:
        raise KeyError(f"joined state lacks columns {missing[:10]}")
    st = {c: np.asarray(numeric[c], dtype=np.float64) for c in _NUMERIC_STATE}
    strings = {c: object_column(text[c]) for c in _STATE_STRINGS}
    n = len(context)
    wrong = [c for c, v in (*st.items(), *strings.items()) if len(v) != n]
    if wrong:
        raise ValueError(f"state: columns {wrong[:10]} do not have one value per context row")
    off_time = utc_ns_array(context["off_time"], "context.off_time")
    off_ts = off_time.asi8 / 1e9  # epoch nanoseconds (UTC) -> seconds
    # the context frame taken apart once: numbers as float64, text as object arrays
    ctx = {c: float_column(context[c]) for c in (*_CONTEXT_NUMERIC, "odds_final")}
    ctx.update((c, object_column(context[c])) for c in _CONTEXT_TEXT)
    h_runs = st["h_runs"]
    debut = np.isnan(h_runs) | (h_runs == 0)

    feats: dict[str, np.ndarray] = {c: ctx[c] for c in _CONTEXT_NUMERIC}
    with np.errstate(invalid="ignore", divide="ignore"):
        feats["draw_frac"] = ctx["draw"] / np.where(ctx["n_runners"] > 0, ctx["n_runners"], np.nan)
    feats.update(_sex_flags(ctx["sex"]))
    for col in _HORSE_PASSTHROUGH:
        feats[col] = np.where(debut, np.nan, st[col])
    feats["days_since_last_run"] = (off_ts - st["h_last_off_ts"]) / SECONDS_PER_DAY
    feats.update(_suitability(ctx, strings["h_course_record"], st, p))
    for name, (now, last) in _CHANGES.items():
        feats[name] = ctx[now] - st[last]
    feats.update(_gear_features(ctx["gear"], strings["h_last_gear"], debut))
    for col in _CONNECTION_PASSTHROUGH:
        feats[col] = st[col]
    feats.update(_pair_features(ctx, st, p))
    feats["draw_bias"] = _draw_bias(ctx["draw"], st)
    codes, n_races = codes_by_race(ctx["race_id"], "column 'race_id'")
    feats.update(_relative_arrays(feats, RELATIVE_COLUMNS, codes, n_races))
    feats.update(_handicap_features(feats, p))
    feats.update(_market_arrays(ctx["odds_final"], codes, n_races))

    keys = {c: off_time if c == "off_time" else context[c].array for c in KEY_COLUMNS}
    return frame_from_columns(_output_layout(), context.index, keys, feats, debut)


@functools.lru_cache(maxsize=1)
def _output_layout() -> FrameLayout:
    """``build_features``' columns: ``KEY_COLUMNS``, then every feature (float64 but the
    int flag ``is_debut``)."""
    features = FUNDAMENTAL_FEATURES + MARKET_FEATURES
    floats = [c for c in features if c != DEBUT_FLAG]
    return FrameLayout.of(KEY_COLUMNS, floats, DEBUT_FLAG, [*KEY_COLUMNS, *features])


def _joint_codes(
    left: pd.DataFrame, right: pd.DataFrame, keys: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """One integer code per key tuple, shared by both frames (-1 where any key is null)."""
    both = pd.concat([left[keys], right[keys]], ignore_index=True).astype("string")
    codes = both.groupby(keys, sort=False, dropna=True).ngroup().fillna(-1).to_numpy(np.int64)
    return codes[: len(left)], codes[len(left) :]


def _asof_view(
    off_time: pd.Series,
    context: pd.DataFrame,
    table: pd.DataFrame,
    name: str,
    ttl: pd.Timedelta | None,
) -> pd.DataFrame:
    """Latest state row of one view with ``off_time - ttl <= event_timestamp <= off_time``."""
    spec = VIEWS[name]
    keys = list(spec.entities)
    features = list(spec.features)
    require_columns(table, [*keys, "event_timestamp", *features], f"state table {name}")
    left_code, right_code = _joint_codes(context, table, keys)
    left = pd.DataFrame({"_key": left_code, "_ts": off_time.array, "_row": np.arange(len(context))})
    left = left.loc[left_code >= 0].sort_values("_ts", kind="stable")
    right = table[features].copy()
    right["_key"] = right_code
    right["event_timestamp"] = utc_ns(table["event_timestamp"], f"{name}.event_timestamp").array
    right = right.loc[right_code >= 0].sort_values("event_timestamp", kind="stable")
    joined = pd.merge_asof(
        left,
        right,
        left_on="_ts",
        right_on="event_timestamp",
        by="_key",
        direction="backward",
        allow_exact_matches=True,
        tolerance=ttl,
    )
    result = joined.set_index("_row")[features].reindex(np.arange(len(context)))
    for col, dtype in spec.features.items():
        result[col] = result[col].astype("string") if dtype == "string" else as_float(result[col])
    result.index = context.index
    return result


def point_in_time_join(
    context: pd.DataFrame,
    state_tables: dict[str, pd.DataFrame],
    ttl_days: float | None = None,
) -> pd.DataFrame:
    """Pure-pandas reference of Feast's point-in-time join.

    For every context row and every view, take the latest state row of the row's
    entity with ``event_timestamp <= off_time`` (``merge_asof`` by the view's keys).
    Rows with a null key, or no earlier state, get NaN for that view.

    Args:
        context: ``entity_frame`` rows (needs ``off_time`` and every entity key).
        state_tables: View name -> state table from ``build_state_tables``.
        ttl_days: Optional Feast TTL: state older than ``off_time - ttl_days`` is
            ignored. ``None`` (default) means no TTL.

    Returns:
        A new frame aligned with ``context``: the context columns followed by every
        view's features (in ``VIEWS`` order).

    Raises:
        KeyError: If a view's table or a key column is missing.
    """
    needed = sorted({k for spec in VIEWS.values() for k in spec.entities})
    require_columns(context, ["off_time", *needed], "context")
    missing = [name for name in VIEWS if name not in state_tables]
    if missing:
        raise KeyError(f"state_tables: missing view(s) {missing}")
    ttl = None if ttl_days is None else pd.Timedelta(days=float(ttl_days))
    off_time = utc_ns(context["off_time"], "context.off_time")
    parts = [_asof_view(off_time, context, state_tables[name], name, ttl) for name in VIEWS]
    return pd.concat([context, *parts], axis=1)
