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
    object_column,
)
from racecast.features.columns import as_float, require_columns, utc_ns, utc_ns_array
from racecast.features.market import market_probabilities
from racecast.features.runner_parts import (
    distance_slot,
    draw_slot,
    gear_features,
    going_slot_code,
    record_at_course,
    sex_flag_pair,
    shrunk,
    slot_codes,
    surface_slot_code,
)
from racecast.features.specs import (
    CONTEXT_COLUMNS,
    DEBUT_FLAG,
    DRAW_SLOTS,
    FUNDAMENTAL_FEATURES,
    KEY_COLUMNS,
    MARKET_FEATURES,
    RELATIVE_COLUMNS,
    VIEWS,
    WINDOWS_DAYS,
    all_state_features,
    draw_bias_columns,
    resolve_params,
    suitability_columns,
)

logger = logging.getLogger(__name__)

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
    with_odds: bool = False,
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
        with_odds: Also the context's ``odds_final`` (float64) as the last column: what
            serving hands the bundle beside the features.

    Returns:
        As :func:`build_features` (with ``odds_final`` last when ``with_odds``).

    Raises:
        KeyError: If a context column or a state feature is missing.
        ValueError: If a state column's length differs from ``context``'s.
    """
    columns, off_time = _context_arrays(context)
    out, debut, races = _fundamental_part(
        context, columns, off_time, numeric, text, params, with_odds
    )
    return _assemble(context.index, columns, off_time, out, debut, races, with_odds)


def fundamental_features(
    context: pd.DataFrame,
    numeric: Mapping[str, np.ndarray],
    text: Mapping[str, Any],
    params: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The fundamental part of :func:`build_features_from_state` alone: everything but
    the market features, which read nothing but ``odds_final`` (what a caller keeps while
    only the prices move; it reads only the context columns :data:`FUNDAMENTAL_CONTEXT`).

    Args:
        context, numeric, text, params: As for :func:`build_features_from_state`.

    Returns:
        ``(values, debut)``: a float64 matrix with a row per fundamental float column of
        the output (in its order) and a column per runner, and the debut flags (bool);
        :func:`features_from_fundamentals` makes the transform's output of them.
    """
    columns, off_time = _context_arrays(context)
    out, debut, _ = _fundamental_part(context, columns, off_time, numeric, text, params, False)
    return out[: _fundamental_rows()], debut


def features_from_fundamentals(
    context: pd.DataFrame, values: np.ndarray, debut: np.ndarray, with_odds: bool = False
) -> pd.DataFrame:
    """:func:`build_features_from_state`'s output from its fundamental part and the
    context's odds: the market features are computed and the frame assembled exactly as
    the full transform does (the same function).

    Args:
        context: The runners' context; equal to the one ``values`` were computed from in
            every column of :data:`FUNDAMENTAL_CONTEXT` (``odds_final`` may differ).
        values, debut: :func:`fundamental_features` of those runners (not modified).
        with_odds: As for :func:`build_features_from_state`.

    Returns:
        As :func:`build_features_from_state`.

    Raises:
        ValueError: If ``values`` or ``debut`` do not fit ``context``.
    """
    columns, off_time = _context_arrays(context)
    n, rows = len(context), _fundamental_rows()
    if values.shape != (rows, n) or debut.shape != (n,):
        raise ValueError(
            f"fundamentals: {rows} x {n} values and {n} flags expected, got "
            f"{values.shape} and {debut.shape}"
        )
    out = np.empty((len(_output_layout(with_odds).floats), n))
    out[:rows] = values
    return _assemble(context.index, columns, off_time, out, debut, None, with_odds)


def _context_arrays(context: pd.DataFrame) -> tuple[dict[str, Any], Any]:
    """The context frame taken apart once: every column the transform reads, and the off
    times (UTC)."""
    require_columns(context, CONTEXT_COLUMNS, "context")
    off_time = utc_ns_array(context["off_time"], "context.off_time")
    return column_arrays(context, _CONTEXT_USED), off_time


def _fundamental_part(
    context: pd.DataFrame,
    columns: dict[str, Any],
    off_time: Any,
    numeric: Mapping[str, np.ndarray],
    text: Mapping[str, Any],
    params: dict[str, Any] | None,
    with_odds: bool,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, int]]:
    """The output matrix (of ``_output_layout(with_odds)``) with every fundamental row
    written (the market rows and the odds not yet), the debut flags and the race codes."""
    p = resolve_params(params)
    missing = [c for c in sorted(_STATE_STRINGS) if c not in text]
    n = len(context)
    state = _state_matrix(numeric, n, missing)
    strings = {c: object_column(text[c]) for c in _STATE_STRINGS}
    wrong = [c for c, v in strings.items() if len(v) != n]
    if wrong:
        raise ValueError(f"state: columns {wrong[:10]} do not have one value per context row")
    off_ts = off_time.asi8 / 1e9  # epoch nanoseconds (UTC) -> seconds
    # numbers as rows of a matrix, text as object arrays
    ctx = np.empty((len(_CONTEXT_FLOATS), n))
    for i, c in enumerate(_CONTEXT_FLOATS):
        ctx[i] = float_values(columns[c])
    ctx_text = {c: object_column(columns[c]) for c in _CONTEXT_TEXT}
    out = np.empty((len(_output_layout(with_odds).floats), n))
    with np.errstate(invalid="ignore", divide="ignore"):
        debut, races = _fundamentals(out, state, ctx, ctx_text, strings, off_ts, p)
    return out, debut, races


