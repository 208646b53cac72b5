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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.frames import FrameLayout, column_arrays, frame_from_columns
from racecast.features.columnar import (
    SMALL,
    ColumnMatrix,
    classify,
    codes_by_race,
    float_arrays,
    float_column,
    float_values,
    group_means,
    group_ranks,
    is_null,
    object_column,
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
    """The market features from decimal odds (invalid odds < 1 -> NaN; the caller
    ignores invalid and divide warnings)."""
    prob, book = market_probabilities(odds, codes, n_groups, partial=True, invalid="nan")
    valid = np.where(odds >= 1.0, odds, np.nan)
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
    with np.errstate(invalid="ignore", divide="ignore"):
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
    return np.where(np.isnan(distance_m), -1, slot)


def _draw_slot(draw: np.ndarray, n_runners: np.ndarray) -> np.ndarray:
    """Slot in ``DRAW_RANGES``: ``clip(ceil(3 * draw / field_size), 1, 3) - 1`` (the
    caller ignores invalid and divide warnings)."""
    third = np.ceil(3.0 * draw / np.where(n_runners > 0, n_runners, np.nan))
    third = np.minimum(np.maximum(third, 1.0), 3.0)  # np.clip, without its overhead
    return np.where(np.isnan(third), -1, third - 1)


def _shrunk(wins: np.ndarray, runs: np.ndarray, k: float, prior: float) -> np.ndarray:
    """``(wins + k * prior) / (runs + k)``; NaN where either input is NaN."""
    return (wins + k * prior) / (runs + k)


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
    serving with the online reader's decoded arrays (no state frame is built). The state,
    the context's numbers and the output are matrices (a row per feature), so each family
    of features is one numpy operation for a race as for the training set.

    Args:
        context: As for :func:`build_features`.
        numeric: Numeric state feature -> float64 array aligned with ``context`` (NaN:
            none); a :class:`~racecast.features.columnar.ColumnMatrix` (the online
            reader's) is gathered in one index.
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
    missing = [c for c in sorted(_STATE_STRINGS) if c not in text]
    n = len(context)
    state = _state_matrix(numeric, n, missing)
    strings = {c: object_column(text[c]) for c in _STATE_STRINGS}
    wrong = [c for c, v in strings.items() if len(v) != n]
    if wrong:
        raise ValueError(f"state: columns {wrong[:10]} do not have one value per context row")
    off_time = utc_ns_array(context["off_time"], "context.off_time")
    off_ts = off_time.asi8 / 1e9  # epoch nanoseconds (UTC) -> seconds
    # the context frame taken apart once: numbers as rows of a matrix, text as object arrays
    columns = column_arrays(context, _CONTEXT_USED)
    ctx = np.empty((len(_CONTEXT_FLOATS), n))
    for i, c in enumerate(_CONTEXT_FLOATS):
        ctx[i] = float_values(columns[c])
    ctx_text = {c: object_column(columns[c]) for c in _CONTEXT_TEXT}
    out = np.empty((len(_plan().out), n))
    with np.errstate(invalid="ignore", divide="ignore"):
        debut = _fundamentals(out, state, ctx, ctx_text, strings, off_ts, p)
    keys = {c: off_time if c == "off_time" else columns[c] for c in KEY_COLUMNS}
    return frame_from_columns(_output_layout(), context.index, keys, out, debut)


def _state_matrix(numeric: Mapping[str, np.ndarray], n: int, missing: list[str]) -> np.ndarray:
    """The numeric state as a (features + 1) x runners matrix in ``_NUMERIC_STATE``
    order, its last row NaN; ``missing`` names text columns already found missing."""
    missing = [c for c in _NUMERIC_STATE if c not in numeric] + missing
    if missing:
        raise KeyError(f"joined state lacks columns {missing[:10]}")
    state = np.empty((len(_NUMERIC_STATE) + 1, n))
    state[-1] = np.nan
    if isinstance(numeric, ColumnMatrix) and numeric.matrix.shape[1] == n:
        numeric.take(_NUMERIC_STATE, out=state[:-1])
        return state
    wrong = [c for c in _NUMERIC_STATE if len(numeric[c]) != n]
    if wrong:
        raise ValueError(f"state: columns {wrong[:10]} do not have one value per context row")
    for i, c in enumerate(_NUMERIC_STATE):
        state[i] = numeric[c]
    return state


#: The context's numbers the transform reads, and every context column it reads.
_CONTEXT_FLOATS = (*_CONTEXT_NUMERIC, "odds_final")
_CONTEXT_USED = tuple(dict.fromkeys((*_CONTEXT_FLOATS, *_CONTEXT_TEXT, *KEY_COLUMNS)))


@functools.lru_cache(maxsize=1)
def _output_layout() -> FrameLayout:
    """``build_features``' columns: ``KEY_COLUMNS``, then every feature (float64 but the
    int flag ``is_debut``)."""
    features = FUNDAMENTAL_FEATURES + MARKET_FEATURES
    floats = [c for c in features if c != DEBUT_FLAG]
    return FrameLayout.of(KEY_COLUMNS, floats, DEBUT_FLAG, [*KEY_COLUMNS, *features])


@dataclass(frozen=True)
class _Plan:
    """Where the transform reads and writes, resolved once: rows of the state matrix
    (its last row all NaN: the pick of "no slot"), of the context matrix and of the output
    matrix (``_output_layout().floats``), per family of features."""

    state: dict[str, int]
    out: dict[str, int]
    context: dict[str, int]
    horse: tuple[np.ndarray, np.ndarray]  # (state rows, output rows) of the passthroughs
    connection: tuple[np.ndarray, np.ndarray]
    context_out: tuple[np.ndarray, np.ndarray]
    changes: tuple[np.ndarray, np.ndarray, np.ndarray]  # context rows, state rows, output
    suit_starts: np.ndarray  # first category of each family in suit_runs / suit_wins
    suit_runs: np.ndarray  # state row per (family, category), then the NaN row
    suit_wins: np.ndarray
    suit_out: tuple[np.ndarray, np.ndarray]  # output rows of the runs and the win rates
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # runs, wins, out runs, rates
    draw_bias: np.ndarray  # state row per draw slot, then the NaN row
    relative: tuple[np.ndarray, np.ndarray, np.ndarray]  # output rows: values, _rel, _rank


@functools.lru_cache(maxsize=1)
def _plan() -> _Plan:
    state = {c: i for i, c in enumerate(_NUMERIC_STATE)}
    out = {c: i for i, c in enumerate(_output_layout().floats)}
    context = {c: i for i, c in enumerate(_CONTEXT_FLOATS)}
    nan_row = len(_NUMERIC_STATE)

    def rows(table: dict[str, int], names: Any) -> np.ndarray:
        return np.asarray([table[c] for c in names], dtype=np.intp)

    families = [suitability_columns(kind) for kind in ("dist", "going", "surf", "draw")]
    runs = [c for family_runs, _ in families for c in family_runs]
    wins = [c for _, family_wins in families for c in family_wins]
    starts = np.cumsum([0, *(len(r) for r, _ in families[:-1])])[:, None]
    suit = ("dist", "going", "surface", "draw_range")
    return _Plan(
        state=state,
        out=out,
        context=context,
        horse=(rows(state, _HORSE_PASSTHROUGH), rows(out, _HORSE_PASSTHROUGH)),
        connection=(rows(state, _CONNECTION_PASSTHROUGH), rows(out, _CONNECTION_PASSTHROUGH)),
        context_out=(rows(context, _CONTEXT_NUMERIC), rows(out, _CONTEXT_NUMERIC)),
        changes=(
            rows(context, [now for now, _ in _CHANGES.values()]),
            rows(state, [last for _, last in _CHANGES.values()]),
            rows(out, _CHANGES),
        ),
        suit_starts=starts.astype(np.intp),
        suit_runs=np.append(rows(state, runs), nan_row),
        suit_wins=np.append(rows(state, wins), nan_row),
        suit_out=(rows(out, [f"{s}_runs" for s in suit]), rows(out, [f"{s}_win_rate" for s in suit])),
        pairs=(
            rows(state, ["jt_runs", "hj_runs"]),
            rows(state, ["jt_wins", "hj_wins"]),
            rows(out, ["jt_runs", "hj_runs"]),
            rows(out, ["jt_win_rate", "hj_win_rate"]),
        ),
        draw_bias=np.append(rows(state, draw_bias_columns()), nan_row),
        relative=(
            rows(out, RELATIVE_COLUMNS),
            rows(out, [f"{c}_rel" for c in RELATIVE_COLUMNS]),
            rows(out, [f"{c}_rank" for c in RELATIVE_COLUMNS]),
        ),
    )


def _fundamentals(
    out: np.ndarray,
    state: np.ndarray,
    ctx: np.ndarray,
    text: dict[str, np.ndarray],
    strings: dict[str, np.ndarray],
    off_ts: np.ndarray,
    p: dict[str, Any],
) -> np.ndarray:
    """Write every feature of the runners into ``out`` (a row per float feature) from the
    state matrix, the context's numbers (a row each) and text; returns the debut flags.
    Every family is one operation over its rows (the caller ignores invalid and divide
    warnings)."""
    plan, at = _plan(), _plan().out
    n = ctx.shape[1]
    runner = np.arange(n)
    h_runs = state[plan.state["h_runs"]]
    debut = np.isnan(h_runs) | (h_runs == 0)
    draw, n_runners = ctx[plan.context["draw"]], ctx[plan.context["n_runners"]]

    out[plan.context_out[1]] = ctx[plan.context_out[0]]
    out[at["draw_frac"]] = draw / np.where(n_runners > 0, n_runners, np.nan)
    flags = np.array([*classify(text["sex"], _sex_flag_pair)], dtype=np.float64).reshape(n, 2)
    out[[at["sex_female"], at["sex_entire"]]] = flags.T
    out[plan.horse[1]] = np.where(debut, np.nan, state[plan.horse[0]])
    out[at["days_since_last_run"]] = (off_ts - state[plan.state["h_last_off_ts"]]) / SECONDS_PER_DAY

    # suitability: each family's category of this race picks the horse's runs and wins
    slot = np.empty((4, n), dtype=np.intp)
    slot[0] = _distance_slot(ctx[plan.context["distance_m"]])
    slot[1] = _slot_codes(text["going"], _going_slot)
    slot[2] = _slot_codes(text["surface"], _surface_slot)
    slot[3] = _draw_slot(draw, n_runners)
    flat = np.where(slot >= 0, plan.suit_starts + slot, -1)  # -1: the NaN row
    runs = state[plan.suit_runs[flat], runner]
    out[plan.suit_out[0]] = runs
    out[plan.suit_out[1]] = _shrunk(state[plan.suit_wins[flat], runner], runs, p["horse_k"], p["win_prior"])
    runs, wins = _record_at_course(strings["h_course_record"], text["course"])
    out[at["course_runs"]] = runs
    out[at["course_win_rate"]] = _shrunk(wins, runs, p["horse_k"], p["win_prior"])
    out[at["going_code"]] = np.where(slot[1] >= 0, slot[1], np.nan)

    out[plan.changes[2]] = ctx[plan.changes[0]] - state[plan.changes[1]]
    for name, values in _gear_features(text["gear"], strings["h_last_gear"], debut).items():
        out[at[name]] = values
    out[plan.connection[1]] = state[plan.connection[0]]

    # pairs: both keys known but no earlier state = 0 runs together
    known = {k: ~pd.isna(text[k]) for k in ("horse_id", "jockey_id", "trainer_id")}
    keys_known = np.stack(
        [known["jockey_id"] & known["trainer_id"], known["horse_id"] & known["jockey_id"]]
    ).astype(bool)
    runs, wins = state[plan.pairs[0]], state[plan.pairs[1]]
    runs = np.where(np.isnan(runs) & keys_known, 0.0, runs)
    wins = np.where(np.isnan(wins) & keys_known, 0.0, wins)
    out[plan.pairs[2]] = runs
    out[plan.pairs[3]] = _shrunk(wins, runs, p["pair_k"], p["win_prior"])

    # the track-profile draw bias of this runner's draw (draws >= 16 share slot 16)
    draw_slot = np.minimum(draw, DRAW_SLOTS) - 1
    draw_slot = np.where(np.isnan(draw_slot) | (draw_slot < 0), -1, draw_slot).astype(np.intp)
    out[at["draw_bias"]] = state[plan.draw_bias[draw_slot], runner]

    codes, n_races = codes_by_race(text["race_id"], "column 'race_id'")
    values = out[plan.relative[0]].T
    out[plan.relative[1]] = (values - group_means(values, codes, n_races)).T
    out[plan.relative[2]] = group_ranks(values, codes, ascending=False).T
    # how the horse is handicapped today, from its recent performance ratings: above its
    # mark when positive, and the same after today's weight relative to the field
    vs_rating = out[at["h_mean3_pr"]] - out[at["rating"]]
    out[at["pr_vs_rating"]] = vs_rating
    out[at["pr_weight_adv"]] = vs_rating - p["pr_units_per_kg"] * out[at["weight_carried_kg_rel"]]
    market = _market_arrays(ctx[plan.context["odds_final"]], codes, n_races)
    for name, values in market.items():
        out[at[name]] = values
    return debut


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
