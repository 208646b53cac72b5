"""Idempotent publishing of signals, bet placement and settlement.

* :func:`publish_signals` upserts one scoring run: its key is
  ``(as_of, race_id, horse_id, model_id)``, where ``as_of`` is the snapshot the run was
  given (the racecards' cut-off), not the wall clock. Re-publishing the same scoring
  leaves the table unchanged (not even ``updated_at`` moves); a changed value updates the
  row in place; another ``as_of`` adds rows.
* :func:`place_bets` backs every signal of a snapshot with a positive stake, at most once
  per signal. A bet is never changed by later publishing: it was struck at its price.
* :func:`settle` fills ``closing_odds``, ``clv``, ``result`` and ``pnl`` from results;
  settling the same results again changes nothing, corrected results update the bets.

The upserts use the dialect's ``INSERT ... ON CONFLICT`` (SQLite and PostgreSQL).

**Dead heats.** A back bet on one of ``k`` runners dead-heating for first place is
settled by the usual bookmaker rule: the stake is divided by ``k``, one part is paid at
full odds and the rest is lost, so ``pnl = stake * (odds / k - 1)`` (``result`` is
``"won"``). ``k`` is the number of runners of the race with ``won`` true in the results
frame, which must therefore list every winner of a race it settles.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, bindparam, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from racecast.data.schema import TOOK_NO_PART
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
    "load_bets",
    "load_signals",
    "place_bets",
    "prepare_results",
    "prepare_signals",
    "publish_signals",
    "results_from_tables",
    "settle",
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
SETTLEMENT_COLUMNS = ("closing_odds", "clv", "result", "pnl")

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
_IN_CHUNK = 500


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


def _bool_column(frame: pd.DataFrame, column: str, what: str) -> pd.Series:
    """A nullable boolean column from bools, 0/1 or their nullable forms."""
    values = frame[column]
    try:
        result = values.astype("boolean")
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what}: column '{column}' must be boolean (true/false/missing): {exc}"
        ) from exc
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.notna() & ~numeric.isin([0, 1])
    if bad.any():
        raise ValueError(
            f"{what}: column '{column}' must be boolean, got {values[bad].head(3).tolist()}"
        )
    return result


def prepare_results(results: pd.DataFrame) -> pd.DataFrame:
    """Validate a results frame and derive the settlement inputs of each runner.

    Args:
        results: One row per runner: ``race_id``, ``horse_id``; ``won`` (bool; missing:
            not known yet) and/or ``position`` (used when ``won`` is absent: 1 wins,
            anything else, missing included, loses); closing price as ``closing_odds`` or
            ``starting_price`` (decimal > 1, optional); ``void`` (bool, optional: a
            non-runner or a void race).

    Returns:
        A new frame ``race_id, horse_id, void, won, closing_odds, winners`` where
        ``winners`` is the number of runners of the race with ``won`` true (the dead-heat
        divisor).

    Raises:
        ValueError: If a column is missing or invalid, or a runner repeats.
    """
    what = "results frame"
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(results).__name__}")
    missing = [c for c in ("race_id", "horse_id") if c not in results.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}")
    if "won" not in results.columns and "position" not in results.columns:
        raise ValueError(f"{what} needs a 'won' or a 'position' column")
    if "closing_odds" in results.columns and "starting_price" in results.columns:
        raise ValueError(f"{what} has both 'closing_odds' and 'starting_price'; give one")
    frame = _check_keys(results.reset_index(drop=True), what)
    out = frame[["race_id", "horse_id"]].copy()
    if "void" in frame.columns:
        out["void"] = _bool_column(frame, "void", what).fillna(False).astype(bool)
    else:
        out["void"] = False
    if "won" in frame.columns:
        out["won"] = _bool_column(frame, "won", what)
    else:
        position = _float_column(frame, "position", what)
        out["won"] = pd.array(position == 1, dtype="boolean")
    price_column = "closing_odds" if "closing_odds" in frame.columns else "starting_price"
    out["closing_odds"] = (
        _float_column(frame, price_column, what) if price_column in frame.columns else np.nan
    )
    bad = out["closing_odds"].notna() & ~(out["closing_odds"] > 1)
    if bad.any():
        raise ValueError(
            f"{what}: column '{price_column}' must be decimal odds > 1 (or missing); {int(bad.sum())} rows are not"
        )
    winning = (out["won"].fillna(False).astype(bool) & ~out["void"]).astype(int)
    out["winners"] = winning.groupby(out["race_id"]).transform("sum").astype(int)
    return out


def _settlement(bets: pd.DataFrame) -> pd.DataFrame:
    """New ``closing_odds, clv, result, pnl`` of bets joined with their prepared results."""
    out = pd.DataFrame(index=bets.index)
    out["closing_odds"] = bets["closing_odds_new"].astype(float)
    out["clv"] = bets["odds"] / out["closing_odds"] - 1.0
    won = bets["won"].fillna(False).astype(bool)
    out["result"] = np.where(bets["void"], "void", np.where(won, "won", "lost"))
    divisor = bets["winners"].clip(lower=1)
    out["pnl"] = np.where(
        bets["void"],
        0.0,
        np.where(won, bets["stake"] * (bets["odds"] / divisor - 1.0), -bets["stake"]),
    )
    return out


def _none_if_nan(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def settle(url: str | URL | Engine, results: pd.DataFrame) -> dict:
    """Settle the bets on the runners of ``results`` (idempotent).

    For each bet whose ``(race_id, horse_id)`` is in ``results``: ``closing_odds`` from
    the results, ``clv = odds / closing_odds - 1`` (null without a closing price),
    ``result`` ``"void"`` (void runner or race: ``pnl = 0``), ``"won"`` (``pnl = stake *
    (odds / k - 1)``, ``k`` the number of dead-heating winners, 1 normally) or ``"lost"``
    (``pnl = -stake``). Bets whose runner has ``won`` missing and is not void stay open.
    A bet is written only when a value changes; ``settled_at`` is the time of that write.

    Args:
        url: Database URL (or engine), migrated to the newest revision.
        results: Results frame, see :func:`prepare_results`.

    Returns:
        ``{"matched", "settled", "corrected", "unchanged", "unresolved"}``: bets found for
        the results; newly settled; settled before with other values (a corrected result);
        settled before with the same values; left open (outcome not known).

    Raises:
        ValueError: Invalid results frame.
        SignalsDatabaseError: Bad URL, unreachable database or schema not migrated.
    """
    prepared = prepare_results(results)
    engine, owned = _open(url)
    counts = dict.fromkeys(("matched", "settled", "corrected", "unchanged", "unresolved"), 0)
    try:
        with session_scope(engine) as session:
            table = Bet.__table__
            keys = list(prepared[["race_id", "horse_id"]].itertuples(index=False, name=None))
            found = []
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = keys[start : start + _IN_CHUNK]
                found.extend(
                    session.execute(
                        select(table).where(tuple_(table.c.race_id, table.c.horse_id).in_(chunk))
                    )
                    .mappings()
                    .all()
                )
            if found:
                bets = pd.DataFrame([dict(row) for row in found])
                joined = bets.merge(
                    prepared.rename(columns={"closing_odds": "closing_odds_new"}),
                    on=["race_id", "horse_id"],
                    how="left",
                    validate="many_to_one",
                )
                counts["matched"] = len(joined)
                resolved = joined["void"] | joined["won"].notna()
                counts["unresolved"] = int((~resolved).sum())
                joined = joined[resolved]
                new = _settlement(joined)
                same = pd.Series(True, index=joined.index)
                for column in ("closing_odds", "clv", "pnl"):
                    old_values = joined[column].astype(float)
                    same &= (old_values == new[column]) | (old_values.isna() & new[column].isna())
                same &= joined["result"].fillna("").astype(str) == new["result"]
                changed = ~same
                was_open = joined["result"].isna()
                counts["unchanged"] = int(same.sum())
                counts["settled"] = int((changed & was_open).sum())
                counts["corrected"] = int((changed & ~was_open).sum())
                now = utcnow()
                updates = [
                    {
                        "bet_id": int(bet_id),
                        "closing_odds": _none_if_nan(float(closing)),
                        "clv": _none_if_nan(float(clv)),
                        "result": str(result),
                        "pnl": float(pnl),
                        "settled_at": now,
                    }
                    for bet_id, closing, clv, result, pnl in zip(
                        joined.loc[changed, "id"],
                        new.loc[changed, "closing_odds"],
                        new.loc[changed, "clv"],
                        new.loc[changed, "result"],
                        new.loc[changed, "pnl"],
                        strict=True,
                    )
                ]
                if updates:
                    statement = (
                        update(table)
                        .where(table.c.id == bindparam("bet_id"))
                        .values({c: bindparam(c) for c in (*SETTLEMENT_COLUMNS, "settled_at")})
                    )
                    session.connection().execute(statement, updates)
    finally:
        if owned:
            engine.dispose()
    logger.info("settled bets: %s", counts)
    return counts


def results_from_tables(races: pd.DataFrame, runners: pd.DataFrame) -> pd.DataFrame:
    """The settlement results of the canonical ``races`` and ``runners`` tables.

    Official races give ``won = post_won``, ``position = post_position``,
    ``starting_price = post_starting_price`` and ``void = non_runner`` or an outcome of
    ``took_no_part`` (refunded); every runner of a ``void`` race is void; ``pending``
    races are left out (their bets stay open).

    Args:
        races: Canonical races table (``race_id``, ``status``).
        runners: Canonical runners table (``race_id``, ``horse_id``, ``non_runner``,
            ``post_won``, ``post_position``, ``post_starting_price``).

    Returns:
        A results frame for :func:`settle`.

    Raises:
        ValueError: If a column is missing.
    """
    for name, frame, columns in (
        ("races", races, ["race_id", "status"]),
        (
            "runners",
            runners,
            [
                "race_id",
                "horse_id",
                "non_runner",
                "post_won",
                "post_position",
                "post_starting_price",
            ],
        ),
    ):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} table is missing column(s) {missing}")
    status = races.set_index("race_id")["status"]
    joined = runners.assign(status=runners["race_id"].map(status))
    joined = joined[joined["status"].isin(["official", "void"])]
    race_void = (joined["status"] == "void").to_numpy()
    # a runner that took no part is refunded like a non-runner (its ``won`` is null)
    took_no_part = np.zeros(len(joined), dtype=bool)
    if "post_outcome" in joined.columns:
        took_no_part = (joined["post_outcome"].astype("string") == TOOK_NO_PART).fillna(False).to_numpy(bool)
    return pd.DataFrame(
        {
            "race_id": joined["race_id"].astype(str).to_numpy(),
            "horse_id": joined["horse_id"].astype(str).to_numpy(),
            "won": pd.array(joined["post_won"], dtype="boolean"),
            "position": pd.array(joined["post_position"], dtype="Int64"),
            "starting_price": joined["post_starting_price"].astype(float).to_numpy(),
            "void": joined["non_runner"].fillna(False).astype(bool).to_numpy()
            | took_no_part
            | race_void,
        }
    )


def _frame(session: Session, statement) -> pd.DataFrame:
    rows = session.execute(statement).mappings().all()
    columns = list(statement.selected_columns.keys())
    return pd.DataFrame([dict(row) for row in rows], columns=columns)


def load_signals(url: str | URL | Engine, as_of=None, model: Mapping | None = None) -> pd.DataFrame:
    """Signals as a frame, ordered by id, optionally of one snapshot and/or model.

    Args:
        url: Database URL (or engine).
        as_of: Scoring snapshot to select (default: all).
        model: ``{"name", "version"}`` to select (default: all).

    Returns:
        One row per signal with every column of ``signals`` (timestamps aware UTC).
    """
    engine, owned = _open(url)
    try:
        with session_scope(engine) as session:
            table = Signal.__table__
            statement = select(table).order_by(table.c.id)
            if as_of is not None:
                statement = statement.where(table.c.as_of == to_utc(as_of, "as_of"))
            if model is not None:
                statement = statement.where(
                    table.c.model_id == _model_id(session, model, create=False)
                )
            return _frame(session, statement)
    finally:
        if owned:
            engine.dispose()


def load_bets(url: str | URL | Engine, as_of=None) -> pd.DataFrame:
    """Bets as a frame, ordered by id, optionally of one snapshot.

    Args:
        url: Database URL (or engine).
        as_of: Scoring snapshot to select (default: all).

    Returns:
        One row per bet with every column of ``bets`` (timestamps aware UTC).
    """
    engine, owned = _open(url)
    try:
        with session_scope(engine) as session:
            table = Bet.__table__
            statement = select(table).order_by(table.c.id)
            if as_of is not None:
                statement = statement.where(table.c.as_of == to_utc(as_of, "as_of"))
            return _frame(session, statement)
    finally:
        if owned:
            engine.dispose()
