"""Vectorised checks of canonical races and runners (used by ``validate_and_split``).

The pandera schemas of the primary tables (``_RACES``, ``_RUNNERS``: the canonical
schemas plus the ingestion-only columns) and the checks that turn records into
problems (one row per record, field, reason and message): schema failure cases
(``_schema_problems``), plausibility rules (``_plausibility_problems``), the
cross-record rules of races and runners (``_rule_checks``: it
evaluates the rule objects of ``racecast.ingestion.rules.RULES``), and the standby-draw
warnings (``_draw_warnings``), which never quarantine. ``racecast.ingestion.validate`` turns problems into quarantine and report.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from racecast.data.schema import QUARANTINE_COLUMNS, RacesSchema, RunnersSchema
from racecast.ingestion.plausibility import REASON as IMPLAUSIBLE
from racecast.ingestion.plausibility import Plausibility, implausible
from racecast.ingestion.rules import Tables, _where, rules_for
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


def _rule_checks(tables: Tables, table: str) -> pd.DataFrame:
    """Problems of ``table``'s records (``races`` or ``runners``): its rules in ``RULES``.

    Args:
        tables: The batch's canonical races and runners, built once for both tables so
            the per-race facts the rules share are computed once.
        table: ``races`` or ``runners``.

    Returns:
        Problems of that table's records.
    """
    return _stack([rule.problems(tables) for rule in rules_for(table)])
