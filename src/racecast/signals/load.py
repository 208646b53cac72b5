"""Reading the signals database back: signals and bets as frames."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from racecast.signals.db import session_scope
from racecast.signals.models import Bet, Signal, to_utc
from racecast.signals.publish import _model_id, _open

__all__ = ["load_bets", "load_signals"]


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
