"""Hong Kong Jockey Club adapter (Kaggle ``gdaley/hkracing``): CSVs -> canonical tables.

Maps ``data/01_raw/hkjc/races.csv`` (one row per race) and ``runs.csv`` (one row per
runner) onto ``racecast.data.schema`` (``RACE_COLUMNS``, ``RUNNER_COLUMNS``,
``QUARANTINE_COLUMNS``). Provenance and data-quality notes of the files are in
``../shared/data/hkracing/SOURCE.md``. Every quirk of the data is mapped explicitly:

=========================  ================================================================
source quirk               canonical mapping
=========================  ================================================================
integer ids                ``race_id``, ``horse_id``, ``jockey_id``, ``trainer_id`` kept as
                           the dataset's own ids, as text ("0", "3917").
dates obscured (shifted)   Only the gaps between dates are right. ``meeting_date`` is the
                           file's date, ``race_month`` its "YYYY-MM".
no post times              ``off_time`` = date + fixed local first post by venue (ST 12:30,
                           HV 18:45) + 30 min per ``race_no`` after the first, in
                           Asia/Hong_Kong (+08:00), stored as UTC. Strictly increasing
                           by ``race_no`` within a meeting; the last HV race (no. 11) is at
                           23:45, so every off stays on its meeting's local date.
venue / config             ``course`` = venue (ST Sha Tin, HV Happy Valley), ``rail`` =
                           config (A, A+3, B, B+2, C, C+3); ``country`` "HK".
surface 0 / 1              0 -> "turf", 1 -> "dirt"; any other code is a format error.
going in capitals          lowercased ("GOOD TO FIRM" -> "good to firm").
horse_ratings              ``rating_band`` as given ("60-40", "G").
race_class codes           as given: 1..5 are the classes; 0, 6, 11, 12, 13 are not
                           explained by the source (presumably group, Griffin and
                           restricted races, unverified) and are kept unchanged.
empty prize                null ``prize``.
weights in lb              ``actual_weight`` (lb carried) -> ``weight_carried_kg``,
                           ``declared_weight`` (lb, horse body weight) ->
                           ``body_weight_kg``; 1 lb = 0.45359237 kg.
win_odds capped at 99      ``odds_final`` = ``win_odds`` (final tote price, known at the
                           off: a legitimate pre-race feature); 99 is kept and flagged
                           ``odds_capped=True``. 1.0 is the tote minimum and is kept.
                           No morning prices: ``odds_morning`` null.
place_odds                 not a canonical column: dropped.
horse_type mixes sex and   Gelding/Horse/Colt/Mare/Rig/Filly -> lowercase ``sex``; the
coat colour                coat colours Brown/Roan/Grey -> null ``sex``; blank -> null.
horse_gear "--"            "--" means no gear -> null ``gear``.
horse_no                   ``cloth_number``; ``draw``, ``age`` = horse_age,
                           ``rating`` = horse_rating, ``horse_country`` as given.
no horse names/comments    ``horse_name``, ``comment``, ``post_comment`` null.
no non-runners             ``non_runner`` False; ``n_runners`` = rows in
                           runs.csv for the race.
result                     ``post_position`` as given (also for 999-length runners).
won 0.0 / 1.0              ``post_won`` = won == 1.
dead heats                 ``post_dead_heat`` True when another runner of the race has the
                           same position (12 dead heats for first, others further back);
                           races: ``post_dead_heat_win`` = more than one winner.
lengths_behind 999         the source's code for did-not-finish / pulled up / tailed off:
                           ``post_lengths_behind`` null, ``post_outcome``
                           "did_not_finish" (their ``result`` position is kept).
                           Otherwise ``post_outcome`` is "finished" when a position is
                           given, null when not.
negative lengths_behind    7 data errors (-0.1 to -0.5 on placed runners): null
                           ``post_lengths_behind``; outcome stays "finished". The 2 values
                           >= 100 (tailed off, with a finish time) are kept.
finish_time                ``post_finish_time_s``; races ``post_winning_time_s`` = the
                           fastest winner's finish_time.
win_odds (result side)     also ``post_starting_price``.
position_sec1..6           ``post_in_running_positions``: JSON list text of the non-null
                           positions, e.g. "[6, 4, 6, 10]".
behind_sec*, time*,        post-race, no canonical column: dropped (races ``sec_time*``,
races sec_time*/time*,     ``time*``, dividends and combinations too).
place_*, win_*
status                     "official" for every race with runners.
race 6108 has no runs      quarantined (race-level row, ``horse_id`` null) with reason
                           ``race_without_runners``; it counts in ``races_in``.
run of an unknown race     quarantined with reason ``runner_unknown_race``; it counts in
                           ``runners_in``. Every other run is a parsed runner.
=========================  ================================================================

Corrections that do not reject a record (nulled negative lengths, 999 lengths, coat
colours, capped odds) are never written to the quarantine, which counts rejected records
only: a runner in both the parsed and the quarantine table would break the accounting
``runners_in = parsed + quarantined``. They are logged instead, as one ``INFO`` line of
counts ("hkjc adapt notes: ...", see ``adapt_notes``).

The source's result columns (``HKJC_POST_RACE_COLUMNS``) leak the outcome; they only
ever land in ``post_*`` columns or are dropped, never in a pre-race column.

Structural problems (missing columns, non-numeric values in numeric columns, duplicate
race ids or race numbers within a meeting, unknown venue or surface codes) raise
``ValueError`` naming the file and column: they mean the files are not the known dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from racecast.data.schema import (
    QUARANTINE_COLUMNS,
    RACE_COLUMNS,
    RUNNER_COLUMNS,
    conform,
)
from racecast.ingestion.hkjc_format import (
    COAT_COLOURS,
    COUNTRY,
    FIRST_POST_LOCAL,
    HORSE_TYPE_SEX,
    LB_TO_KG,
    LENGTHS_DID_NOT_FINISH,
    LOCAL_TZ,
    MINUTES_BETWEEN_RACES,
    NO_GEAR,
    ODDS_CAP,
    POSITION_COLUMNS,
    RACE_TYPE,
    RACES_FILE,
    RACES_REQUIRED_COLUMNS,
    RUNS_FILE,
    RUNS_REQUIRED_COLUMNS,
    SOURCE,
    STATUS_OFFICIAL,
    SURFACE_CODES,
    raw_path,
)

logger = logging.getLogger(__name__)


def check_required_columns(df: pd.DataFrame, required: tuple[str, ...], file: str) -> None:
    """Raise if a raw frame lacks columns the adapter reads.

    Args:
        df: Raw frame as loaded from the CSV.
        required: Column names the adapter needs.
        file: File name, used in the error message.

    Raises:
        ValueError: Naming the file and every missing column.
    """
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{raw_path(file)}: missing required columns: {', '.join(missing)}")


def to_number(series: pd.Series, file: str, column: str) -> pd.Series:
    """Convert a raw column to float, treating blanks as null.

    Args:
        series: Raw column (numbers, or text when the CSV was read as strings).
        file: File name, used in the error message.
        column: Column name, used in the error message.

    Returns:
        A float64 Series (NaN where the source is empty).

    Raises:
        ValueError: If a non-empty value is not a number.
    """
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64")
    text = series.astype("string").str.strip().replace("", pd.NA)
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = text.notna() & numbers.isna()
    if bad.any():
        examples = ", ".join(repr(v) for v in text[bad].unique()[:3])
        raise ValueError(
            f"{raw_path(file)}: column {column!r} has {int(bad.sum())} non-numeric values (e.g. {examples})"
        )
    return numbers


def to_integer(series: pd.Series, file: str, column: str) -> pd.Series:
    """Convert a raw column to nullable integers.

    Args:
        series: Raw column.
        file: File name, used in the error message.
        column: Column name, used in the error message.

    Returns:
        An Int64 Series (NA where the source is empty).

    Raises:
        ValueError: If a value is not a number or not a whole number.
    """
    numbers = to_number(series, file, column)
    fractional = numbers.notna() & (numbers != np.round(numbers))
    if fractional.any():
        examples = ", ".join(str(v) for v in numbers[fractional].unique()[:3])
        raise ValueError(
            f"{raw_path(file)}: column {column!r} has {int(fractional.sum())} non-integer values (e.g. {examples})"
        )
    return numbers.astype("Int64")


def to_id_text(series: pd.Series, file: str, column: str) -> pd.Series:
    """Turn a raw id column into text ids ("3917"), whatever dtype the CSV reader chose.

    Args:
        series: Raw id column (integers, floats from a column with blanks, or text).
        file: File name, used in the error message.
        column: Column name, used in the error message.

    Returns:
        A string Series, NA where the id is empty.
    """
    if pd.api.types.is_numeric_dtype(series):
        return to_integer(series, file, column).astype("string")
    return to_text(series)


def to_text(series: pd.Series) -> pd.Series:
    """Convert a raw text column to stripped strings, blanks as null.

    Args:
        series: Raw column.

    Returns:
        A string Series.
    """
    return series.astype("string").str.strip().replace("", pd.NA)


def post_time_config(params: Mapping[str, Any] | None) -> tuple[dict[str, str], int]:
    """Read the local first-post times by venue and the minutes between races.

    Defaults are ``FIRST_POST_LOCAL`` and ``MINUTES_BETWEEN_RACES``; the ingestion
    parameters may override them with ``hkjc.first_post_local`` (venue -> "HH:MM") and
    ``hkjc.minutes_between_races``.

    Args:
        params: The ``ingestion`` parameters (may be empty or None).

    Returns:
        ``(first_post_local, minutes_between_races)``.

    Raises:
        ValueError: If an override is malformed.
    """
    hk = dict((params or {}).get("hkjc") or {})
    first_post = dict(FIRST_POST_LOCAL)
    first_post.update(hk.get("first_post_local") or {})
    for venue, hhmm in first_post.items():
        parsed = pd.to_datetime(str(hhmm), format="%H:%M", errors="coerce")
        if pd.isna(parsed):
            raise ValueError(
                f"parameter ingestion.hkjc.first_post_local.{venue}: {hhmm!r} is not a HH:MM time"
            )
    minutes = hk.get("minutes_between_races", MINUTES_BETWEEN_RACES)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
        raise ValueError(
            f"parameter ingestion.hkjc.minutes_between_races: {minutes!r} is not a positive integer"
        )
    return first_post, minutes


def off_times(
    dates: pd.Series,
    venues: pd.Series,
    race_nos: pd.Series,
    first_post_local: Mapping[str, str],
    minutes_between_races: int,
) -> pd.Series:
    """Build UTC off times from the meeting date, venue and race number.

    The source has no post times: race 1 goes at the venue's local first post, each later
    race ``minutes_between_races`` after the previous one, in Asia/Hong_Kong.

    Args:
        dates: Meeting dates (datetime64, midnight).
        venues: Venue codes (ST, HV).
        race_nos: Race numbers within the meeting (Int64, from 1).
        first_post_local: Venue -> local "HH:MM" of race 1.
        minutes_between_races: Gap between consecutive races, in minutes.

    Returns:
        A ``datetime64[ns, UTC]`` Series aligned with the inputs.

    Raises:
        ValueError: If a venue has no first-post time.
    """
    unknown = sorted(set(venues.dropna().unique()) - set(first_post_local))
    if unknown or venues.isna().any():
        shown = ", ".join(map(repr, unknown)) if unknown else "empty values"
        raise ValueError(
            f"{raw_path(RACES_FILE)}: column 'venue' has venues without a first-post time: "
            f"{shown} (known: {', '.join(first_post_local)})"
        )
    first_post = venues.map(
        {v: pd.Timedelta(f"{hhmm}:00") for v, hhmm in first_post_local.items()}
    ).astype("timedelta64[ns]")
    gap = pd.to_timedelta((race_nos.astype("float64") - 1) * minutes_between_races, unit="min")
    local = (dates + first_post + gap).dt.tz_localize(LOCAL_TZ)
    return local.dt.tz_convert("UTC")


def check_unique_races(races: pd.DataFrame) -> None:
    """Raise if race ids repeat, or a race number repeats within a meeting.

    Args:
        races: Adapted races with ``race_id``, ``meeting_date``, ``course``, ``race_no``.

    Raises:
        ValueError: Naming races.csv, the column(s) and examples.
    """
    dup_ids = races["race_id"][races["race_id"].duplicated()]
    if len(dup_ids):
        raise ValueError(
            f"{raw_path(RACES_FILE)}: column 'race_id' has {len(dup_ids)} duplicate ids "
            f"(e.g. {', '.join(dup_ids.unique()[:3])})"
        )
    keys = ["meeting_date", "course", "race_no"]
    dup_keys = races[races.duplicated(keys)]
    if len(dup_keys):
        first = dup_keys.iloc[0]
        raise ValueError(
            f"{raw_path(RACES_FILE)}: columns 'date', 'venue', 'race_no' repeat for "
            f"{len(dup_keys)} races (e.g. {first['meeting_date']} {first['course']} race "
            f"{first['race_no']}): off times would not be strictly increasing"
        )


def adapt_race_fields(hkjc_races: pd.DataFrame, params: Mapping[str, Any] | None) -> pd.DataFrame:
    """Map races.csv onto the canonical pre-race race columns.

    Args:
        hkjc_races: Raw races.csv frame (not modified).
        params: The ``ingestion`` parameters (post-time overrides, see ``post_time_config``).

    Returns:
        A new frame with ``race_id`` and the pre-race race columns (no counts, status or
        results).

    Raises:
        ValueError: On unparsable dates, unknown surface codes or venues, duplicates.
    """
    file = RACES_FILE
    date_text = to_text(hkjc_races["date"])
    dates = pd.to_datetime(date_text, format="%Y-%m-%d", errors="coerce")
    bad_dates = dates.isna()
    if bad_dates.any():
        examples = ", ".join(repr(v) for v in date_text[bad_dates].astype(object).unique()[:3])
        raise ValueError(
            f"{raw_path(file)}: column 'date' has {int(bad_dates.sum())} values that are not "
            f"YYYY-MM-DD dates (e.g. {examples})"
        )
    surface_codes = to_integer(hkjc_races["surface"], file, "surface")
    surface = surface_codes.map(SURFACE_CODES).astype("string")
    unknown_surface = surface_codes.notna() & surface.isna()
    if unknown_surface.any():
        codes = ", ".join(str(c) for c in sorted(surface_codes[unknown_surface].unique()))
        raise ValueError(
            f"{raw_path(file)}: column 'surface' has unknown codes {codes} (known: 0 turf, 1 dirt)"
        )
    race_nos = to_integer(hkjc_races["race_no"], file, "race_no")
    venues = to_text(hkjc_races["venue"])
    first_post, minutes = post_time_config(params)
    out = pd.DataFrame(
        {
            "race_id": to_id_text(hkjc_races["race_id"], file, "race_id"),
            "source": SOURCE,
            "source_file": file,
            "meeting_date": dates.dt.strftime("%Y-%m-%d"),
            "race_month": dates.dt.strftime("%Y-%m"),
            "course": venues,
            "country": COUNTRY,
            "race_no": race_nos,
            "off_time": off_times(dates, venues, race_nos, first_post, minutes),
            "race_type": RACE_TYPE,
            "surface": surface,
            "going": to_text(hkjc_races["going"]).str.lower(),
            "distance_m": to_integer(hkjc_races["distance"], file, "distance"),
            "race_class": to_integer(hkjc_races["race_class"], file, "race_class"),
            "prize": to_number(hkjc_races["prize"], file, "prize"),
            "rail": to_text(hkjc_races["config"]),
            "rating_band": to_text(hkjc_races["horse_ratings"]),
        },
        index=hkjc_races.index,
    )
    check_unique_races(out)
    return out


def in_running_positions(positions: pd.DataFrame) -> pd.Series:
    """Format per-section positions as JSON list text, skipping empty sections.

    Args:
        positions: One Int64 column per section, in section order.

    Returns:
        A string Series such as "[6, 4, 6, 10]" ("[]" when every section is empty).
    """
    text = positions.astype("string")
    joined = text.iloc[:, 0].str.cat([text[c] for c in text.columns[1:]], sep=",", na_rep="")
    items = joined.str.replace(r",{2,}", ",", regex=True).str.strip(",")
    return "[" + items.str.replace(",", ", ", regex=False) + "]"


def sex_from_horse_type(horse_type: pd.Series) -> pd.Series:
    """Map ``horse_type`` to a lowercase sex; coat colours and blanks become null.

    Args:
        horse_type: Raw ``horse_type`` column.

    Returns:
        A string Series (gelding, horse, colt, mare, rig, filly or NA).
    """
    return to_text(horse_type).map(HORSE_TYPE_SEX).astype("string")


def dead_heat_flags(race_ids: pd.Series, positions: pd.Series) -> pd.Series:
    """Flag runners whose finishing position is shared with another runner of the race.

    Args:
        race_ids: Race id per runner.
        positions: Finishing position per runner (Int64, NA when unknown).

    Returns:
        A boolean Series, NA where the position is unknown.
    """
    keys = pd.DataFrame({"race_id": race_ids, "position": positions})
    shared = keys.duplicated(keep=False) & positions.notna()
    return shared.astype("boolean").mask(positions.isna())


def outcomes(positions: pd.Series, lengths: pd.Series) -> pd.Series:
    """Derive ``post_outcome``: did_not_finish for 999 lengths, finished when placed.

    Args:
        positions: Finishing position (Int64).
        lengths: Raw ``lengths_behind`` (float, 999 = did not finish).

    Returns:
        A string Series, NA when neither a position nor the 999 code is given.
    """
    values = np.select(
        [lengths.eq(LENGTHS_DID_NOT_FINISH).to_numpy(), positions.notna().to_numpy()],
        ["did_not_finish", "finished"],
        default=None,
    )
    return pd.Series(values, index=positions.index, dtype="string")


def adapt_runner_fields(hkjc_runs: pd.DataFrame) -> pd.DataFrame:
    """Map runs.csv onto the canonical runner columns (without off_time / race_month).

    Args:
        hkjc_runs: Raw runs.csv frame (not modified).

    Returns:
        A new frame with the runner columns derived from runs.csv.
    """
    file = RUNS_FILE
    race_ids = to_id_text(hkjc_runs["race_id"], file, "race_id")
    positions = to_integer(hkjc_runs["result"], file, "result")
    won = to_number(hkjc_runs["won"], file, "won")
    lengths = to_number(hkjc_runs["lengths_behind"], file, "lengths_behind")
    odds = to_number(hkjc_runs["win_odds"], file, "win_odds")
    gear = to_text(hkjc_runs["horse_gear"])
    section_positions = pd.DataFrame(
        {c: to_integer(hkjc_runs[c], file, c) for c in POSITION_COLUMNS}, index=hkjc_runs.index
    )
    return pd.DataFrame(
        {
            "race_id": race_ids,
            "horse_id": to_id_text(hkjc_runs["horse_id"], file, "horse_id"),
            "source_file": file,
            "horse_name": pd.Series(pd.NA, index=hkjc_runs.index, dtype="string"),
            "cloth_number": to_integer(hkjc_runs["horse_no"], file, "horse_no"),
            "draw": to_integer(hkjc_runs["draw"], file, "draw"),
            "age": to_integer(hkjc_runs["horse_age"], file, "horse_age"),
            "sex": sex_from_horse_type(hkjc_runs["horse_type"]),
            "horse_country": to_text(hkjc_runs["horse_country"]),
            "weight_carried_kg": to_number(hkjc_runs["actual_weight"], file, "actual_weight")
            * LB_TO_KG,
            "body_weight_kg": to_number(hkjc_runs["declared_weight"], file, "declared_weight")
            * LB_TO_KG,
            "rating": to_number(hkjc_runs["horse_rating"], file, "horse_rating"),
            "gear": gear.mask(gear == NO_GEAR),
            "jockey_id": to_id_text(hkjc_runs["jockey_id"], file, "jockey_id"),
            "trainer_id": to_id_text(hkjc_runs["trainer_id"], file, "trainer_id"),
            "odds_morning": np.nan,
            "odds_final": odds,
            "odds_capped": (odds >= ODDS_CAP).astype("boolean").mask(odds.isna()),
            "non_runner": False,
            "comment": pd.Series(pd.NA, index=hkjc_runs.index, dtype="string"),
            "post_position": positions,
            "post_outcome": outcomes(positions, lengths),
            "post_won": won.eq(1).astype("boolean").mask(won.isna()),
            "post_dead_heat": dead_heat_flags(race_ids, positions),
            "post_lengths_behind": lengths.mask(lengths.eq(LENGTHS_DID_NOT_FINISH) | (lengths < 0)),
            "post_finish_time_s": to_number(hkjc_runs["finish_time"], file, "finish_time"),
            "post_starting_price": odds,
            "post_in_running_positions": in_running_positions(section_positions),
            "post_comment": pd.Series(pd.NA, index=hkjc_runs.index, dtype="string"),
        },
        index=hkjc_runs.index,
    )


def race_summaries(runners: pd.DataFrame) -> pd.DataFrame:
    """Per-race counts and results from the adapted runners.

    Args:
        runners: Adapted runners with ``race_id``, ``post_won``, ``post_finish_time_s``.

    Returns:
        A frame indexed by ``race_id`` with ``n_declared``, ``n_runners``,
        ``post_winning_time_s`` (fastest winner's finish time) and ``post_dead_heat_win``.
    """
    won = runners["post_won"].fillna(False).astype(bool)
    grouped = pd.DataFrame(
        {
            "race_id": runners["race_id"],
            "won": won,
            "winner_time": runners["post_finish_time_s"].where(won),
        }
    ).groupby("race_id", sort=False)
    counts = grouped.size()
    # A race whose finishing positions go beyond its rows is missing a runner's row in
    # runs.csv (race 3676: 11 rows, positions up to 12): the result says 12 started (post_starters).
    max_position = pd.to_numeric(runners["post_position"], errors="coerce").groupby(runners["race_id"], sort=False).max()
    starters = np.maximum(counts, max_position.reindex(counts.index).fillna(0).astype("int64"))
    return pd.DataFrame(
        {
            "n_declared": counts,
            "post_starters": starters,
            "n_runners": counts,
            "post_winning_time_s": grouped["winner_time"].min(),
            "post_dead_heat_win": grouped["won"].sum() > 1,
        }
    )


def races_without_runners(races: pd.DataFrame, runner_race_ids: pd.Series) -> pd.DataFrame:
    """Quarantine rows for races that have no row in runs.csv.

    Args:
        races: Adapted races.
        runner_race_ids: ``race_id`` of every run.

    Returns:
        Quarantine rows (reason ``race_without_runners``, ``horse_id`` null).
    """
    empty = races[~races["race_id"].isin(runner_race_ids)]
    detail = (
        "no rows in runs.csv for race "
        + empty["race_id"]
        + " ("
        + empty["meeting_date"]
        + " "
        + empty["course"]
        + " race "
        + empty["race_no"].astype("string")
        + ")"
    )
    return pd.DataFrame(
        {
            "source_file": RACES_FILE,
            "race_id": empty["race_id"],
            "horse_id": pd.Series(pd.NA, index=empty.index, dtype="string"),
            "field": "race_id",
            "reason": "race_without_runners",
            "detail": detail,
        },
        index=empty.index,
    )


def runners_of_unknown_races(runners: pd.DataFrame, known_race_ids: pd.Series) -> pd.Series:
    """Flag runs whose race id is not in races.csv.

    Args:
        runners: Adapted runners.
        known_race_ids: ``race_id`` of every race in races.csv.

    Returns:
        A boolean Series aligned with ``runners``.
    """
    return ~runners["race_id"].isin(known_race_ids)


def unknown_race_quarantine(runners: pd.DataFrame) -> pd.DataFrame:
    """Quarantine rows for runs of races that are not in races.csv.

    Args:
        runners: The adapted runners to reject.

    Returns:
        Quarantine rows (reason ``runner_unknown_race``).
    """
    detail = "race_id " + runners["race_id"].fillna("<empty>") + " is not in races.csv"
    return pd.DataFrame(
        {
            "source_file": RUNS_FILE,
            "race_id": runners["race_id"],
            "horse_id": runners["horse_id"],
            "field": "race_id",
            "reason": "runner_unknown_race",
            "detail": detail,
        },
        index=runners.index,
    )


def adapt_notes(runners: pd.DataFrame, hkjc_runs: pd.DataFrame) -> dict[str, int]:
    """Count the corrections applied without rejecting a record.

    Args:
        runners: Adapted runners (all runs, before the unknown-race split).
        hkjc_runs: Raw runs.csv frame.

    Returns:
        Counts: capped odds, 999 lengths (did not finish), negative lengths nulled,
        coat colours in ``horse_type`` (sex null), blank ``horse_type``, other unmapped
        ``horse_type`` values.
    """
    lengths = to_number(hkjc_runs["lengths_behind"], RUNS_FILE, "lengths_behind")
    horse_type = to_text(hkjc_runs["horse_type"])
    coat = horse_type.isin(COAT_COLOURS)
    return {
        "odds_capped_at_99": int(runners["odds_capped"].fillna(False).sum()),
        "lengths_999_did_not_finish": int(lengths.eq(LENGTHS_DID_NOT_FINISH).sum()),
        "negative_lengths_nulled": int((lengths < 0).sum()),
        "horse_type_coat_colour_sex_null": int(coat.sum()),
        "horse_type_blank": int(horse_type.isna().sum()),
        "horse_type_unmapped": int(
            (horse_type.notna() & ~coat & ~horse_type.isin(HORSE_TYPE_SEX)).sum()
        ),
    }


def adapt_hkjc(
    hkjc_races: pd.DataFrame, hkjc_runs: pd.DataFrame, params: Mapping[str, Any] | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Adapt the Hong Kong CSVs to the canonical tables (see the module docstring).

    Args:
        hkjc_races: Raw ``data/01_raw/hkjc/races.csv`` (not modified).
        hkjc_runs: Raw ``data/01_raw/hkjc/runs.csv`` (not modified).
        params: The ``ingestion`` parameters; only the optional ``hkjc`` post-time
            overrides are read (see ``post_time_config``).

    Returns:
        ``(parsed_races, parsed_runners, parsed_quarantine, parse_summary)`` as documented
        in ``racecast.ingestion``: races with runners, every run of a known race, one
        quarantine row per race without runners and per run of an unknown race, and
        ``{"files_read": 2, "files_rejected": [], "races_in", "runners_in"}``.

    Raises:
        ValueError: If a required column is missing or a column cannot be read (the
            message names the file and column).
    """
    check_required_columns(hkjc_races, RACES_REQUIRED_COLUMNS, RACES_FILE)
    check_required_columns(hkjc_runs, RUNS_REQUIRED_COLUMNS, RUNS_FILE)

    races = adapt_race_fields(hkjc_races, params)
    runners = adapt_runner_fields(hkjc_runs)

    unknown = runners_of_unknown_races(runners, races["race_id"])
    known_runners = runners[~unknown]
    by_race = races.set_index("race_id")
    known_runners = known_runners.assign(
        off_time=known_runners["race_id"].map(by_race["off_time"]),
        race_month=known_runners["race_id"].map(by_race["race_month"]),
    )

    empty_races = races_without_runners(races, known_runners["race_id"])
    summaries = race_summaries(known_runners)
    races_with_runners = races[races["race_id"].isin(summaries.index)]
    races_with_runners = races_with_runners.join(summaries, on="race_id").assign(
        status=STATUS_OFFICIAL
    )

    quarantine = pd.concat(
        [empty_races, unknown_race_quarantine(runners[unknown])], ignore_index=True
    )
    notes = adapt_notes(runners, hkjc_runs)
    notes["races_without_runners"] = len(empty_races)
    notes["runners_unknown_race"] = int(unknown.sum())
    logger.info("hkjc adapt notes: %s", ", ".join(f"{k}={v}" for k, v in notes.items()))

    summary = {
        "files_read": 2,
        "files_rejected": [],
        "races_in": len(hkjc_races),
        "runners_in": len(hkjc_runs),
    }
    return (
        conform(races_with_runners, RACE_COLUMNS),
        conform(known_runners, RUNNER_COLUMNS),
        conform(quarantine, QUARANTINE_COLUMNS),
        summary,
    )
