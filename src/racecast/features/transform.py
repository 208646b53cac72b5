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

import logging
from typing import Any

import numpy as np
import pandas as pd

from racecast.features.specs import (
    CONTEXT_COLUMNS,
    DEBUT_FLAG,
    DISTANCE_BANDS,
    DRAW_RANGES,
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
from racecast.features.state import (
    as_float,
    category_codes,
    distance_band,
    draw_range,
    epoch_seconds,
    going_group,
    require_columns,
    shrunk_rate,
    surface_slot,
    utc_ns,
)

logger = logging.getLogger(__name__)

FEMALE_SEXES = frozenset({"mare", "filly", "m", "f"})
ENTIRE_SEXES = frozenset({"horse", "colt", "rig", "stallion", "entire", "h", "c", "r"})
KNOWN_SEXES = FEMALE_SEXES | ENTIRE_SEXES | {"gelding", "g"}
NO_GEAR = frozenset({"", "-", "--", "none", "nil", "no"})
SECONDS_PER_DAY = 86400.0


# --------------------------------------------------------------------------------------
# Race-relative and market features
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
    race = frame[group]
    out: dict[str, pd.Series] = {}
    for col in columns:
        values = as_float(frame[col])
        grouped = values.groupby(race, sort=False)
        out[f"{col}_rel"] = values - grouped.transform("mean")
        out[f"{col}_rank"] = grouped.rank(ascending=False, method="min")
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
    odds = as_float(context["odds_final"])
    odds = odds.where(odds >= 1.0)
    inverse = 1.0 / odds
    race = context["race_id"]
    book = inverse.groupby(race, sort=False).transform("sum")
    prob = inverse / book
    return pd.DataFrame(
        {
            "mkt_log_prob": np.log(prob),
            "mkt_odds_rank": odds.groupby(race, sort=False).rank(ascending=True, method="min"),
            "mkt_norm_odds": odds * book,
        },
        index=context.index,
    )[MARKET_FEATURES]


# --------------------------------------------------------------------------------------
# Helpers for the fundamental features
# --------------------------------------------------------------------------------------


def _pick(state: pd.DataFrame, columns: list[str], slot: np.ndarray) -> pd.Series:
    """Take, per row, the column at position ``slot`` (-1 -> NaN)."""
    matrix = state[columns].apply(as_float).to_numpy(float)
    out = np.full(len(state), np.nan)
    rows = np.flatnonzero(slot >= 0)
    out[rows] = matrix[rows, slot[rows]]
    return pd.Series(out, index=state.index)


def _record_at_course(record: pd.Series, course: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Runs and wins at this course from ``h_course_record`` text (NaN if no record)."""
    text = record.astype("string").reset_index(drop=True)
    here = course.astype("string").str.strip().reset_index(drop=True)
    entries = text.str.split(";").explode()
    parsed = entries.str.extract(r"^(?P<course>[^=]+)=(?P<runs>\d+)/(?P<wins>\d+)$")
    match = (parsed["course"] == here.reindex(parsed.index).to_numpy()).fillna(False).to_numpy(bool)
    runs = as_float(parsed["runs"]).where(match, 0.0).groupby(level=0).sum()
    wins = as_float(parsed["wins"]).where(match, 0.0).groupby(level=0).sum()
    known = text.notna().to_numpy()
    runs = runs.reindex(text.index).where(known)
    wins = wins.reindex(text.index).where(known)
    return pd.Series(runs.to_numpy(), index=record.index), pd.Series(
        wins.to_numpy(), index=record.index
    )


def _normalise_gear(gear: pd.Series) -> pd.Series:
    """Upper-case gear without spaces; every 'no gear' spelling becomes ''."""
    norm = gear.astype("string").str.upper().str.replace(r"\s+", "", regex=True)
    return norm.mask(norm.str.lower().isin(NO_GEAR), "")


def _gear_features(gear_now: pd.Series, gear_last: pd.Series, debut: pd.Series) -> pd.DataFrame:
    """``first_time_gear`` (gear now, none last run) and ``gear_changed`` (0/1, NaN if unknown)."""
    now = _normalise_gear(gear_now)
    last = _normalise_gear(gear_last)
    known = (now.notna() & last.notna() & ~debut).to_numpy(bool)
    first = ((now != "") & (last == "")).fillna(False).to_numpy(float)
    changed = (now != last).fillna(False).to_numpy(float)
    return pd.DataFrame(
        {
            "first_time_gear": np.where(known, first, np.nan),
            "gear_changed": np.where(known, changed, np.nan),
        },
        index=gear_now.index,
    )


def _sex_flags(sex: pd.Series) -> pd.DataFrame:
    """``sex_female`` and ``sex_entire`` (0/1; NaN when the sex is unknown)."""
    norm = sex.astype("string").str.lower().str.strip()
    known = norm.isin(KNOWN_SEXES).fillna(False).to_numpy(bool)
    return pd.DataFrame(
        {
            "sex_female": np.where(
                known, norm.isin(FEMALE_SEXES).fillna(False).to_numpy(float), np.nan
            ),
            "sex_entire": np.where(
                known, norm.isin(ENTIRE_SEXES).fillna(False).to_numpy(float), np.nan
            ),
        },
        index=sex.index,
    )


def _suitability(context: pd.DataFrame, state: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """The horse's record under THIS race's distance band, going, surface, course, draw range."""
    slots = {
        "dist": category_codes(distance_band(context["distance_m"]), DISTANCE_BANDS),
        "going": category_codes(going_group(context["going"]), GOING_GROUPS),
        "surf": category_codes(surface_slot(context["surface"]), SURFACE_SLOTS),
        "draw": category_codes(draw_range(context["draw"], context["n_runners"]), DRAW_RANGES),
    }
    names = {"dist": "dist", "going": "going", "surf": "surface", "draw": "draw_range"}
    out: dict[str, pd.Series] = {}
    for kind, slot in slots.items():
        runs_cols, wins_cols = suitability_columns(kind)
        runs = _pick(state, runs_cols, slot)
        wins = _pick(state, wins_cols, slot)
        out[f"{names[kind]}_runs"] = runs
        out[f"{names[kind]}_win_rate"] = shrunk_rate(wins, runs, p["horse_k"], p["win_prior"])
    runs, wins = _record_at_course(state["h_course_record"], context["course"])
    out["course_runs"] = runs
    out["course_win_rate"] = shrunk_rate(wins, runs, p["horse_k"], p["win_prior"])
    return pd.DataFrame(out, index=context.index)


def _pair_features(context: pd.DataFrame, state: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Pair history; a pair with both keys known but no earlier state has 0 runs together."""
    out: dict[str, pd.Series] = {}
    for prefix, (a, b) in (("jt", ("jockey_id", "trainer_id")), ("hj", ("horse_id", "jockey_id"))):
        keys_known = (context[a].notna() & context[b].notna()).to_numpy(bool)
        runs = as_float(state[f"{prefix}_runs"])
        wins = as_float(state[f"{prefix}_wins"])
        runs = runs.where(runs.notna() | ~keys_known, 0.0)
        wins = wins.where(wins.notna() | ~keys_known, 0.0)
        out[f"{prefix}_runs"] = runs
        out[f"{prefix}_win_rate"] = shrunk_rate(wins, runs, p["pair_k"], p["win_prior"])
    return pd.DataFrame(out, index=context.index)


def _draw_bias(context: pd.DataFrame, state: pd.DataFrame) -> pd.Series:
    """The track-profile draw bias of this runner's draw (draws >= 16 share slot 16)."""
    draw = as_float(context["draw"])
    slot = (draw.clip(upper=DRAW_SLOTS) - 1).fillna(-1).to_numpy().astype(np.int64)
    slot = np.where(slot >= 0, slot, -1)
    return _pick(state, draw_bias_columns(), slot)


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
]
_CONNECTION_PASSTHROUGH = [
    f"{prefix}_{name}"
    for prefix in ("j", "t")
    for name in ["win_rate", *[f"rate_{d}d" for d in WINDOWS_DAYS], "runs_365d"]
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


def build_features(
    context: pd.DataFrame, state: pd.DataFrame, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Turn racecard context + joined entity state into the model features.

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
    p = resolve_params(params)
    require_columns(context, CONTEXT_COLUMNS, "context")
    require_columns(state, all_state_features(), "joined state")
    if not context.index.equals(state.index):
        raise ValueError(
            "state: index must equal the context index (one joined state row per context row)"
        )
    off_ts = epoch_seconds(utc_ns(context["off_time"], "context.off_time"))
    h_runs = as_float(state["h_runs"])
    debut = (h_runs.isna() | (h_runs == 0)).to_numpy(bool)
    debut_s = pd.Series(debut, index=context.index)

    feats = pd.DataFrame({c: as_float(context[c]) for c in _CONTEXT_NUMERIC}, index=context.index)
    feats["draw_frac"] = feats["draw"] / feats["n_runners"].where(feats["n_runners"] > 0)
    feats = feats.join(_sex_flags(context["sex"]))
    going_code = category_codes(going_group(context["going"]), GOING_GROUPS).astype(float)
    feats["going_code"] = np.where(going_code >= 0, going_code, np.nan)
    feats[DEBUT_FLAG] = debut.astype("int64")
    for col in _HORSE_PASSTHROUGH:
        feats[col] = as_float(state[col]).where(~debut_s)
    feats["days_since_last_run"] = (off_ts - as_float(state["h_last_off_ts"])) / SECONDS_PER_DAY
    feats = feats.join(_suitability(context, state, p))
    for name, (now, last) in _CHANGES.items():
        feats[name] = as_float(context[now]) - as_float(state[last])
    feats = feats.join(_gear_features(context["gear"], state["h_last_gear"], debut_s))
    for col in _CONNECTION_PASSTHROUGH:
        feats[col] = as_float(state[col])
    feats = feats.join(_pair_features(context, state, p))
    feats["draw_bias"] = _draw_bias(context, state)
    feats["race_id"] = context["race_id"]
    feats = feats.join(race_relative(feats, RELATIVE_COLUMNS))

    keys = context[KEY_COLUMNS].copy()
    keys["off_time"] = utc_ns(keys["off_time"], "context.off_time")
    out = pd.concat([keys, feats[FUNDAMENTAL_FEATURES], market_features(context)], axis=1)
    return out[KEY_COLUMNS + FUNDAMENTAL_FEATURES + MARKET_FEATURES]


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
