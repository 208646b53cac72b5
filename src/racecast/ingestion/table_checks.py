"""Vectorised checks of canonical races and runners (used by ``validate_and_split``).

The pandera schemas of the primary tables (``_RACES``, ``_RUNNERS``: the canonical
schemas plus the ingestion-only columns) and the checks that turn records into
problems (one row per record, field, reason and message): schema failure cases
(``_schema_problems``), plausibility rules (``_plausibility_problems``), the rules of a
race (``_race_checks``: duplicates, races without active runners, declared field
sizes, dead-heat flags, results of races that are not official) and of its runners
(``_runner_checks``), and the standby-draw warnings (``_draw_warnings``), which never
quarantine. ``racecast.ingestion.validate`` turns problems into quarantine and report.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from racecast.data.schema import QUARANTINE_COLUMNS, RacesSchema, RunnersSchema
from racecast.ingestion.plausibility import REASON as IMPLAUSIBLE
from racecast.ingestion.plausibility import Plausibility, implausible
from racecast.ingestion.text import safe_text, show_value


class IngestionInternalError(RuntimeError):
    """A bug, never bad input: counts that do not add up, or non-canonical dtypes."""


_PROBLEM_COLUMNS = ["row", "field", "reason", "detail"]

_RACES = RacesSchema.add_columns(
    {
        "meeting_date": pa.Column("string", pa.Check.str_matches(r"^\d{4}-\d{2}-\d{2}$")),
        "race_month": pa.Column("string", pa.Check.str_matches(r"^\d{4}-\d{2}$")),
        "n_declared": pa.Column("Int64", pa.Check.ge(0)),
    }
)
_RUNNERS = RunnersSchema.add_columns({"non_runner": pa.Column("boolean")})


def _stack(frames: list[pd.DataFrame], columns: list[str] = _PROBLEM_COLUMNS) -> pd.DataFrame:
    """Concatenate the non-empty frames.

    Args:
        frames: Frames with the same columns.
        columns: Columns of the result when every frame is empty.

    Returns:
        One frame with a fresh index.
    """
    kept = [f for f in frames if len(f)]
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=columns)


def _where(frame: pd.DataFrame, runners: bool) -> pd.Series:
    """Name each record for messages: file, race and (for runners) horse.

    Args:
        frame: Races or runners.
        runners: Whether ``frame`` holds runners.

    Returns:
        One string per row.
    """
    text = (
        frame["source_file"].fillna("(unknown file)")
        + ": race "
        + frame["race_id"].fillna("(no race_id)")
    )
    if runners:
        text = text + " horse " + frame["horse_id"].fillna("(no horse_id)")
    return text.astype(object)


def _problems(mask: pd.Series, field: str, reason: str, detail: pd.Series) -> pd.DataFrame:
    """Collect the rows of ``mask`` as problems.

    Args:
        mask: Boolean (nullable) per record; NA counts as False.
        field: Field at fault.
        reason: Stable reason code.
        detail: Message per record.

    Returns:
        Problems with columns ``row, field, reason, detail``.
    """
    hit = mask.fillna(False).astype(bool)
    return pd.DataFrame(
        {"row": hit.index[hit], "field": field, "reason": reason, "detail": detail[hit].to_numpy()}
    )


def _schema_problems(frame: pd.DataFrame, schema: pa.DataFrameSchema, table: str) -> pd.DataFrame:
    """Validate ``frame`` lazily with pandera and turn failure cases into problems.

    Args:
        frame: Canonical races or runners.
        schema: The pandera schema.
        table: ``races`` or ``runners``.

    Returns:
        Problems (one per record, column and reason).

    Raises:
        IngestionInternalError: If a whole column fails (a dtype bug, not bad data).
    """
    try:
        schema.validate(frame, lazy=True)
        return pd.DataFrame(columns=_PROBLEM_COLUMNS)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    if cases["index"].isna().any():
        whole = cases[cases["index"].isna()].iloc[0]
        raise IngestionInternalError(
            f"internal error: {table} column {whole['column']!r} fails {whole['check']!r} as a whole "
            f"({whole['failure_case']!r}); the adapter does not produce canonical dtypes"
        )
    rows = cases["index"].astype(int).to_numpy()
    check = cases["check"].astype(str)
    column = cases["column"].astype(str)
    reason = pd.Series("invalid_value", index=cases.index)
    reason[check.str.startswith(("in_range", "greater_than", "less_than"))] = "out_of_range"
    reason[check == "not_nullable"] = "missing_field"
    reason[check == "field_uniqueness"] = (
        "duplicate_race" if table == "races" else "duplicate_value"
    )
    multi = check == "multiple_fields_uniqueness"
    reason[multi] = "duplicate_runner"
    field = column.where(~multi, "horse_id")
    where = _where(frame, runners=table == "runners").to_numpy()[rows]
    shown = cases["failure_case"].map(show_value)
    message = (
        where
        + ": "
        + column.to_numpy()
        + " = "
        + shown.to_numpy()
        + " fails the "
        + table
        + " schema check "
        + check.to_numpy()
    )
    message = pd.Series(message).where(
        ~multi.to_numpy(),
        pd.Series(where + ": the same horse is listed more than once in the race"),
    )
    out = pd.DataFrame(
        {
            "row": rows,
            "field": field.to_numpy(),
            "reason": reason.to_numpy(),
            "detail": message.to_numpy(),
        }
    )
    return out.drop_duplicates(["row", "field", "reason"])


def _draw_warnings(races: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """Warn about primary runners drawn above their race's declared runners (standby starters).

    Args:
        races: Primary races.
        runners: Primary runners.

    Returns:
        ``draw_above_field`` rows in ``QUARANTINE_COLUMNS``, in runner order.
    """
    declared = runners["race_id"].map(
        races.drop_duplicates("race_id").set_index("race_id")["n_declared"]
    )
    above = (runners["draw"] > declared).fillna(False).astype(bool)
    hit = runners[above]
    detail = (
        _where(hit, runners=True)
        + ": draw "
        + hit["draw"].astype(str)
        + " is above the "
        + declared[above].astype(str)
        + " declared runners (a standby starter?); kept"
    )
    return pd.DataFrame(
        {
            "source_file": hit["source_file"].to_numpy(dtype=object),
            "race_id": hit["race_id"].to_numpy(dtype=object),
            "horse_id": hit["horse_id"].to_numpy(dtype=object),
            "field": "draw",
            "reason": "draw_above_field",
            "detail": detail.map(safe_text).to_numpy(dtype=object),
        },
        columns=list(QUARANTINE_COLUMNS),
    )


def _plausibility_problems(
    races: pd.DataFrame, runners: pd.DataFrame, rules: Plausibility, as_of: object
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Problems of race and runner records that break a plausibility rule."""
    found = implausible(races, runners, rules, as_of)
    tables = {"races": (races, False), "runners": (runners, True)}
    out = []
    for table, (frame, is_runner) in tables.items():
        mine = [v for v in found if v.table == table]
        rows = [v.row for v in mine]
        where = _where(frame.iloc[rows], runners=is_runner).to_numpy() if rows else []
        out.append(
            pd.DataFrame(
                {
                    "row": pd.Series(rows, dtype="int64"),
                    "field": [v.field for v in mine],
                    "reason": IMPLAUSIBLE,
                    "detail": [f"{w}: {v.detail}" for w, v in zip(where, mine, strict=True)],
                },
                columns=_PROBLEM_COLUMNS,
            )
        )
    return out[0], out[1]