def _assemble(
    index: pd.Index,
    columns: dict[str, Any],
    off_time: Any,
    out: np.ndarray,
    debut: np.ndarray,
    races: tuple[np.ndarray, int] | None,
    with_odds: bool,
) -> pd.DataFrame:
    """The transform's output frame, the one place it is built: the market rows of
    ``out`` from the context's odds (``races``: the race codes, None to compute them),
    the odds themselves in the last row ``with_odds``, then the keys, ``out`` (handed
    over as the frame's block) and the debut flags."""
    if races is None:
        races = codes_by_race(object_column(columns["race_id"]), "column 'race_id'")
    at = _plan().out
    odds = float_values(columns["odds_final"])
    with np.errstate(invalid="ignore", divide="ignore"):
        market = _market_arrays(odds, *races)
    for name, values in market.items():
        out[at[name]] = values
    if with_odds:
        out[-1] = odds
    keys = {c: off_time if c == "off_time" else columns[c] for c in KEY_COLUMNS}
    return frame_from_columns(_output_layout(with_odds), index, keys, out, debut)


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


#: The context's numbers the fundamental features read.
_CONTEXT_FLOATS = tuple(_CONTEXT_NUMERIC)
#: Every context column the fundamental features read (the market features read
#: :data:`MARKET_CONTEXT`): a kept race's key (:mod:`racecast.features.kept_races`).
FUNDAMENTAL_CONTEXT = tuple(dict.fromkeys((*_CONTEXT_FLOATS, *_CONTEXT_TEXT, *KEY_COLUMNS)))
MARKET_CONTEXT = ("race_id", "odds_final")
#: Every context column the transform reads.
_CONTEXT_USED = tuple(dict.fromkeys((*FUNDAMENTAL_CONTEXT, *MARKET_CONTEXT)))


@functools.lru_cache(maxsize=2)
def _output_layout(with_odds: bool = False) -> FrameLayout:
    """``build_features``' columns: ``KEY_COLUMNS``, then every feature (float64 but the
    int flag ``is_debut``), then ``odds_final`` ``with_odds``."""
    features = FUNDAMENTAL_FEATURES + MARKET_FEATURES + (["odds_final"] if with_odds else [])
    floats = [c for c in features if c != DEBUT_FLAG]
    return FrameLayout.of(KEY_COLUMNS, floats, DEBUT_FLAG, [*KEY_COLUMNS, *features])


def _fundamental_rows() -> int:
    """How many rows of the output matrix are fundamental (the market rows come last)."""
    return len(_output_layout().floats) - len(MARKET_FEATURES)


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
) -> tuple[np.ndarray, tuple[np.ndarray, int]]:
    """Write every fundamental feature of the runners into ``out`` (a row per float
    feature) from the state matrix, the context's numbers (a row each) and text; returns
    the debut flags and the race codes (the market rows: :func:`_assemble`).
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
    flags = np.array([*classify(text["sex"], sex_flag_pair)], dtype=np.float64).reshape(n, 2)
    out[[at["sex_female"], at["sex_entire"]]] = flags.T
    out[plan.horse[1]] = np.where(debut, np.nan, state[plan.horse[0]])
    out[at["days_since_last_run"]] = (off_ts - state[plan.state["h_last_off_ts"]]) / SECONDS_PER_DAY

    # suitability: each family's category of this race picks the horse's runs and wins
    slot = np.empty((4, n), dtype=np.intp)
    slot[0] = distance_slot(ctx[plan.context["distance_m"]])
    slot[1] = slot_codes(text["going"], going_slot_code)
    slot[2] = slot_codes(text["surface"], surface_slot_code)
    slot[3] = draw_slot(draw, n_runners)
    flat = np.where(slot >= 0, plan.suit_starts + slot, -1)  # -1: the NaN row
    runs = state[plan.suit_runs[flat], runner]
    out[plan.suit_out[0]] = runs
    out[plan.suit_out[1]] = shrunk(state[plan.suit_wins[flat], runner], runs, p["horse_k"], p["win_prior"])
    runs, wins = record_at_course(strings["h_course_record"], text["course"])
    out[at["course_runs"]] = runs
    out[at["course_win_rate"]] = shrunk(wins, runs, p["horse_k"], p["win_prior"])
    out[at["going_code"]] = np.where(slot[1] >= 0, slot[1], np.nan)

    out[plan.changes[2]] = ctx[plan.changes[0]] - state[plan.changes[1]]
    for name, values in gear_features(text["gear"], strings["h_last_gear"], debut).items():
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
    out[plan.pairs[3]] = shrunk(wins, runs, p["pair_k"], p["win_prior"])

    # the track-profile draw bias of this runner's draw (draws >= 16 share slot 16)
    bias_slot = np.minimum(draw, DRAW_SLOTS) - 1
    bias_slot = np.where(np.isnan(bias_slot) | (bias_slot < 0), -1, bias_slot).astype(np.intp)
    out[at["draw_bias"]] = state[plan.draw_bias[bias_slot], runner]

    codes, n_races = codes_by_race(text["race_id"], "column 'race_id'")
    values = out[plan.relative[0]].T
    out[plan.relative[1]] = (values - group_means(values, codes, n_races)).T
    out[plan.relative[2]] = group_ranks(values, codes, ascending=False).T
    # how the horse is handicapped today, from its recent performance ratings: above its
    # mark when positive, and the same after today's weight relative to the field
    vs_rating = out[at["h_mean3_pr"]] - out[at["rating"]]
    out[at["pr_vs_rating"]] = vs_rating
    out[at["pr_weight_adv"]] = vs_rating - p["pr_units_per_kg"] * out[at["weight_carried_kg_rel"]]
    return debut, (codes, n_races)


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
