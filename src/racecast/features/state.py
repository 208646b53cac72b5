"""Entity frames and per-entity state tables (the Feast offline sources).

A *state row* is the state of an entity (horse, jockey, trainer, pair, track) AFTER one
of its races, stamped ``event_timestamp = off_time + post_race_delay_s``. Feast's
point-in-time join (latest row with ``event_timestamp <= off_time`` of the race being
scored) therefore only ever sees results of strictly earlier races. Every quantity here
is computed causally (cumulative sums, shifted means, trailing windows over sorted
histories), so a state row depends on its own race and earlier races only.
``docs/features.md`` gives every formula.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.schema import TOOK_NO_PART
from racecast.features.specs import (
    CARD_ORDER,
    CONTEXT_COLUMNS,
    DISTANCE_BAND_EDGES_M,
    DISTANCE_BANDS,
    DRAW_RANGES,
    DRAW_SLOTS,
    LABEL_COLUMNS,
    ODDS_CAPPED,
    SUITABILITY,
    SURFACE_SLOTS,
    VIEWS,
    WINDOWS_DAYS,
    ViewSpec,
    draw_bias_columns,
    resolve_params,
    suitability_columns,
)

logger = logging.getLogger(__name__)

RACE_FIELDS: list[str] = [
    "race_id",
    "off_time",
    "course",
    "surface",
    "going",
    "distance_m",
    "race_class",
    "status",
]
RUNNER_FIELDS: list[str] = [
    "race_id",
    "horse_id",
    "jockey_id",
    "trainer_id",
    "draw",
    "age",
    "sex",
    "weight_carried_kg",
    "body_weight_kg",
    "rating",
    "gear",
    "odds_final",
    "non_runner",
]
RUNNER_RESULT_FIELDS: list[str] = [
    "post_position",
    "post_won",
    "post_lengths_behind",
    "post_finish_time_s",
    "post_in_running_positions",
    "post_outcome",
]
RACE_RESULT_FIELDS: list[str] = ["post_winning_time_s"]
#: Columns of ``entity_frame``, in order.
ENTITY_COLUMNS: list[str] = [
    *CONTEXT_COLUMNS,
    CARD_ORDER,
    ODDS_CAPPED,
    *LABEL_COLUMNS,
    "event_timestamp",
]
#: Race columns read when present (null otherwise).
RACE_OPTIONAL_FIELDS: list[str] = ["race_grade"]

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
_RECORD_FORBIDDEN = r"[=;/]"


# --------------------------------------------------------------------------------------
# Small vectorised helpers (shared with transform.py)
# --------------------------------------------------------------------------------------


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
    try:
        out = pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{column}: cannot parse as UTC timestamps ({exc})") from exc
    if out.isna().any():
        raise ValueError(
            f"{column}: {int(out.isna().sum())} null timestamp(s); every race needs an off_time"
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
    dist = pd.to_numeric(distance_m, errors="coerce").round().astype("Int64").astype("string")
    key = (
        course.astype("string").str.strip()
        + "|"
        + surface.astype("string").str.strip().str.lower()
        + "|"
        + dist
    )
    return key.rename("track_key")


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


# --------------------------------------------------------------------------------------
# Entity frame
# --------------------------------------------------------------------------------------


def _active_runs(races: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """Join runners to races and keep the active runners of races that are not void.

    Active: not a non-runner and not ``took_no_part`` in the result (withdrawn after the
    racecard: no state, no label, not counted in ``n_runners``).
    """
    require_columns(races, RACE_FIELDS, "races")
    require_columns(runners, RUNNER_FIELDS, "runners")
    if races["race_id"].duplicated().any():
        dup = races.loc[races["race_id"].duplicated(), "race_id"].iloc[0]
        raise ValueError(f"races.race_id: duplicated race_id {dup!r}")
    race_optional = RACE_RESULT_FIELDS + RACE_OPTIONAL_FIELDS
    race_cols = RACE_FIELDS + [c for c in race_optional if c in races.columns]
    optional = [CARD_ORDER, ODDS_CAPPED, *RUNNER_RESULT_FIELDS]
    runner_cols = RUNNER_FIELDS + [c for c in optional if c in runners.columns]
    df = runners[runner_cols].merge(
        races[race_cols], on="race_id", how="inner", validate="many_to_one"
    )
    orphans = len(runners) - len(df)
    if orphans:
        logger.warning("%d runner row(s) reference no race in `races` and are ignored", orphans)
    for col in [ODDS_CAPPED, *RUNNER_RESULT_FIELDS, *race_optional]:
        if col not in df.columns:
            df[col] = pd.NA
    df["off_time"] = utc_ns(df["off_time"], "races.off_time")
    df["status"] = df["status"].astype("string").str.lower().fillna("pending")
    for col in ("race_id", "horse_id", "jockey_id", "trainer_id"):
        df[col] = df[col].astype("string")
    non_runner = df["non_runner"].astype("boolean").fillna(False).to_numpy(bool)
    absent = df["post_outcome"].astype("string").eq(TOOK_NO_PART).fillna(False).to_numpy(bool)
    df = df.loc[~non_runner & ~absent & (df["status"] != "void").to_numpy(bool)]
    df = df.sort_values(["off_time", "race_id"], kind="stable").reset_index(drop=True)
    df["n_runners"] = df.groupby("race_id")["horse_id"].transform("size").astype("int64")
    df["track_key"] = track_key(df["course"], df["surface"], df["distance_m"])
    return df


#: Up to this many runner rows (a request's racecard), ``entity_frame`` joins, filters and
#: sorts with plain Python instead of a pandas merge (same frame; tested).
_SMALL_RUNNERS = 64


def _entity_frame_small(races: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame | None:
    """``entity_frame`` of a few runners (a request's racecard), or None to defer to it.

    The same frame as the batch path (tested column by column and dtype by dtype), built
    by :func:`entity_frame_from_columns`' small path on the frames' columns.
    """
    require_columns(races, RACE_FIELDS, "races")
    require_columns(runners, RUNNER_FIELDS, "runners")
    return _entity_columns_small(
        {c: races[c].array for c in races.columns}, {c: runners[c].array for c in runners.columns}
    )


def entity_frame_from_columns(races: Mapping[str, Any], runners: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`entity_frame` of tables given as columns (name -> typed array).

    The request path (``racecast.ingestion.request.clean_racecard_columns``) has its
    records as typed columns already: a request-sized racecard goes straight to the small
    path without building two DataFrames first; anything else becomes frames and takes
    :func:`entity_frame`.

    Args:
        races: Race columns (numpy or pandas extension arrays of equal length).
        runners: Runner columns, likewise.

    Returns:
        As :func:`entity_frame`.
    """
    small = None
    n_runners = len(next(iter(runners.values()), ()))
    complete = all(c in races for c in RACE_FIELDS) and all(c in runners for c in RUNNER_FIELDS)
    if n_runners <= _SMALL_RUNNERS and complete:
        small = _entity_columns_small(races, runners)
    if small is not None:
        return small
    return entity_frame(pd.DataFrame(dict(races)), pd.DataFrame(dict(runners)))


def _entity_columns_small(
    races: Mapping[str, Any], runners: Mapping[str, Any]
) -> pd.DataFrame | None:
    """The small path of ``entity_frame`` on columns that hold every needed field.

    Plain Python over the few rows and per-column takes instead of a merge, a sort and a
    dozen pandas steps (the track key is :func:`track_key` itself, as in training). Only
    the clean case is handled: unique non-null race ids, every runner in a race, every
    race with an off_time. Anything else returns None, so the batch path warns about or
    rejects it with its own messages.
    """
    race_ids = pd.array(races["race_id"], dtype="string").tolist()
    if any(r is pd.NA for r in race_ids) or len(set(race_ids)) != len(race_ids):
        return None
    if pd.isna(races["off_time"]).any():
        return None
    position = {r: i for i, r in enumerate(race_ids)}
    runner_races = pd.array(runners["race_id"], dtype="string").tolist()
    race_of = [position.get(r, -1) for r in runner_races]
    if min(race_of, default=0) < 0:
        return None
    off_ns = _utc_ns_array(races["off_time"])
    status = ["pending" if s is pd.NA else s.lower() for s in _strings(races["status"])]
    non_runner = pd.array(runners["non_runner"]).astype("boolean").fillna(False).tolist()
    if "post_outcome" in runners:  # took no part: out of the race like a non-runner
        outcome = _strings(runners["post_outcome"])
        non_runner = [
            nr or (o is not pd.NA and o == TOOK_NO_PART)
            for nr, o in zip(non_runner, outcome, strict=True)
        ]
    keep = [i for i, r in enumerate(race_of) if not non_runner[i] and status[r] != "void"]
    stamps = np.asarray(off_ns, dtype="datetime64[ns]").astype(np.int64).tolist()
    keep.sort(key=lambda i: (stamps[race_of[i]], race_ids[race_of[i]]))
    rows = np.asarray([race_of[i] for i in keep], dtype=np.int64)
    take = np.asarray(keep, dtype=np.int64)
    race_level = {
        "race_id": pd.array(race_ids, dtype="string"),
        "off_time": off_ns,
        "track_key": track_key(
            pd.Series(races["course"]), pd.Series(races["surface"]), pd.Series(races["distance_m"])
        ).array,
        **{c: races[c] for c in RACE_FIELDS if c not in ("race_id", "off_time", "status")},
    }
    columns: dict[str, Any] = {}
    for col in CONTEXT_COLUMNS:
        if col == "n_runners":
            counts = np.bincount(rows, minlength=len(race_ids)).astype(np.int64)
            columns[col] = counts[rows]
        elif col in race_level:
            columns[col] = race_level[col].take(rows)
        elif col in ("horse_id", "jockey_id", "trainer_id"):
            columns[col] = pd.array(runners[col], dtype="string").take(take)
        else:
            columns[col] = runners[col].take(take)
    index = pd.RangeIndex(len(keep))
    official = np.asarray([status[r] == "official" for r in rows.tolist()], dtype=bool)
    if official.any():
        results = [c for c in ("post_won", "post_position", CARD_ORDER) if c in runners]
        runs = pd.DataFrame({c: runners[c].take(take) for c in results}, index=index)
        runs["n_runners"] = columns["n_runners"]
        columns.update(_label_columns(runs, official))
    else:
        card = runners[CARD_ORDER].take(take) if CARD_ORDER in runners else None
        columns.update(_null_labels(index, card))
    columns[ODDS_CAPPED] = (
        pd.array(runners[ODDS_CAPPED], dtype="boolean").take(take)
        if ODDS_CAPPED in runners
        else pd.array([pd.NA] * len(keep), dtype="boolean")
    )
    columns["event_timestamp"] = columns["off_time"]
    return pd.DataFrame({name: columns[name] for name in ENTITY_COLUMNS}, index=index)


def _strings(values: Any) -> list[Any]:
    """``values`` as the ``string`` dtype gives them: str or ``pd.NA``."""
    return pd.array(values, dtype="string").tolist()


def _utc_ns_array(values: Any) -> Any:
    """:func:`utc_ns` of an array (as is when it is already UTC nanoseconds)."""
    if str(getattr(values, "dtype", "")) == "datetime64[ns, UTC]":
        return values
    return utc_ns(pd.Series(values), "races.off_time").array


def _null_labels(index: pd.Index, card: Any) -> dict[str, pd.Series]:
    """``_label_columns`` when no race is official: null labels and the card order."""
    labels = {
        name: pd.Series(pd.array([pd.NA] * len(index), dtype="Int64"), index=index)
        for name in LABEL_COLUMNS
    }
    if card is None:
        order = pd.Series(pd.array([pd.NA] * len(index), dtype="Int64"), index=index)
    elif isinstance(card.dtype, pd.Int64Dtype):
        order = pd.Series(card, index=index)
    else:
        order = pd.to_numeric(pd.Series(card, index=index), errors="coerce").astype("Int64")
    return labels | {CARD_ORDER: order}


def _won(df: pd.DataFrame) -> pd.Series:
    """Win flag of a result row: ``post_won`` or, where that is null, position 1."""
    by_position = as_float(df["post_position"]).eq(1)
    return df["post_won"].astype("boolean").fillna(by_position).astype(bool)


def entity_frame(races: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """Build the entity/context frame: one row per active runner of every non-void race.

    Used for training (Feast ``entity_df`` plus labels) and, on a parsed racecard, as
    the online request context. ``n_runners`` counts the race's active runners.

    Args:
        races: Canonical races table.
        runners: Canonical runners table.

    Returns:
        A new frame with ``ENTITY_COLUMNS``: ``CONTEXT_COLUMNS`` + ``CARD_ORDER`` (cloth
        number, the race-card order) + ``ODDS_CAPPED`` (request data: the final price is
        a display cap; null when the source does not say) + ``LABEL_COLUMNS`` +
        ``event_timestamp`` (= ``off_time``). Labels: ``won`` (0/1, both dead-heat winners 1), ``position``
        (``post_position``) and ``field_size`` (active runners); null unless the race
        is official.
    """
    small = _entity_frame_small(races, runners) if len(runners) <= _SMALL_RUNNERS else None
    if small is not None:
        return small
    df = _active_runs(races, runners)
    out = df[CONTEXT_COLUMNS].copy()
    for col, values in _label_columns(df, df["status"].eq("official").to_numpy(bool)).items():
        out[col] = values
    out[ODDS_CAPPED] = df[ODDS_CAPPED].astype("boolean")
    out["event_timestamp"] = out["off_time"]
    return out[ENTITY_COLUMNS]


def _label_columns(runs: pd.DataFrame, official: np.ndarray) -> dict[str, pd.Series]:
    """Labels of ``entity_frame`` (null unless the race is official) and the card order.

    Args:
        runs: Active runs with ``n_runners`` and whichever of ``post_won``,
            ``post_position`` and ``CARD_ORDER`` the input had.
        official: Per row, whether its race is official.
    """
    if not official.any():  # a racecard: every label is null whatever the result columns say
        return _null_labels(runs.index, runs[CARD_ORDER] if CARD_ORDER in runs.columns else None)
    missing = pd.Series(pd.NA, index=runs.index)
    card = runs[CARD_ORDER] if CARD_ORDER in runs.columns else missing
    card_order = pd.to_numeric(card, errors="coerce").astype("Int64")
    position = runs["post_position"] if "post_position" in runs.columns else missing
    won = runs.assign(post_won=runs.get("post_won", missing), post_position=position)
    return {
        "won": pd.Series(_won(won).astype("int64"), dtype="Int64").where(official),
        "position": pd.to_numeric(position, errors="coerce").astype("Int64").where(official),
        "field_size": pd.Series(runs["n_runners"]).astype("Int64").where(official),
        CARD_ORDER: card_order,
    }


# --------------------------------------------------------------------------------------
# Per-run quantities
# --------------------------------------------------------------------------------------


def _group_codes(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Integer code per distinct key tuple (-1 where any key is null)."""
    return frame.groupby(keys, sort=True, dropna=True).ngroup().fillna(-1).to_numpy(np.int64)


def _strictly_earlier_mean(
    frame: pd.DataFrame, keys: list[str], value: str
) -> tuple[pd.Series, pd.Series]:
    """Mean and count of ``value`` over rows with the same keys and a strictly earlier off_time.

    Args:
        frame: Rows with ``keys``, ``off_time`` and ``value``.
        keys: Grouping columns.
        value: Column averaged (NaN values are ignored).

    Returns:
        ``(mean, count)`` aligned with ``frame``; mean is NaN when count is 0.
    """
    code = pd.Series(_group_codes(frame, keys), index=frame.index, name="_code")
    valid = (code >= 0) & frame[value].notna()
    hist = (
        pd.DataFrame(
            {
                "_code": code[valid],
                "off_time": frame.loc[valid, "off_time"],
                "_v": frame.loc[valid, value],
            }
        )
        .groupby(["_code", "off_time"], sort=True)["_v"]
        .agg(["sum", "count"])
    )
    hist = hist.groupby(level="_code").cumsum().reset_index().sort_values("off_time", kind="stable")
    query = pd.DataFrame(
        {"_code": code, "off_time": frame["off_time"], "_row": np.arange(len(frame))}
    )
    query = query.sort_values("off_time", kind="stable")
    joined = pd.merge_asof(query, hist, on="off_time", by="_code", allow_exact_matches=False)
    joined = joined.sort_values("_row")
    count = joined["count"].fillna(0).to_numpy(float)
    total = joined["sum"].to_numpy(float)
    mean = np.divide(total, count, out=np.full(len(count), np.nan), where=count > 0)
    return pd.Series(mean, index=frame.index), pd.Series(count, index=frame.index)


def _standard_times(race_level: pd.DataFrame, p: dict[str, Any]) -> pd.Series:
    """Standard time per metre of each race, learned only from strictly earlier races.

    Primary: mean winners' time per metre of earlier races with the same
    (track_key, going group), used once ``std_min_races`` such races exist. Fallback:
    the track_key mean over all goings times a going allowance, the mean ratio
    (winner time / track standard at the time) of earlier races with the same
    (surface, going group) (1.0 before any).

    Args:
        race_level: One row per race with ``track_key``, ``going_group``,
            ``surface_slot``, ``off_time`` and ``win_tpm``.
        p: Resolved parameters.

    Returns:
        Standard seconds per metre aligned with ``race_level`` (NaN if none).
    """
    cell_mean, cell_n = _strictly_earlier_mean(race_level, ["track_key", "going_group"], "win_tpm")
    track_mean, _ = _strictly_earlier_mean(race_level, ["track_key"], "win_tpm")
    with_ratio = race_level.assign(_ratio=race_level["win_tpm"] / track_mean)
    allowance, _ = _strictly_earlier_mean(with_ratio, ["surface_slot", "going_group"], "_ratio")
    fallback = track_mean * allowance.fillna(1.0)
    return cell_mean.where(cell_n >= p["std_min_races"], fallback)


def race_times(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per race of ``runs``: ``track_key``, ``going_group``, ``surface_slot``,
    ``off_time`` and ``win_tpm`` (the race's winning time per metre; NaN when unknown).

    Args:
        runs: Official active runs with ``won`` and the per-run columns of
            :func:`official_runs`.

    Returns:
        The race-level frame, in the order of ``runs``.
    """
    distance = as_float(runs["distance_m"]).where(lambda s: s > 0)
    return pd.DataFrame(
        {
            "race_id": runs["race_id"],
            "track_key": runs["track_key"],
            "going_group": runs["going_group"],
            "surface_slot": runs["surface_slot"],
            "off_time": runs["off_time"],
            "win_tpm": _race_time(runs) / distance,
        }
    ).drop_duplicates("race_id")


def _race_time(runs: pd.DataFrame) -> pd.Series:
    """Winning time of each run's race: ``post_winning_time_s``, else the winner's time."""
    finish = as_float(runs["post_finish_time_s"]).where(lambda s: s > 0)
    winner_time = finish.where(runs["won"] == 1).groupby(runs["race_id"]).transform("min")
    return as_float(runs["post_winning_time_s"]).where(lambda s: s > 0).fillna(winner_time)


def _speed_figures(
    runs: pd.DataFrame, p: dict[str, Any], earlier: pd.DataFrame | None = None
) -> pd.Series:
    """Speed figure of each run: ``scale * (standard - own) / standard`` in time per metre.

    Own time is ``post_finish_time_s``; where missing, the winner's time plus
    ``lengths_behind * sec_per_length`` (lengths clipped at 0, above ``max_lengths``
    unusable). Non-finishers get NaN. Figures are clipped to +-``figure_clip``.

    Args:
        runs: Official active runs with per-run columns (``won``, ``finished``, ...).
        p: Resolved parameters.
        earlier: :func:`race_times` of races run before every race of ``runs`` that
            ``runs`` does not hold (standard times learn from them too); None when
            ``runs`` is the whole history.

    Returns:
        Float Series aligned with ``runs``.
    """
    distance = as_float(runs["distance_m"]).where(lambda s: s > 0)
    finish = as_float(runs["post_finish_time_s"]).where(lambda s: s > 0)
    race_time = _race_time(runs)
    race_level = race_times(runs)
    history = race_level
    if earlier is not None and len(earlier):
        history = pd.concat(
            [earlier[~earlier["race_id"].isin(race_level["race_id"])], race_level],
            ignore_index=True,
        )
    std_tpm = pd.Series(_standard_times(history, p).to_numpy(), index=history["race_id"].to_numpy())
    std = runs["race_id"].map(std_tpm)
    lengths = as_float(runs["post_lengths_behind"]).clip(lower=0)
    lengths = lengths.where(lengths <= p["max_lengths"]).where(runs["won"] == 0, 0.0)
    own = finish.fillna(race_time + lengths * p["sec_per_length"]).where(runs["finished"])
    figure = p["figure_scale"] * (std - own / distance) / std
    return figure.clip(-p["figure_clip"], p["figure_clip"]).astype("float64")


def official_runs(
    races: pd.DataFrame,
    runners: pd.DataFrame,
    p: dict[str, Any],
    earlier: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Active runs of official races with every per-run quantity the state tables need.

    Args:
        races: Canonical races.
        runners: Canonical runners.
        p: Resolved parameters (:func:`racecast.features.specs.resolve_params`).
        earlier: :func:`race_times` of earlier races not in ``races`` (the standard
            times of a speed figure learn from every earlier race); None when ``races``
            is the whole history.

    Returns:
        One row per run, sorted by ``off_time`` and ``race_id``.
    """
    df = _active_runs(races, runners)
    df = df.loc[df["status"].eq("official").to_numpy(bool)].reset_index(drop=True)
    bad = df["course"].astype("string").str.contains(_RECORD_FORBIDDEN, regex=True).fillna(False)
    if bad.any():
        raise ValueError(
            f"races.course: value {df.loc[bad, 'course'].iloc[0]!r} contains one of '=;/'"
        )
    position = as_float(df["post_position"])
    field = df["n_runners"].astype("float64")
    finished = position.notna().to_numpy(bool)
    rel_pos = ((position - 1.0) / np.maximum(field - 1.0, 1.0)).clip(0.0, 1.0).where(finished, 1.0)
    first_pos = as_float(
        df["post_in_running_positions"]
        .astype("string")
        .str.extract(r"^\s*\[\s*(\d+)", expand=False)
    )
    # a graded (group or listed) race without a class is above the classes, not class_ref
    race_class = as_float(df["race_class"])
    race_class = race_class.mask(race_class.isna() & df["race_grade"].notna().to_numpy(bool), 1.0)
    race_class = race_class.clip(1.0, p["class_max"]).fillna(p["class_ref"])
    out = df.assign(
        won=_won(df).astype("int64"),
        finished=finished,
        placed=(position <= 3).fillna(False).astype("int64"),
        rel_pos=rel_pos,
        early_pos=((first_pos - 1.0) / np.maximum(field - 1.0, 1.0)).clip(0.0, 1.0),
        class_perf=(1.0 - rel_pos) + p["class_step"] * (p["class_ref"] - race_class),
        going_group=going_group(df["going"]),
        surface_slot=surface_slot(df["surface"]),
        off_ts=epoch_seconds(df["off_time"]),
    )
    out["figure"] = _speed_figures(out, p, earlier)
    out["perf_rating"] = _performance_ratings(out, p)
    return out


def _performance_ratings(runs: pd.DataFrame, p: dict[str, Any]) -> pd.Series:
    """Performance rating of each run: the rating the horse ran to, in rating units.

    ``PR = field mean rating + (field mean lengths - own lengths) * units_per_length
    + pr_units_per_kg * (own weight - field mean weight)``, where lengths behind are
    clipped to ``[0, max_lengths]`` (winners 0; non-finishers and unusable values count
    as ``max_lengths``) and ``units_per_length = clip(pr_units_per_length_1600m * 1600 /
    distance, pr_unit_min, pr_unit_max)`` (a length is worth more over a shorter trip).
    NaN when the race has no rating, the run no weight, or the race no distance.

    Args:
        runs: Official active runs with ``won``, ``finished`` and the racecard columns.
        p: Resolved parameters.

    Returns:
        Float Series aligned with ``runs``.
    """
    race = runs["race_id"]
    lengths = as_float(runs["post_lengths_behind"]).clip(lower=0.0)
    lengths = lengths.where(lengths <= p["max_lengths"], p["max_lengths"])
    lengths = lengths.where(runs["finished"], p["max_lengths"]).fillna(p["max_lengths"])
    lengths = lengths.where(runs["won"] == 0, 0.0)
    distance = as_float(runs["distance_m"]).where(lambda s: s > 0)
    unit = (p["pr_units_per_length_1600m"] * 1600.0 / distance).clip(
        p["pr_unit_min"], p["pr_unit_max"]
    )
    weight = as_float(runs["weight_carried_kg"])
    rating_mean = as_float(runs["rating"]).groupby(race).transform("mean")
    pr = (
        rating_mean
        + (lengths.groupby(race).transform("mean") - lengths) * unit
        + p["pr_units_per_kg"] * (weight - weight.groupby(race).transform("mean"))
    )
    return pr.astype("float64")


# --------------------------------------------------------------------------------------
# State tables
# --------------------------------------------------------------------------------------


def _sorted_history(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Runs with non-null keys, sorted by keys, off_time and race_id."""
    mask = runs[keys].notna().all(axis=1)
    return (
        runs.loc[mask]
        .sort_values([*keys, "off_time", "race_id"], kind="stable")
        .reset_index(drop=True)
    )


def _last_per_event(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Keep the last row per (keys, off_time): cumulative state after every race at that time."""
    return frame.loc[~frame.duplicated([*keys, "off_time"], keep="last")].reset_index(drop=True)


def _trailing_mean(values: pd.Series, groups: pd.Series, k: int) -> pd.Series:
    """Mean of the last ``k`` values of each group up to each row (values must not be NaN)."""
    csum = values.groupby(groups, sort=False).cumsum()
    before = csum.groupby(groups, sort=False).shift(k).fillna(0.0)
    count = np.minimum(groups.groupby(groups, sort=False).cumcount() + 1, k)
    return (csum - before) / count


def _figure_history(hist: pd.DataFrame) -> pd.DataFrame:
    """Best, last and mean-of-last-3 figures (runs without a figure carry the last state)."""
    has = hist["figure"].notna()
    sub = hist.loc[has, ["horse_id", "figure"]]
    by = sub["horse_id"]
    figs = pd.DataFrame(
        {
            "h_best_fig": sub["figure"].groupby(by, sort=False).cummax(),
            "h_last_fig": sub["figure"],
            "h_mean3_fig": _trailing_mean(sub["figure"], by, 3),
        },
        index=sub.index,
    ).reindex(hist.index)
    figs = figs.groupby(hist["horse_id"], sort=False).ffill()
    figs["h_fig_runs"] = has.astype("int64").groupby(hist["horse_id"], sort=False).cumsum()
    return figs


def _performance_history(hist: pd.DataFrame, best_runs: int) -> pd.DataFrame:
    """Last, mean-of-last-3 and best-of-last-``best_runs`` performance ratings.

    Runs without a performance rating carry the previous values.
    """
    sub = hist.loc[hist["perf_rating"].notna(), ["horse_id", "perf_rating"]]
    by = sub["horse_id"]
    best = (
        sub["perf_rating"]
        .groupby(by, sort=False)
        .rolling(best_runs, min_periods=1)
        .max()
        .reset_index(level=0, drop=True)
    )
    prs = pd.DataFrame(
        {
            "h_last_pr": sub["perf_rating"],
            "h_mean3_pr": _trailing_mean(sub["perf_rating"], by, 3),
            "h_best5_pr": best.reindex(sub.index),
        },
        index=sub.index,
    ).reindex(hist.index)
    return prs.groupby(hist["horse_id"], sort=False).ffill()


def _suitability_history(hist: pd.DataFrame, by: pd.Series) -> pd.DataFrame:
    """Cumulative runs and wins per suitability category (wide columns)."""
    labels = {
        "dist": distance_band(hist["distance_m"]),
        "going": hist["going_group"],
        "surf": hist["surface_slot"],
        "draw": draw_range(hist["draw"], hist["n_runners"]),
    }
    won = hist["won"].to_numpy(np.int64)[:, None]
    blocks = []
    for kind, cats in SUITABILITY.items():
        codes = category_codes(labels[kind], cats)
        onehot = (codes[:, None] == np.arange(len(cats))[None, :]).astype(np.int64)
        runs_cols, wins_cols = suitability_columns(kind)
        blocks.append(pd.DataFrame(onehot, columns=runs_cols, index=hist.index))
        blocks.append(pd.DataFrame(onehot * won, columns=wins_cols, index=hist.index))
    return pd.concat(blocks, axis=1).groupby(by, sort=False).cumsum()


def _course_record(hist: pd.DataFrame, by: pd.Series) -> pd.Series:
    """Per-course record as text ``"HV=3/0;ST=5/1"`` (runs/wins, courses sorted)."""
    course = hist["course"].astype("string").str.strip()
    courses = sorted(course.dropna().unique())
    codes = category_codes(course, courses)
    onehot = (codes[:, None] == np.arange(len(courses))[None, :]).astype(np.int64)
    runs = pd.DataFrame(onehot, index=hist.index).groupby(by, sort=False).cumsum().to_numpy()
    wins = (
        pd.DataFrame(onehot * hist["won"].to_numpy()[:, None], index=hist.index)
        .groupby(by, sort=False)
        .cumsum()
        .to_numpy()
    )
    record = pd.Series("", index=hist.index, dtype="object")
    for i, name in enumerate(courses):
        piece = (
            pd.Series(f"{name}=", index=hist.index)
            + runs[:, i].astype(str)
            + "/"
            + wins[:, i].astype(str)
            + ";"
        )
        record = record + piece.where(runs[:, i] > 0, "")
    return record.str.rstrip(";").astype("string")


def _horse_state(runs: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Horse form, speed/pace and suitability state after each run."""
    hist = _sorted_history(runs, ["horse_id"])
    by = hist["horse_id"]
    g = hist.groupby(by, sort=False)
    n = g.cumcount() + 1
    wins = g["won"].cumsum()
    places = g["placed"].cumsum()
    avg_rel = g["rel_pos"].cumsum() / n
    ewm = g["rel_pos"].ewm(halflife=p["ewm_halflife_runs"]).mean().reset_index(level=0, drop=True)
    early_n = hist["early_pos"].notna().astype("int64").groupby(by, sort=False).cumsum()
    early_sum = hist["early_pos"].fillna(0.0).groupby(by, sort=False).cumsum()
    state = pd.DataFrame(
        {
            "horse_id": by,
            "off_time": hist["off_time"],
            "h_runs": n,
            "h_wins": wins,
            "h_places": places,
            "h_win_rate": shrunk_rate(wins, n, p["horse_k"], p["win_prior"]),
            "h_place_rate": shrunk_rate(places, n, p["horse_k"], p["place_prior"]),
            "h_avg_rel_pos": avg_rel,
            "h_last_rel_pos": hist["rel_pos"],
            "h_ewm_rel_pos": ewm.reindex(hist.index),
            "h_trend": _trailing_mean(hist["rel_pos"], by, int(p["trend_runs"])) - avg_rel,
            "h_last_off_ts": hist["off_ts"],
            "h_early_pos": (early_sum / early_n).where(early_n > 0),
            "h_class_perf": g["class_perf"].cumsum() / n,
            "h_course_record": _course_record(hist, by),
            "h_last_distance": as_float(hist["distance_m"]),
            "h_last_class": as_float(hist["race_class"]),
            "h_last_weight": as_float(hist["weight_carried_kg"]),
            "h_last_body_weight": as_float(hist["body_weight_kg"]),
            "h_last_rating": as_float(hist["rating"]),
            "h_last_gear": hist["gear"].astype("string"),
        },
        index=hist.index,
    )
    state = pd.concat(
        [
            state,
            _figure_history(hist),
            _performance_history(hist, int(p["pr_best_runs"])),
            _suitability_history(hist, by),
        ],
        axis=1,
    )
    return _last_per_event(state, ["horse_id"])


def _trailing_window_sums(
    codes: np.ndarray, seconds: np.ndarray, values: np.ndarray, window_s: int
) -> np.ndarray:
    """Sum ``values`` over rows of the same code with time in ``(t - window_s, t]``.

    Rows must be sorted by code, then time. Each row only counts itself and earlier rows,
    so the last row of a (code, time) block holds the whole block.

    Args:
        codes: Group code per row (non-decreasing).
        seconds: Integer epoch seconds per row (non-decreasing within a code).
        values: 2-D array (rows x columns) to sum.
        window_s: Window length in seconds.

    Returns:
        2-D array of window sums.
    """
    if len(codes) == 0:
        return np.zeros_like(values)
    rel = seconds - seconds.min()
    stride = int(rel.max()) + window_s + 2
    composite = codes * stride + rel
    start = np.searchsorted(composite, composite - window_s, side="right")
    csum = np.vstack(
        [np.zeros((1, values.shape[1]), dtype=values.dtype), np.cumsum(values, axis=0)]
    )
    return csum[np.arange(1, len(codes) + 1)] - csum[start]


def _connection_state(
    runs: pd.DataFrame, key: str, prefix: str, recent: int, p: dict[str, Any]
) -> pd.DataFrame:
    """Jockey or trainer career, trailing 30/90/365-day strike rates and the mean
    ``rel_pos`` of the latest ``recent`` rides, after each ride."""
    hist = _sorted_history(runs, [key])
    by = hist[key]
    g = hist.groupby(by, sort=False)
    n = g.cumcount() + 1
    wins = g["won"].cumsum()
    state = {
        key: by,
        "off_time": hist["off_time"],
        f"{prefix}_runs": n,
        f"{prefix}_wins": wins,
        f"{prefix}_win_rate": shrunk_rate(wins, n, p["connection_k"], p["win_prior"]),
        f"{prefix}_recent_rel_pos": _trailing_mean(hist["rel_pos"], by, recent).where(
            n >= p["recent_min_rides"]
        ),
    }
    codes = g.ngroup().to_numpy(np.int64)
    seconds = np.floor(hist["off_ts"].to_numpy()).astype(np.int64)
    values = np.column_stack([np.ones(len(hist), dtype=np.int64), hist["won"].to_numpy(np.int64)])
    for days in WINDOWS_DAYS:
        sums = _trailing_window_sums(codes, seconds, values, days * 86400)
        runs_w = pd.Series(sums[:, 0], index=hist.index)
        wins_w = pd.Series(sums[:, 1], index=hist.index)
        state[f"{prefix}_runs_{days}d"] = runs_w
        state[f"{prefix}_wins_{days}d"] = wins_w
        state[f"{prefix}_rate_{days}d"] = shrunk_rate(
            wins_w, runs_w, p["connection_k"], p["win_prior"]
        )
    return _last_per_event(pd.DataFrame(state, index=hist.index), [key])


def _pair_state(
    runs: pd.DataFrame, keys: list[str], prefix: str, p: dict[str, Any]
) -> pd.DataFrame:
    """Runs and wins of an entity pair together (jockey x trainer, horse x jockey)."""
    hist = _sorted_history(runs, keys)
    g = hist.groupby(keys, sort=False)
    n = g.cumcount() + 1
    wins = g["won"].cumsum()
    state = hist[[*keys, "off_time"]].assign(
        **{
            f"{prefix}_runs": n,
            f"{prefix}_wins": wins,
            f"{prefix}_win_rate": shrunk_rate(wins, n, p["pair_k"], p["win_prior"]),
            f"{prefix}_avg_rel_pos": g["rel_pos"].cumsum() / n,
        }
    )
    return _last_per_event(state, keys)


def _track_state(runs: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Draw bias per track_key: shrunk ratio of wins to expected wins (1/field) per draw."""
    hist = _sorted_history(runs, ["track_key"])
    slot = as_float(hist["draw"]).clip(upper=DRAW_SLOTS)
    onehot = (slot.to_numpy()[:, None] == np.arange(1, DRAW_SLOTS + 1)[None, :]).astype(float)
    cols = draw_bias_columns()
    wins = pd.DataFrame(
        onehot * hist["won"].to_numpy(float)[:, None], columns=cols, index=hist.index
    )
    expected = pd.DataFrame(
        onehot / hist["n_runners"].to_numpy(float)[:, None], columns=cols, index=hist.index
    )
    keys = [hist["track_key"], hist["off_time"]]
    wins_cum = wins.groupby(keys, sort=True).sum().groupby(level=0).cumsum()
    expected_cum = expected.groupby(keys, sort=True).sum().groupby(level=0).cumsum()
    races = hist.groupby(keys, sort=True)["race_id"].nunique().groupby(level=0).cumsum()
    k = p["draw_bias_k"]
    bias = (wins_cum + k) / (expected_cum + k)
    bias.insert(0, "trk_races", races)
    return bias.reset_index()


def _finalise(frame: pd.DataFrame, spec: ViewSpec, delay: pd.Timedelta) -> pd.DataFrame:
    """Select the view's columns, cast dtypes, stamp event_timestamp and check uniqueness."""
    keys = list(spec.entities)
    missing = [c for c in spec.features if c not in frame.columns]
    if missing:
        raise KeyError(f"state table {spec.name}: computed frame lacks feature column(s) {missing}")
    out = frame[keys].astype("string")
    out["event_timestamp"] = frame["off_time"] + delay
    for col, dtype in spec.features.items():
        out[col] = frame[col].astype(dtype)
    out = out.sort_values(["event_timestamp", *keys], kind="stable").reset_index(drop=True)
    dup = out.duplicated([*keys, "event_timestamp"])
    if dup.any():
        raise AssertionError(
            f"state table {spec.name}: {int(dup.sum())} duplicate rows per ({', '.join(keys)}, event_timestamp)"
        )
    return out


def post_race_delay(p: dict[str, Any]) -> pd.Timedelta:
    """``post_race_delay_s`` as a Timedelta (a race's state is stamped this long after its off)."""
    delay = pd.Timedelta(seconds=float(p["post_race_delay_s"]))
    if delay <= pd.Timedelta(0):
        raise ValueError(
            f"post_race_delay_s: must be > 0 so a race never sees its own result, got {p['post_race_delay_s']}"
        )
    return delay


def view_state(view: str, runs: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """The state table of one feature view from official runs.

    Each entity's rows depend only on the runs of that entity (and the per-run columns
    :func:`official_runs` computed), so the rows of a few entities can be computed from
    those entities' runs alone, equal to the whole table's rows for them.

    Args:
        view: Feature view name (a key of ``VIEWS``).
        runs: :func:`official_runs` output (the whole history, or every run of the
            entities wanted).
        p: Resolved parameters.

    Returns:
        The view's entity keys, ``event_timestamp`` (UTC) and features, one row per
        (entity keys, event_timestamp).
    """
    if view == "horse_form":
        frame = _horse_state(runs, p)
    elif view in ("jockey_form", "trainer_form"):
        key, prefix = ("jockey_id", "j") if view == "jockey_form" else ("trainer_id", "t")
        frame = _connection_state(runs, key, prefix, int(p[f"{view.split('_')[0]}_recent_rides"]), p)
    elif view == "jockey_trainer_form":
        frame = _pair_state(runs, ["jockey_id", "trainer_id"], "jt", p)
    elif view == "horse_jockey_form":
        frame = _pair_state(runs, ["horse_id", "jockey_id"], "hj", p)
    elif view == "track_profile":
        frame = _track_state(runs, p)
    else:
        raise KeyError(f"no state table for feature view {view!r} (have {sorted(VIEWS)})")
    return _finalise(frame, VIEWS[view], post_race_delay(p))


def build_state_tables(
    races: pd.DataFrame, runners: pd.DataFrame, params: dict[str, Any] | None = None
) -> dict[str, pd.DataFrame]:
    """Build one post-race state table per feature view.

    Only active runners of official races contribute; void and pending races,
    non-runners and runners that took no part add no state. Each row is the entity's
    state INCLUDING that race's result, stamped
    ``event_timestamp = off_time + post_race_delay_s``.

    Args:
        races: Canonical races table.
        runners: Canonical runners table.
        params: Overrides of ``specs.DEFAULT_PARAMS``.

    Returns:
        View name -> frame with the view's entity keys, ``event_timestamp`` (UTC) and
        features, one row per (entity keys, event_timestamp).
    """
    p = resolve_params(params)
    post_race_delay(p)
    runs = official_runs(races, runners, p)
    tables = {name: view_state(name, runs, p) for name in VIEWS}
    logger.info(
        "state tables from %d official runs: %s",
        len(runs),
        ", ".join(f"{name}={len(t)}" for name, t in tables.items()),
    )
    return tables