def _race_facts(races: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """Count declared, active and winning runners per race.

    Args:
        races: Canonical races.
        runners: Canonical runners.

    Returns:
        One row per race of ``races`` (same index): ``declared``, ``active``, ``winners``.
    """
    active = ~runners["non_runner"].fillna(False).astype(bool)
    per_race = (
        pd.DataFrame(
            {
                "race_id": runners["race_id"],
                "declared": 1,
                "active": active.astype(int),
                "winners": (active & (runners["post_position"] == 1).fillna(False)).astype(int),
            }
        )
        .groupby("race_id", dropna=True)[["declared", "active", "winners"]]
        .sum()
    )
    facts = per_race.reindex(races["race_id"]).fillna(0).astype(int)
    facts.index = races.index
    return facts


def _race_checks(races: pd.DataFrame, runners: pd.DataFrame, source: str) -> pd.DataFrame:
    """Vectorised checks of race records against the params and their runners.

    Args:
        races: Canonical races.
        runners: Canonical runners.
        source: ``params["source"]``.

    Returns:
        Problems of race records.
    """
    facts = _race_facts(races, runners)
    where = _where(races, runners=False)
    official = (races["status"] == "official").fillna(False)
    dh_flag = races["post_dead_heat_win"]
    return _stack(
        [
            _problems(
                races["source"].notna() & (races["source"] != source),
                "source",
                "invalid_value",
                where
                + ": source = "
                + races["source"].fillna("")
                + f" differs from ingestion.source {source!r}",
            ),
            _problems(
                races["race_month"].notna()
                & (races["race_month"] != races["meeting_date"].str[:7]),
                "race_month",
                "invalid_value",
                where
                + ": race_month = "
                + races["race_month"].fillna("")
                + " is not the month of meeting_date "
                + races["meeting_date"].fillna("(null)"),
            ),
            _problems(
                facts["active"] == 0,
                "runners",
                "race_without_runners",
                where
                + ": the race has "
                + facts["declared"].astype(str)
                + " declared runners and no active one",
            ),
            _problems(
                (races["n_declared"] != facts["declared"])
                | (races["n_runners"] != facts["active"]),
                "n_runners",
                "field_size_mismatch",
                where
                + ": n_declared/n_runners = "
                + races["n_declared"].astype(str)
                + "/"
                + races["n_runners"].astype(str)
                + " but the runners table has "
                + facts["declared"].astype(str)
                + "/"
                + facts["active"].astype(str),
            ),
            _problems(
                official & (facts["active"] > 0) & (facts["winners"] == 0),
                "post_position",
                "official_without_winner",
                where + ": an official result without a runner at position 1",
            ),
            _problems(
                official & dh_flag.notna() & (dh_flag != (facts["winners"] > 1)),
                "post_dead_heat_win",
                "dead_heat_flag_mismatch",
                where
                + ": post_dead_heat_win = "
                + dh_flag.astype(str)
                + " but "
                + facts["winners"].astype(str)
                + " runners are at position 1",
            ),
        ]
    )


def _runner_checks(races: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """Vectorised checks of runner records against their race and each other.

    Args:
        races: Canonical races.
        runners: Canonical runners.

    Returns:
        Problems of runner records.
    """
    lookup = races.drop_duplicates("race_id").set_index("race_id")
    facts = _race_facts(races, runners)
    facts.index = races["race_id"]
    facts = facts[~facts.index.duplicated()]
    status = runners["race_id"].map(lookup["status"])
    # The field is the active runners present, or more when the result itself names more
    # starters than the source has rows for (post_starters; Hong Kong race 3676).
    starters = (
        pd.to_numeric(lookup.get("post_starters"), errors="coerce")
        if "post_starters" in lookup
        else None
    )
    field_size = runners["race_id"].map(facts["active"]).astype("float64")
    if starters is not None:
        field_size = field_size.combine(runners["race_id"].map(starters).astype("float64"), max)
    field_size = field_size.astype("Int64")
    where = _where(runners, runners=True)
    active = ~runners["non_runner"].fillna(False).astype(bool)
    position = runners["post_position"]
    has_position = position.notna()
    official = (status == "official").fillna(False).astype(bool)
    tie = active & has_position & runners.duplicated(["race_id", "post_position"], keep=False)
    dead_heat = runners["post_dead_heat"]
    pos_text = position.astype(str)
    return _stack(
        [
            _problems(
                ~runners["race_id"].isin(races["race_id"]),
                "race_id",
                "runner_unknown_race",
                where + ": race_id is not in the races table",
            ),
            _problems(
                active
                & runners["draw"].notna()
                & runners.duplicated(["race_id", "draw"], keep=False)
                & active,
                "draw",
                "duplicate_draw",
                where
                + ": draw "
                + runners["draw"].astype(str)
                + " is shared by another active runner",
            ),
            _problems(
                ~official & runners["race_id"].isin(races["race_id"]) & has_position,
                "post_position",
                "result_on_unofficial_race",
                where
                + ": post_position = "
                + pos_text
                + " but the race status is "
                + status.fillna("(null)").astype(str),
            ),
            _problems(
                official & ~active & has_position,
                "post_position",
                "non_runner_with_position",
                where + ": a non-runner has post_position = " + pos_text,
            ),
            _problems(
                official & active & has_position & (position > field_size),
                "post_position",
                "position_beyond_field",
                where
                + ": post_position = "
                + pos_text
                + " is beyond the field of "
                + field_size.astype(str)
                + " runners",
            ),
            _problems(
                official & active & dead_heat.eq(True) & ~tie,
                "post_dead_heat",
                "dead_heat_without_tie",
                where
                + ": post_dead_heat is true but no other runner shares post_position = "
                + pos_text,
            ),
            _problems(
                official & tie & dead_heat.eq(False) & (position == 1),
                "post_dead_heat",
                "two_winners_without_dead_heat",
                where
                + ": shares post_position = 1 with another runner but post_dead_heat is false",
            ),
            _problems(
                official & tie & dead_heat.eq(False) & (position != 1),
                "post_dead_heat",
                "tied_position_without_dead_heat",
                where
                + ": shares post_position = "
                + pos_text
                + " with another runner but post_dead_heat is false",
            ),
        ]
    )
