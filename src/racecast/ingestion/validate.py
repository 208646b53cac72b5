"""Shared validation of every source: primary tables, quarantine and ingestion report.

``validate_and_split`` takes the four outputs of a source adapter (JSON racecards, HKJC
CSVs, ...) and splits the parsed records into the primary ``races``/``runners`` tables and
the ``quarantine``:

* the pandera schemas of ``racecast.data.schema`` (lazy validation; every failure case
  becomes a quarantine row) and vectorised checks: duplicates, races without active
  runners, declared field sizes, duplicate draws, positions beyond the field, non-runners
  with a position, dead-heat flags, results of races that are not official, runners
  without a race. (A non-finisher with a position breaks the JSON contract and is
  quarantined by its parser; other sources may keep the position they publish, as HKJC
  does for its did-not-finish runners.)
* a race whose record or *any* runner record is bad is quarantined as a whole, with all its
  runners (dropping a runner would silently change the field). Every runner record of such
  a race gets one ``race_quarantined`` row (the cause is in ``detail``), plus one row per
  problem of its own; the race record gets one row per problem of its own, or one
  ``race_quarantined`` row when only its runners (or records the adapter quarantined) are
  bad;
* ``params["months"]`` keeps only those race months; filtered-out records are not "in".

Quarantine rows and records. A row with a ``horse_id`` is about a runner record, a row with
a ``race_id`` and no ``horse_id`` about a race record, except rows whose reason is in
``NON_RECORD_REASONS`` (results of unknown races); rows without ``race_id`` are about
containers (a meeting, a file). Adapters give unreadable ids a placeholder starting with
``?``. A record is identified by ``(source_file, race_id, horse_id)``; when a file holds the
same record twice, both copies have a row with the same reason and field, so the number of
records behind an identity is the largest number of its rows sharing reason and field.

The report always satisfies ``races.in == races.primary + races.quarantined`` and the same
for runners; ``validate_and_split`` raises ``IngestionInternalError`` otherwise.

Warnings are about primary records that are kept as they are: a draw above the race's
declared runners (a standby starter; the JSON parser quarantines draws above
``contract.draw_limit``) is reported under ``warning_reasons`` (counts) and ``warnings``
(the first ``MAX_REPORTED_WARNINGS`` rows, in ``QUARANTINE_COLUMNS``), never quarantined.

The checks themselves live in ``racecast.ingestion.table_checks``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import pandas as pd

from racecast.data.schema import (
    QUARANTINE_COLUMNS,
    RACE_COLUMNS,
    RUNNER_COLUMNS,
    SOURCES,
    conform,
)
from racecast.ingestion.plausibility import Plausibility
from racecast.ingestion.rules import (
    QUARANTINED_RACE_FIELD,
    QUARANTINED_RUNNER_FIELD,
    RACE_QUARANTINED,
    Tables,
)
from racecast.ingestion.table_checks import (
    _RACES,
    _RUNNERS,
    IngestionInternalError,
    _draw_warnings,
    _plausibility_problems,
    _rule_checks,
    _schema_problems,
    _stack,
    _where,
)
from racecast.ingestion.text import safe_text

logger = logging.getLogger(__name__)

#: Reasons of quarantine rows that are about a result record, not a race or runner record.
NON_RECORD_REASONS = frozenset({"result_unknown_race", "invalid_result"})
QUARANTINE_PATH = "data/02_intermediate/quarantine.parquet"
REPORT_PATH = "data/08_reporting/ingestion_report.json"
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_MAX_CAUSES = 3
_KEYS = ["source_file", "race_id", "horse_id"]
MAX_REPORTED_WARNINGS = 100


class IngestionStrictError(RuntimeError):
    """``ingestion.strict`` is on and records were quarantined or files rejected."""


def parse_months(months: object) -> frozenset[str] | None:
    """Read the ``ingestion.months`` parameter.

    Args:
        months: ``None`` or a list of ``YYYY-MM`` strings.

    Returns:
        The months, or ``None`` to keep every month.

    Raises:
        ValueError: If the parameter is not ``None`` or a list of ``YYYY-MM`` strings.
    """
    if months is None:
        return None
    if isinstance(months, str | bytes) or not isinstance(months, Sequence):
        raise ValueError(
            f"parameter ingestion.months: expected a list of 'YYYY-MM' or null, got {months!r}"
        )
    bad = [m for m in months if not (isinstance(m, str) and _MONTH.match(m))]
    if bad:
        raise ValueError(
            f"parameter ingestion.months: {bad!r} are not months in the form 'YYYY-MM'"
        )
    return frozenset(months)


def parse_plausibility(values: object) -> Plausibility:
    """Read the ``ingestion.plausibility`` parameter (None: the default ranges).

    Raises:
        ValueError: If it is not a mapping of known ranges (the message names the range).
    """
    if values is None:
        return Plausibility()
    if isinstance(values, Plausibility):
        return values
    if not isinstance(values, dict):
        raise ValueError(f"parameter ingestion.plausibility: expected a mapping, got {values!r}")
    try:
        return Plausibility(**values)
    except ValueError as exc:  # pydantic's ValidationError names each bad range
        raise ValueError(f"parameter ingestion.plausibility: {exc}") from exc


def count_quarantined(quarantine: pd.DataFrame) -> tuple[int, int]:
    """Count the race and runner records behind quarantine rows.

    Args:
        quarantine: Rows in ``QUARANTINE_COLUMNS``.

    Returns:
        ``(races, runners)``: numbers of quarantined race and runner records.
    """
    records = quarantine[
        quarantine["race_id"].notna() & ~quarantine["reason"].isin(NON_RECORD_REASONS)
    ]
    if records.empty:
        return 0, 0
    copies = (
        records.groupby([*_KEYS, "reason", "field"], dropna=False)
        .size()
        .rename("copies")
        .reset_index()
        .groupby(_KEYS, dropna=False)["copies"]
        .max()
        .reset_index()
    )
    is_runner = copies["horse_id"].notna()
    return int(copies.loc[~is_runner, "copies"].sum()), int(copies.loc[is_runner, "copies"].sum())


def validate_and_split(
    parsed_races: pd.DataFrame,
    parsed_runners: pd.DataFrame,
    parsed_quarantine: pd.DataFrame,
    parse_summary: dict,
    params: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Validate an adapter's output and split it into primary tables and quarantine.

    Args:
        parsed_races: Races in canonical columns.
        parsed_runners: Runners in canonical columns, results merged in.
        parsed_quarantine: Records the adapter already quarantined.
        parse_summary: ``{"files_read", "files_rejected", "races_in", "runners_in"}``.
        params: ``params:ingestion`` (``source``, ``months``, optional ``plausibility``
            ranges, see :class:`~racecast.ingestion.plausibility.Plausibility`; the request
            path adds ``as_of``, the reference time of the off-time window).

    Returns:
        ``races``, ``runners``, ``quarantine`` (canonical columns) and the JSON-able
        ``ingestion_report``.

    Raises:
        ValueError: If ``params`` is malformed.
        IngestionInternalError: If the counts do not add up (a bug, never bad input).
    """
    source = params.get("source")
    if source not in SOURCES:
        raise ValueError(f"parameter ingestion.source: expected one of {SOURCES}, got {source!r}")
    months = parse_months(params.get("months"))
    rules = parse_plausibility(params.get("plausibility"))
    races = _canonical(parsed_races, RACE_COLUMNS)
    runners = _canonical(parsed_runners, RUNNER_COLUMNS)
    adapter_rows = _canonical(parsed_quarantine, QUARANTINE_COLUMNS)
    races_in, runners_in = int(parse_summary["races_in"]), int(parse_summary["runners_in"])

    if months is not None:
        keep_race = races["race_month"].isna() | races["race_month"].isin(months)
        gone = set(races.loc[~keep_race, "race_id"].dropna())
        keep_runner = ~runners["race_id"].isin(gone) & (
            runners["race_month"].isna() | runners["race_month"].isin(months)
        )
        gone |= set(runners.loc[~keep_runner, "race_id"].dropna())
        keep_row = ~adapter_rows["race_id"].isin(gone)
        gone_races, gone_runners = count_quarantined(adapter_rows[~keep_row])
        races_in -= int((~keep_race).sum()) + gone_races
        runners_in -= int((~keep_runner).sum()) + gone_runners
        races = races[keep_race].reset_index(drop=True)
        runners = runners[keep_runner].reset_index(drop=True)
        adapter_rows = adapter_rows[keep_row].reset_index(drop=True)

    odd_races, odd_runners = _plausibility_problems(races, runners, rules, params.get("as_of"))
    tables = Tables(races, runners, source)
    race_problems = _stack(
        [
            _schema_problems(races, _RACES, "races"),
            _rule_checks(tables, "races"),
            odd_races,
        ]
    )
    runner_problems = _stack(
        [
            _schema_problems(runners, _RUNNERS, "runners"),
            _rule_checks(tables, "runners"),
            odd_runners,
        ]
    )
    pulled = _adapter_causes(races, adapter_rows)
    race_bad, runner_bad, own_rows = _quarantine_masks(
        races, runners, race_problems, runner_problems, pulled
    )
    validation_rows = _stack(own_rows, list(QUARANTINE_COLUMNS))

    quarantine = _canonical(
        _stack([adapter_rows, validation_rows], list(QUARANTINE_COLUMNS)), QUARANTINE_COLUMNS
    )
    quarantine = quarantine.sort_values(
        ["source_file", "race_id", "horse_id", "reason", "field"],
        kind="stable",
        na_position="first",
    ).reset_index(drop=True)
    races_out = _canonical(
        races[~race_bad].sort_values(["off_time", "race_id"], kind="stable"), RACE_COLUMNS
    )
    runners_out = _canonical(
        runners[~runner_bad].sort_values(["off_time", "race_id"], kind="stable"), RUNNER_COLUMNS
    )

    warnings = _draw_warnings(races_out, runners_out)
    q_adapter = count_quarantined(adapter_rows)
    q_validation = count_quarantined(validation_rows)
    report = {
        "source": source,
        "files": {
            "read": int(parse_summary["files_read"]),
            "rejected": [dict(r) for r in parse_summary["files_rejected"]],
        },
        "races": {
            "in": races_in,
            "primary": len(races_out),
            "quarantined": q_adapter[0] + q_validation[0],
            "void": int((races_out["status"] == "void").sum()),
        },
        "runners": {
            "in": runners_in,
            "primary": len(runners_out),
            "quarantined": q_adapter[1] + q_validation[1],
            "non_runners": int(runners_out["non_runner"].fillna(False).sum()),
        },
        "quarantine_reasons": {
            str(k): int(v)
            for k, v in quarantine["reason"].value_counts(sort=False).sort_index().items()
        },
        "warning_reasons": {
            str(k): int(v)
            for k, v in warnings["reason"].value_counts(sort=False).sort_index().items()
        },
        "warnings": [
            {k: (None if pd.isna(v) else str(v)) for k, v in row.items()}
            for row in warnings.head(MAX_REPORTED_WARNINGS).to_dict("records")
        ],
    }
    _check_accounting(report)
    if len(warnings):
        logger.warning(
            "ingestion %s: %d warnings (%s); see %s",
            source,
            len(warnings),
            ", ".join(f"{k}: {v}" for k, v in report["warning_reasons"].items()),
            REPORT_PATH,
        )
    logger.info(
        "ingestion %s: races %d in = %d primary (%d void) + %d quarantined; runners %d in = %d primary "
        "(%d non-runners) + %d quarantined; %d files read, %d rejected",
        source,
        report["races"]["in"],
        report["races"]["primary"],
        report["races"]["void"],
        report["races"]["quarantined"],
        report["runners"]["in"],
        report["runners"]["primary"],
        report["runners"]["non_runners"],
        report["runners"]["quarantined"],
        report["files"]["read"],
        len(report["files"]["rejected"]),
    )
    return races_out, runners_out, quarantine, report


