"""Entity frames: one row per active runner with its race context and labels.

:func:`entity_frame` joins canonical races and runners (the training path and a batch
of racecards); :func:`entity_frame_from_columns` builds the same rows from plain
columns (a request-sized racecard, without pandas joins). Labels are null unless the
race is official. The field lists name the canonical columns read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.frames import frame_from_arrays, string_array
from racecast.data.schema import TOOK_NO_PART
from racecast.features.columns import as_float, require_columns, track_key, track_keys, utc_ns
from racecast.features.specs import (
    CARD_ORDER,
    CONTEXT_COLUMNS,
    LABEL_COLUMNS,
    ODDS_CAPPED,
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
        runners: Runner columns, likewise. The frame may hold these arrays themselves
            (runner columns kept whole and in order are not copied): pass arrays nothing
            else writes to.

    Returns:
        As :func:`entity_frame`.
    """
    small = None
    n_runners = len(next(iter(runners.values()), ()))
    complete = all(c in races for c in RACE_FIELDS) and all(c in runners for c in RUNNER_FIELDS)
    if n_runners <= _SMALL_RUNNERS and complete:
        small = _entity_columns_small(races, runners, owned=True)
    if small is not None:
        return small
    return entity_frame(pd.DataFrame(dict(races)), pd.DataFrame(dict(runners)))


def _entity_columns_small(
    races: Mapping[str, Any], runners: Mapping[str, Any], owned: bool = False
) -> pd.DataFrame | None:
    """The small path of ``entity_frame`` on columns that hold every needed field.

    Plain Python over the few rows and per-column takes instead of a merge, a sort and a
    dozen pandas steps (the track key is :func:`track_keys`, the rule of training's
    :func:`track_key`); the frame's blocks are placed directly
    (:func:`racecast.data.frames.frame_from_arrays`). With ``owned`` the runner columns
    are used as they are when every runner is kept in its order (no take). Only the
    clean case is handled: unique non-null race ids, every runner in a race, every race
    with an off_time. Anything else returns None, so the batch path warns about or
    rejects it with its own messages.
    """
    race_id_array = _string_array(races["race_id"])
    race_ids = race_id_array.tolist()
    if any(r is pd.NA for r in race_ids) or len(set(race_ids)) != len(race_ids):
        return None
    if pd.isna(races["off_time"]).any():
        return None
    position = {r: i for i, r in enumerate(race_ids)}
    race_of = [position.get(r, -1) for r in _string_array(runners["race_id"]).tolist()]
    if min(race_of, default=0) < 0:
        return None
    off_ns = _utc_ns_array(races["off_time"])
    status = [
        "pending" if s is pd.NA else s.lower() for s in _string_array(races["status"]).tolist()
    ]
    flags = runners["non_runner"]
    if not isinstance(flags, pd.arrays.BooleanArray):
        flags = pd.array(flags).astype(_BOOLEAN)
    non_runner = flags.to_numpy(dtype=bool, na_value=False).tolist()
    if "post_outcome" in runners:  # took no part: out of the race like a non-runner
        outcome = _string_array(runners["post_outcome"]).tolist()
        non_runner = [
            nr or (o is not pd.NA and o == TOOK_NO_PART)
            for nr, o in zip(non_runner, outcome, strict=True)
        ]
    keep = [i for i, r in enumerate(race_of) if not non_runner[i] and status[r] != "void"]
    stamps = np.asarray(off_ns, dtype="datetime64[ns]").astype(np.int64).tolist()
    keep.sort(key=lambda i: (stamps[race_of[i]], race_ids[race_of[i]]))
    rows = np.asarray([race_of[i] for i in keep], dtype=np.int64)
    take = np.asarray(keep, dtype=np.int64)
    whole = owned and keep == list(range(len(race_of)))  # every runner, in order

    def runner_column(values: Any) -> Any:
        return values if whole else values.take(take)

    keys = track_keys(races["course"], races["surface"], races["distance_m"])
    race_level = {
        "race_id": race_id_array,
        "off_time": off_ns,
        "track_key": string_array(keys),
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
            columns[col] = runner_column(_string_array(runners[col]))
        else:
            columns[col] = runner_column(runners[col])
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
    if ODDS_CAPPED in runners:
        capped = runners[ODDS_CAPPED]
        if isinstance(capped, pd.arrays.BooleanArray):
            columns[ODDS_CAPPED] = runner_column(capped)
        else:
            columns[ODDS_CAPPED] = pd.array(capped, dtype=_BOOLEAN).take(take)
    else:
        columns[ODDS_CAPPED] = _null_array(_BOOLEAN, len(keep))
    columns["event_timestamp"] = columns["off_time"]
    return frame_from_arrays(
        _ENTITY_INDEX.view(), [columns[name] for name in ENTITY_COLUMNS], index
    )


_STRING = pd.StringDtype()
_BOOLEAN = pd.BooleanDtype()
_INT64 = pd.Int64Dtype()
#: The entity frame's columns (each frame gets a view: its own Index object).
_ENTITY_INDEX = pd.Index(ENTITY_COLUMNS)


def _string_array(values: Any) -> Any:
    """``values`` as a ``string`` array (as is when it is one)."""
    if isinstance(values, pd.arrays.StringArray) and values.dtype == _STRING:
        return values
    return pd.array(values, dtype=_STRING)


def _null_array(dtype: Any, length: int) -> Any:
    """An all-null masked array (``Int64`` or ``boolean``) of ``length`` rows."""
    kind = pd.arrays.IntegerArray if dtype == _INT64 else pd.arrays.BooleanArray
    values = np.zeros(length, dtype=np.int64 if dtype == _INT64 else bool)
    return kind(values, np.ones(length, dtype=bool))


def _utc_ns_array(values: Any) -> Any:
    """:func:`utc_ns` of an array (as is when it is already UTC nanoseconds)."""
    if str(getattr(values, "dtype", "")) == "datetime64[ns, UTC]":
        return values
    return utc_ns(pd.Series(values), "races.off_time").array


def _null_labels(index: pd.Index, card: Any) -> dict[str, Any]:
    """``_label_columns`` when no race is official: null labels and the card order."""
    labels = {name: _null_array(_INT64, len(index)) for name in LABEL_COLUMNS}
    if card is None:
        order = _null_array(_INT64, len(index))
    elif isinstance(card, pd.arrays.IntegerArray) and card.dtype == _INT64:
        order = card.copy()  # what pd.array(card, dtype="Int64") makes of it
    elif isinstance(card.dtype, pd.Int64Dtype):
        order = pd.array(card, dtype=_INT64)
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
