"""Idempotent publishing of signals and bet placement.

* :func:`publish_signals` upserts one scoring run: its key is
  ``(as_of, race_id, horse_id, model_id)``, where ``as_of`` is the snapshot the run was
  given (the racecards' cut-off), not the wall clock. Re-publishing the same scoring
  leaves the table unchanged (not even ``updated_at`` moves); a changed value updates the
  row in place; another ``as_of`` adds rows.
* :func:`place_bets` backs every signal of a snapshot with a positive stake, at most once
  per signal. A bet is never changed by later publishing: it was struck at its price.

The upserts use the dialect's ``INSERT ... ON CONFLICT`` (SQLite and PostgreSQL).
Settlement lives in ``racecast.signals.settlement``, reading signals and bets back in
``racecast.signals.load``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from racecast.signals.db import (
    SUPPORTED_DIALECTS,
    SignalsDatabaseError,
    engine_from_url,
    require_current_schema,
    session_scope,
)
from racecast.signals.models import Bet, Model, Signal, to_utc, utcnow
from racecast.signals.staking import staking_columns

logger = logging.getLogger(__name__)

__all__ = [
    "DERIVED_COLUMNS",
    "SIGNAL_KEY",
    "SIGNAL_VALUE_COLUMNS",
    "bet_insert_statement",
    "place_bets",
    "prepare_signals",
    "publish_signals",
    "signal_upsert_statement",
]

SIGNAL_KEY = ("as_of", "race_id", "horse_id", "model_id")
DERIVED_COLUMNS = ("fair_odds", "edge", "kelly_fraction", "stake_units")
SIGNAL_VALUE_COLUMNS = (
    "p_win",
    "fair_odds",
    "best_odds",
    "edge",
    "kelly_fraction",
    "stake_units",
    "reasons_json",
)

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def _insert_for(dialect_name: str, table) -> Insert:
    try:
        return _INSERTS[dialect_name](table)
    except KeyError:
        raise SignalsDatabaseError(
            f"signals database dialect '{dialect_name}' is not supported "
            f"(supported: {', '.join(SUPPORTED_DIALECTS)})"
        ) from None


def signal_upsert_statement(dialect_name: str) -> Insert:
    """``INSERT INTO signals ... ON CONFLICT (key) DO UPDATE ... WHERE <a value changed>``.

    The update sets every value column and ``updated_at`` from the new row, but only when
    at least one value column differs (``IS DISTINCT FROM``), so a re-published identical
    row is left alone. ``RETURNING race_id, horse_id`` lists the rows inserted or updated.

    Args:
        dialect_name: ``"sqlite"`` or ``"postgresql"``.

    Returns:
        The statement, to execute with one parameter dict per row (every column but ``id``).

    Raises:
        SignalsDatabaseError: For another dialect.
    """
    table = Signal.__table__
    insert = _insert_for(dialect_name, table)
    excluded = insert.excluded
    changed = or_(
        *(table.c[name].is_distinct_from(excluded[name]) for name in SIGNAL_VALUE_COLUMNS)
    )
    return insert.on_conflict_do_update(
        index_elements=[table.c[name] for name in SIGNAL_KEY],
        set_={
            **{name: excluded[name] for name in SIGNAL_VALUE_COLUMNS},
            "updated_at": excluded.updated_at,
        },
        where=changed,
    ).returning(table.c.race_id, table.c.horse_id)


def bet_insert_statement(dialect_name: str) -> Insert:
    """``INSERT INTO bets ... ON CONFLICT (signal_id) DO NOTHING RETURNING signal_id``.

    Args:
        dialect_name: ``"sqlite"`` or ``"postgresql"``.

    Returns:
        The statement, to execute with one parameter dict per bet.
    """
    table = Bet.__table__
    insert = _insert_for(dialect_name, table)
    return insert.on_conflict_do_nothing(index_elements=[table.c.signal_id]).returning(
        table.c.signal_id
    )


def _canonical_json(value, where: str, *, is_text: bool) -> str | None:
    """Sorted, compact JSON text of a reasons value, or None.

    ``is_text``: the value is JSON text (``reasons_json``), else any JSON-serialisable object.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if is_text:
        if not isinstance(value, str):
            raise ValueError(f"{where}: reasons_json must be JSON text, got {type(value).__name__}")
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: reasons_json is not valid JSON: {exc}") from exc
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: reasons cannot be written as JSON: {exc}") from exc


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _check_keys(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """race_id/horse_id as non-empty strings, unique together."""
    out = frame.copy()
    for column in ("race_id", "horse_id"):
        missing = out[column].isna()
        if missing.any():
            raise ValueError(f"{what}: column '{column}' has {int(missing.sum())} missing values")
        out[column] = out[column].astype(str)
    duplicated = out.duplicated(["race_id", "horse_id"], keep=False)
    if duplicated.any():
        pairs = out.loc[duplicated, ["race_id", "horse_id"]].drop_duplicates().head(5)
        raise ValueError(
            f"{what}: (race_id, horse_id) must be unique; repeated: "
            f"{list(pairs.itertuples(index=False, name=None))}"
        )
    return out


def _float_column(frame: pd.DataFrame, column: str, what: str) -> pd.Series:
    try:
        return pd.to_numeric(frame[column], errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: column '{column}' is not numeric: {exc}") from exc


def prepare_signals(
    signals: pd.DataFrame,
    fraction: float = 0.25,
    bankroll_units: float = 100.0,
    max_fraction: float = 0.05,
) -> pd.DataFrame:
    """Validate a scoring frame and complete it to the ``signals`` value columns.

    Args:
        signals: One row per runner: ``race_id``, ``horse_id``, ``p_win`` (in (0, 1]),
            optionally ``best_odds`` (decimal, > 1; missing: no price, no stake) and
            ``reasons`` (any JSON-serialisable object) or ``reasons_json`` (JSON text).
            Either none or all of ``fair_odds, edge, kelly_fraction, stake_units``: when
            absent they are computed with :func:`racecast.signals.staking.staking_columns`,
            when present they are stored as given.
        fraction: Kelly multiplier for computed stakes.
        bankroll_units: Bankroll in units for computed stakes.
        max_fraction: Cap on one stake's share of the bankroll for computed stakes.

    Returns:
        A new frame with ``race_id, horse_id`` and ``SIGNAL_VALUE_COLUMNS`` (floats, None
        for missing values; ``reasons_json`` canonical JSON text or None).

    Raises:
        ValueError: If a column is missing, a key repeats, or a value is out of range;
            the message names the column.
    """
    what = "signals frame"
    if not isinstance(signals, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(signals).__name__}")
    missing = [c for c in ("race_id", "horse_id", "p_win") if c not in signals.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}")
    derived_given = [c for c in DERIVED_COLUMNS if c in signals.columns]
    if derived_given and len(derived_given) != len(DERIVED_COLUMNS):
        raise ValueError(
            f"{what} has {derived_given} but not {sorted(set(DERIVED_COLUMNS) - set(derived_given))}: "
            f"give all of {list(DERIVED_COLUMNS)} or none (then they are computed)"
        )
    if "reasons" in signals.columns and "reasons_json" in signals.columns:
        raise ValueError(f"{what} has both 'reasons' and 'reasons_json'; give one")

    frame = _check_keys(signals.reset_index(drop=True), what)
    out = frame[["race_id", "horse_id"]].copy()
    out["p_win"] = _float_column(frame, "p_win", what)
    bad = ~((out["p_win"] > 0) & (out["p_win"] <= 1))
    if bad.any():
        raise ValueError(
            f"{what}: column 'p_win' must be in (0, 1]; {int(bad.sum())} rows are not (or missing)"
        )
    if "best_odds" in frame.columns:
        out["best_odds"] = _float_column(frame, "best_odds", what)
    else:
        out["best_odds"] = np.nan
    bad = out["best_odds"].notna() & ~(out["best_odds"] > 1)
    if bad.any():
        raise ValueError(
            f"{what}: column 'best_odds' must be decimal odds > 1 (or missing); {int(bad.sum())} rows are not"
        )

    if derived_given:
        for column in DERIVED_COLUMNS:
            out[column] = _float_column(frame, column, what)
            if column != "edge" and out[column].isna().any():
                raise ValueError(f"{what}: column '{column}' has missing values")
        for column in ("kelly_fraction", "stake_units"):
            if (out[column] < 0).any():
                raise ValueError(f"{what}: column '{column}' must be >= 0")
    else:
        computed = staking_columns(
            out["p_win"], out["best_odds"], fraction, bankroll_units, max_fraction
        )
        for column in DERIVED_COLUMNS:
            out[column] = computed[column]

    source = "reasons" if "reasons" in frame.columns else "reasons_json"
    values = frame[source] if source in frame.columns else [None] * len(frame)
    out["reasons_json"] = [
        _canonical_json(
            value, f"{what} row {i} (race {race}, horse {horse})", is_text=source == "reasons_json"
        )
        for i, (value, race, horse) in enumerate(
            zip(values, out["race_id"], out["horse_id"], strict=True)
        )
    ]
    result = out[["race_id", "horse_id", *SIGNAL_VALUE_COLUMNS]].astype(object)
    return result.where(result.notna(), None)


def _model_id(session: Session, model: Mapping, *, create: bool) -> int:
    """Id of the model ``(name, version)``, registered first when ``create``."""
    if not isinstance(model, Mapping):
        raise TypeError(
            f"model must be a mapping with 'name' and 'version', got {type(model).__name__}"
        )
    for key in ("name", "version"):
        if model.get(key) is None or str(model[key]).strip() == "":
            raise ValueError(f"model is missing '{key}' (got {dict(model)!r})")
    unknown = set(model) - {"name", "version", "feature_service"}
    if unknown:
        raise ValueError(
            f"model has unknown key(s) {sorted(unknown)}; allowed: name, version, feature_service"
        )
    name, version = str(model["name"]), str(model["version"])
    feature_service = model.get("feature_service")
    table = Model.__table__
    if create:
        insert = _insert_for(session.bind.dialect.name, table).values(
            name=name, version=version, feature_service=feature_service, created_at=utcnow()
        )
        session.execute(
            insert.on_conflict_do_nothing(index_elements=[table.c.name, table.c.version])
        )
    row = session.execute(
        select(table.c.id, table.c.feature_service).where(
            table.c.name == name, table.c.version == version
        )
    ).one_or_none()
    if row is None:
        raise ValueError(
            f"model (name={name!r}, version={version!r}) is not in the signals database"
        )
    if feature_service is not None and row.feature_service != feature_service:
        raise ValueError(
            f"model (name={name!r}, version={version!r}) is registered with feature_service "
            f"{row.feature_service!r}, not {feature_service!r}: publish a new version"
        )
    return int(row.id)


def _open(url: str | URL | Engine) -> tuple[Engine, bool]:
    if isinstance(url, Engine):
        engine, owned = url, False
    else:
        engine, owned = engine_from_url(url), True
    try:
        require_current_schema(engine)
    except Exception:
        if owned:
            engine.dispose()
        raise
    return engine, owned


def publish_signals(
    url: str | URL | Engine,
    model: Mapping,
    signals: pd.DataFrame,
    as_of,
    *,
    fraction: float = 0.25,
    bankroll_units: float = 100.0,
    max_fraction: float = 0.05,
) -> dict:
    """Upsert one scoring run's signals (idempotent).

    Args:
        url: Database URL (or engine), migrated to the newest revision.
        model: ``{"name", "version"[, "feature_service"]}``; registered on first use.
        signals: Scoring frame, see :func:`prepare_signals`.
        as_of: The scoring snapshot (racecards' cut-off): aware datetime, Timestamp or ISO
            8601 text with offset.
        fraction: Kelly multiplier (when stakes are computed here).
        bankroll_units: Bankroll in units (when stakes are computed here).
        max_fraction: Cap on one stake's share of the bankroll (when computed here).

    Returns:
        ``{"model_id", "as_of", "rows", "inserted", "updated", "unchanged"}``; ``as_of``
        as ISO 8601 UTC text, ``rows == inserted + updated + unchanged``.

    Raises:
        ValueError: Invalid frame, model or ``as_of``.
        SignalsDatabaseError: Bad URL, unreachable database or schema not migrated.
    """
    as_of_utc = to_utc(as_of, "as_of")
    frame = prepare_signals(signals, fraction, bankroll_units, max_fraction)
    engine, owned = _open(url)
    try:
        with session_scope(engine) as session:
            model_id = _model_id(session, model, create=True)
            table = Signal.__table__
            existing = set(
                session.execute(
                    select(table.c.race_id, table.c.horse_id).where(
                        table.c.as_of == as_of_utc, table.c.model_id == model_id
                    )
                ).all()
            )
            now = utcnow()
            rows = [
                {
                    **record,
                    "as_of": as_of_utc,
                    "model_id": model_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for record in frame.to_dict("records")
            ]
            touched = set()
            if rows:
                statement = signal_upsert_statement(engine.dialect.name)
                touched = set(session.connection().execute(statement, rows).all())
    finally:
        if owned:
            engine.dispose()
    counts = {
        "model_id": model_id,
        "as_of": as_of_utc.isoformat(),
        "rows": len(rows),
        "inserted": len(touched - existing),
        "updated": len(touched & existing),
        "unchanged": len(rows) - len(touched),
    }
    logger.info("published signals: %s", counts)
    return counts


def place_bets(
    url: str | URL | Engine,
    as_of,
    min_edge: float = 0.0,
    *,
    model: Mapping | None = None,
    max_odds: float | None = None,
) -> dict:
    """Back every signal of snapshot ``as_of`` with a positive stake (idempotent).

    A signal qualifies when ``stake_units > 0``, it has ``best_odds`` and ``edge >=
    min_edge`` (and ``best_odds <= max_odds`` when given). Each becomes one bet at
    ``best_odds`` for ``stake_units``; a signal that already has a bet keeps it unchanged.

    Args:
        url: Database URL (or engine), migrated to the newest revision.
        as_of: The scoring snapshot whose signals to back.
        min_edge: Smallest edge (``p * odds - 1``) to bet.
        model: ``{"name", "version"}`` to back one model's signals only (default: all).
        max_odds: Longest price to back (default: no limit).

    Returns:
        ``{"as_of", "eligible", "placed", "existing"}`` with ``eligible == placed + existing``.

    Raises:
        ValueError: Invalid ``as_of`` or unknown ``model``.
        SignalsDatabaseError: Bad URL, unreachable database or schema not migrated.
    """
    as_of_utc = to_utc(as_of, "as_of")
    if not np.isfinite(min_edge):
        raise ValueError(f"min_edge must be a finite number, got {min_edge}")
    if max_odds is not None and not max_odds > 1:
        raise ValueError(f"max_odds must be > 1, got {max_odds}")
    engine, owned = _open(url)
    try:
        with session_scope(engine) as session:
            table = Signal.__table__
            conditions = [
                table.c.as_of == as_of_utc,
                table.c.stake_units > 0,
                table.c.best_odds.is_not(None),
                table.c.edge >= float(min_edge),
            ]
            if model is not None:
                conditions.append(table.c.model_id == _model_id(session, model, create=False))
            if max_odds is not None:
                conditions.append(table.c.best_odds <= float(max_odds))
            eligible = session.execute(
                select(
                    table.c.id,
                    table.c.race_id,
                    table.c.horse_id,
                    table.c.model_id,
                    table.c.best_odds,
                    table.c.stake_units,
                )
                .where(and_(*conditions))
                .order_by(table.c.id)
            ).all()
            now = utcnow()
            rows = [
                {
                    "signal_id": s.id,
                    "as_of": as_of_utc,
                    "race_id": s.race_id,
                    "horse_id": s.horse_id,
                    "model_id": s.model_id,
                    "side": "back",
                    "odds": s.best_odds,
                    "stake": s.stake_units,
                    "created_at": now,
                }
                for s in eligible
            ]
            placed = 0
            if rows:
                placed = len(
                    session.connection()
                    .execute(bet_insert_statement(engine.dialect.name), rows)
                    .all()
                )
    finally:
        if owned:
            engine.dispose()
    counts = {
        "as_of": as_of_utc.isoformat(),
        "eligible": len(rows),
        "placed": placed,
        "existing": len(rows) - placed,
    }
    logger.info("placed bets: %s", counts)
    return counts