def enforce_strict(ingestion_report: dict, params: dict) -> None:
    """Fail the run when ``ingestion.strict`` is on and anything was quarantined or rejected.

    It runs as the last node so that the quarantine and the report are saved first.

    Args:
        ingestion_report: The report of ``validate_and_split``.
        params: ``params:ingestion`` (``strict``).

    Raises:
        IngestionStrictError: With a one-line summary.
    """
    if not params.get("strict"):
        return
    reasons = ingestion_report["quarantine_reasons"]
    rejected = ingestion_report["files"]["rejected"]
    if not reasons and not rejected:
        return
    top = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{k}: {v}" for k, v in top) or "no quarantine rows"
    raise IngestionStrictError(
        f"ingestion.strict: {ingestion_report['races']['quarantined']} races / "
        f"{ingestion_report['runners']['quarantined']} runners quarantined, {len(rejected)} files rejected "
        f"({listed}); see {QUARANTINE_PATH} and {REPORT_PATH}"
    )


# --- helpers -----------------------------------------------------------------------------


def _canonical(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Return a canonical copy of ``frame``, adding missing columns as nulls.

    Args:
        frame: An adapter's frame.
        columns: Canonical columns and dtypes.

    Returns:
        A new frame in exactly those columns and dtypes, with a fresh 0..n-1 index.
    """
    if list(frame.columns) == list(columns) and all(
        str(frame[c].dtype) == t for c, t in columns.items()
    ):
        return frame.reset_index(drop=True)
    missing = {
        c: pd.Series(None, index=frame.index, dtype=object)
        for c in columns
        if c not in frame.columns
    }
    return conform(frame.assign(**missing) if missing else frame, columns)


def _adapter_causes(races: pd.DataFrame, adapter_rows: pd.DataFrame) -> pd.Series:
    """Find races that keep a record the adapter quarantined.

    Args:
        races: Canonical races.
        adapter_rows: The adapter's quarantine rows.

    Returns:
        Cause summary per affected ``race_id``.
    """
    records = adapter_rows[
        adapter_rows["race_id"].notna() & ~adapter_rows["reason"].isin(NON_RECORD_REASONS)
    ]
    records = records[records["race_id"].isin(races["race_id"])]
    return _summaries(
        records["race_id"], "the adapter quarantined " + records["detail"].fillna(records["reason"])
    )


def _summaries(race_ids: pd.Series, details: pd.Series) -> pd.Series:
    """Join the first few cause messages of each race.

    Args:
        race_ids: Race id per cause.
        details: Message per cause.

    Returns:
        One summary per race id.
    """
    frame = pd.DataFrame(
        {"race_id": race_ids.to_numpy(), "detail": details.astype(str).to_numpy()}
    ).dropna()
    if frame.empty:
        return pd.Series(dtype=object)
    grouped = frame.groupby("race_id", sort=False)["detail"]
    text = grouped.agg(lambda d: "; ".join(d.iloc[:_MAX_CAUSES]))
    more = grouped.size() - _MAX_CAUSES
    return text.where(more <= 0, text + "; and " + more.astype(str) + " more")


def _quarantine_masks(
    races: pd.DataFrame,
    runners: pd.DataFrame,
    race_problems: pd.DataFrame,
    runner_problems: pd.DataFrame,
    pulled: pd.Series,
) -> tuple[pd.Series, pd.Series, list[pd.DataFrame]]:
    """Quarantine every race with a problem of its own, of a runner or of the adapter.

    Args:
        races: Canonical races.
        runners: Canonical runners.
        race_problems: Problems of race records (``row`` indexes ``races``).
        runner_problems: Problems of runner records (``row`` indexes ``runners``).
        pulled: Cause summary per race id whose records the adapter quarantined.

    Returns:
        Masks of quarantined races and runners, and the new quarantine rows.
    """
    race_problems = race_problems.drop_duplicates(["row", "field", "reason"])
    runner_problems = runner_problems.drop_duplicates(["row", "field", "reason"])
    problem_race_ids = races["race_id"].to_numpy()[race_problems["row"].to_numpy(dtype=int)]
    problem_runner_race_ids = runners["race_id"].to_numpy()[
        runner_problems["row"].to_numpy(dtype=int)
    ]
    causes = _summaries(
        pd.Series([*problem_race_ids, *problem_runner_race_ids, *pulled.index], dtype=object),
        pd.Series(
            [*race_problems["detail"], *runner_problems["detail"], *pulled.to_numpy()], dtype=object
        ),
    )
    bad_ids = set(causes.index)
    race_bad = races.index.isin(race_problems["row"]) | races["race_id"].isin(bad_ids)
    in_bad_race = runners["race_id"].isin(bad_ids)
    runner_bad = in_bad_race | runners.index.isin(runner_problems["row"])

    race_ids = _placeholder(races["race_id"], "race")
    runner_race_ids = _placeholder(runners["race_id"], "race")
    horse_ids = _placeholder(runners["horse_id"], "horse")
    where_race = _where(races, runners=False)
    where_runner = _where(runners, runners=True)
    quiet = race_bad & ~races.index.isin(race_problems["row"])
    rows = [
        _rows(races, race_problems["row"], race_ids, None, race_problems),
        _rows(
            races,
            races.index[quiet],
            race_ids,
            None,
            pd.DataFrame(
                {
                    "field": QUARANTINED_RACE_FIELD,
                    "reason": RACE_QUARANTINED,
                    "detail": (
                        where_race[quiet]
                        + ": quarantined because of its records: "
                        + races.loc[quiet, "race_id"].map(causes).fillna("")
                    ).to_numpy(),
                }
            ),
        ),
        _rows(runners, runner_problems["row"], runner_race_ids, horse_ids, runner_problems),
        _rows(
            runners,
            runners.index[in_bad_race],
            runner_race_ids,
            horse_ids,
            pd.DataFrame(
                {
                    "field": QUARANTINED_RUNNER_FIELD,
                    "reason": RACE_QUARANTINED,
                    "detail": (
                        where_runner[in_bad_race]
                        + ": quarantined with its race: "
                        + runners.loc[in_bad_race, "race_id"].map(causes).fillna("")
                    ).to_numpy(),
                }
            ),
        ),
    ]
    return pd.Series(race_bad, index=races.index), pd.Series(runner_bad, index=runners.index), rows


def _placeholder(ids: pd.Series, kind: str) -> pd.Series:
    """Replace missing ids by a per-row placeholder (``?<kind>-row<n>``).

    Args:
        ids: Ids of the records.
        kind: ``race`` or ``horse``.

    Returns:
        Ids without nulls.
    """
    return ids.astype(object).where(
        ids.notna(), pd.Series([f"?{kind}-row{i}" for i in ids.index], index=ids.index)
    )


def _rows(
    frame: pd.DataFrame,
    row: pd.Index | pd.Series,
    race_ids: pd.Series,
    horse_ids: pd.Series | None,
    problems: pd.DataFrame,
) -> pd.DataFrame:
    """Build quarantine rows for records of ``frame``.

    Args:
        frame: Races or runners.
        row: Record positions, aligned with ``problems``.
        race_ids: Race id per record (placeholders for nulls).
        horse_ids: Horse id per record, or ``None`` for race records.
        problems: ``field``, ``reason``, ``detail`` per row.

    Returns:
        Rows in ``QUARANTINE_COLUMNS``.
    """
    at = pd.Index(row).astype(int)
    return pd.DataFrame(
        {
            "source_file": frame["source_file"].reindex(at).to_numpy(),
            "race_id": race_ids.reindex(at).to_numpy(),
            "horse_id": horse_ids.reindex(at).to_numpy() if horse_ids is not None else None,
            "field": problems["field"].to_numpy(),
            "reason": problems["reason"].to_numpy(),
            "detail": problems["detail"].map(safe_text).to_numpy(),
        }
    )


def _check_accounting(report: dict) -> None:
    """Check that every record is primary or quarantined.

    Args:
        report: The ingestion report.

    Raises:
        IngestionInternalError: If a count does not add up.
    """
    for table in ("races", "runners"):
        counts = report[table]
        if counts["in"] != counts["primary"] + counts["quarantined"]:
            raise IngestionInternalError(
                f"internal error: {report['source']} {table}: {counts['in']} in != {counts['primary']} primary + "
                f"{counts['quarantined']} quarantined; a record was lost or counted twice by the adapter or "
                "validate_and_split"
            )
