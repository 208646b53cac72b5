"""Canonical tables: one row per race (`races`) and one per declared runner (`runners`).

Every source (synthetic world, racecard JSON, Hong Kong CSVs) is mapped onto exactly
these columns. Columns whose name starts with ``post_`` are known only after the off
(results); they may be used as *labels* or as history for *later* races, never as a
feature of the same race. ``docs/data_model.md`` documents every column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

POST_RACE_PREFIX = "post_"

RACE_TYPES = ("flat", "hurdle", "chase", "harness", "greyhound")
SURFACES = ("turf", "dirt", "all-weather", "sand")
RACE_STATUSES = ("official", "void", "pending")
RACE_GRADES = ("G1", "G2", "G3", "listed")  # group and listed races
OUTCOMES = (
    "finished",
    "pulled_up",
    "fell",
    "unseated",
    "refused",
    "disqualified",
    "did_not_finish",
    # withdrawn after the racecard (e.g. at the start): like a non-runner, no label and
    # no state, but the racecard said it would run (non_runner stays false)
    "took_no_part",
)
TOOK_NO_PART = "took_no_part"
SOURCES = ("synthetic", "racecards", "hkjc")

RACE_COLUMNS: dict[str, str] = {
    "race_id": "string",
    "source_race_id": "string",  # the feed's own race id, when it gives one
    "source": "string",
    "source_file": "string",
    "meeting_date": "string",  # local calendar date of the meeting, YYYY-MM-DD
    "race_month": "string",  # YYYY-MM of meeting_date: the re-ingestion / pinning unit
    "course": "string",
    "country": "string",
    "race_no": "Int64",
    "off_time": "datetime64[ns, UTC]",
    "race_type": "string",
    "surface": "string",
    "going": "string",
    "distance_m": "Int64",
    "race_class": "Int64",
    "race_grade": "string",  # G1 | G2 | G3 | listed (graded/listed races), else null
    "prize": "float64",
    "rail": "string",
    "rating_band": "string",
    "n_declared": "Int64",
    "n_runners": "Int64",  # declared minus non-runners
    "status": "string",  # official | void | pending (no result yet)
    # --- post-race ---
    "post_winning_time_s": "float64",
    "post_dead_heat_win": "boolean",
    # starters according to the result when it names more than the source has rows for
    # (Hong Kong race 3676: positions up to 12, 11 rows); null otherwise
    "post_starters": "Int64",
}

RUNNER_COLUMNS: dict[str, str] = {
    "race_id": "string",
    "horse_id": "string",
    "off_time": "datetime64[ns, UTC]",
    "race_month": "string",
    "source_file": "string",
    "horse_name": "string",
    "cloth_number": "Int64",
    "draw": "Int64",
    "age": "Int64",
    "sex": "string",
    "horse_country": "string",
    "weight_carried_kg": "float64",
    "body_weight_kg": "float64",
    "rating": "float64",
    "gear": "string",
    "jockey_id": "string",
    "trainer_id": "string",
    "odds_morning": "float64",
    "odds_final": "float64",
    # odds_final is at the source's display cap (HKJC: 99): the price was at least that
    "odds_capped": "boolean",
    "non_runner": "boolean",
    "comment": "string",  # pre-race text (tipster note, racecard comment)
    # --- post-race ---
    "post_position": "Int64",
    "post_outcome": "string",
    "post_won": "boolean",
    "post_dead_heat": "boolean",
    "post_lengths_behind": "float64",
    "post_finish_time_s": "float64",
    "post_starting_price": "float64",
    "post_in_running_positions": "string",  # JSON list, e.g. "[6, 4, 6, 1]"
    "post_comment": "string",
}

QUARANTINE_COLUMNS: dict[str, str] = {
    "source_file": "string",
    "race_id": "string",
    "horse_id": "string",
    "field": "string",
    "reason": "string",
    "detail": "string",
}


def post_race_columns(columns: list[str] | pd.Index) -> list[str]:
    """Return the columns that are only known after the off.

    Args:
        columns: Column names of a canonical table.

    Returns:
        The subset whose name marks it as a post-race result column.
    """
    return [c for c in columns if str(c).startswith(POST_RACE_PREFIX)]


def empty_frame(columns: dict[str, str]) -> pd.DataFrame:
    """Build an empty frame with the canonical columns and dtypes.

    Args:
        columns: Mapping of column name to pandas dtype string.

    Returns:
        A zero-row DataFrame with those columns.
    """
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


def conform(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Return a copy with exactly the canonical columns, in order, with canonical dtypes.

    Missing columns are added as nulls; extra columns are dropped.

    Args:
        df: Frame produced by a source adapter.
        columns: Mapping of column name to pandas dtype string.

    Returns:
        A new DataFrame; ``df`` is not modified.
    """
    out = pd.DataFrame(index=df.index)
    for col, dtype in columns.items():
        if col in df.columns:
            series = df[col]
        else:
            series = pd.Series(np.nan if dtype.startswith("float") else pd.NA, index=df.index)
        if dtype.startswith("datetime64"):
            out[col] = pd.to_datetime(series, utc=True)
        else:
            out[col] = series.astype(dtype)
    return out.reset_index(drop=True)


RacesSchema = pa.DataFrameSchema(
    {
        "race_id": pa.Column("string", unique=True, nullable=False),
        "source": pa.Column("string", pa.Check.isin(SOURCES)),
        "off_time": pa.Column("datetime64[ns, UTC]", nullable=False),
        "race_type": pa.Column("string", pa.Check.isin(RACE_TYPES), nullable=True),
        "surface": pa.Column("string", pa.Check.isin(SURFACES), nullable=True),
        "distance_m": pa.Column("Int64", pa.Check.in_range(100, 8000), nullable=False),
        "race_grade": pa.Column("string", pa.Check.isin(RACE_GRADES), nullable=True),
        "n_runners": pa.Column("Int64", pa.Check.ge(0)),
        "status": pa.Column("string", pa.Check.isin(RACE_STATUSES)),
    },
    strict=False,
    name="races",
)

RunnersSchema = pa.DataFrameSchema(
    {
        "race_id": pa.Column("string", nullable=False),
        "horse_id": pa.Column("string", nullable=False),
        "jockey_id": pa.Column("string", nullable=True),
        "trainer_id": pa.Column("string", nullable=True),
        "draw": pa.Column("Int64", pa.Check.in_range(1, 40), nullable=True),
        "age": pa.Column("Int64", pa.Check.in_range(1, 30), nullable=True),
        "weight_carried_kg": pa.Column("float64", pa.Check.in_range(30, 120), nullable=True),
        "body_weight_kg": pa.Column("float64", pa.Check.in_range(150, 900), nullable=True),
        # >= 1.0 rather than > 1.0: tote sources (HKJC) pay a minimum dividend of 1.0.
        # The JSON contract itself is stricter (> 1.0) and is enforced by its parser.
        "odds_final": pa.Column("float64", pa.Check.ge(1.0), nullable=True),
        "odds_morning": pa.Column("float64", pa.Check.ge(1.0), nullable=True),
        "post_position": pa.Column("Int64", pa.Check.ge(1), nullable=True),
        "post_outcome": pa.Column("string", pa.Check.isin(OUTCOMES), nullable=True),
    },
    unique=["race_id", "horse_id"],
    strict=False,
    name="runners",
)
