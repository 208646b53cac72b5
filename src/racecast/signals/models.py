"""ORM of the signals database: ``models``, ``signals`` and ``bets`` (SQLAlchemy 2).

The schema is created and evolved by the alembic migrations in
``racecast/signals/migrations/versions/`` (hand-written; a test checks that they match
these classes). Constraint and index names follow ``NAMING_CONVENTION`` so that later
migrations can refer to them on every backend.

Every timestamp is a timezone-aware UTC ``datetime`` in Python. PostgreSQL stores it as
``timestamp with time zone``; SQLite, which has no time zones, stores the UTC wall time
and :class:`UTCDateTime` gives it back as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "BET_RESULTS",
    "BET_SIDES",
    "NAMING_CONVENTION",
    "Base",
    "Bet",
    "Model",
    "Signal",
    "UTCDateTime",
    "to_utc",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BET_SIDES = ("back",)
BET_RESULTS = ("won", "lost", "void")


def to_utc(value, name: str = "as_of") -> datetime:
    """A timezone-aware UTC ``datetime`` from a datetime, pandas Timestamp or ISO 8601 string.

    Args:
        value: The instant; it must carry a time zone or UTC offset.
        name: What the value is, for error messages.

    Returns:
        The same instant as a ``datetime`` in UTC (microsecond resolution).

    Raises:
        ValueError: If the value cannot be parsed or has no time zone.
    """
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} {value!r} is not a timestamp: {exc}") from exc
    if pd.isna(stamp):
        raise ValueError(f"{name} is missing (got {value!r})")
    if stamp.tzinfo is None:
        raise ValueError(
            f"{name} {value!r} has no time zone; pass an aware UTC timestamp such as "
            f"'{stamp.isoformat()}+00:00'"
        )
    return stamp.tz_convert("UTC").floor("us").to_pydatetime()


def utcnow() -> datetime:
    """The current time as an aware UTC ``datetime`` (audit columns only)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """``DateTime(timezone=True)`` that accepts only aware datetimes and returns UTC ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect: Dialect):
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} given; timestamps must be UTC-aware"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect: Dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the shared constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Model(Base):
    """A fitted model that publishes signals, identified by ``(name, version)``."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[str] = mapped_column(String(100), nullable=False)
    feature_service: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class Signal(Base):
    """A model's win probability, price and stake for one runner at one scoring snapshot.

    ``as_of`` is the snapshot the scoring run was given (the racecards' cut-off), not the
    wall clock, so ``(as_of, race_id, horse_id, model_id)`` identifies a signal and
    re-publishing the same scoring updates rows in place.
    """

    __tablename__ = "signals"
    __table_args__ = (
        UniqueConstraint("as_of", "race_id", "horse_id", "model_id"),
        CheckConstraint("p_win > 0 AND p_win <= 1", name="p_win_range"),
        CheckConstraint("stake_units >= 0", name="stake_units_nonnegative"),
        Index(None, "race_id", "horse_id"),
        Index(None, "model_id", "as_of"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    race_id: Mapped[str] = mapped_column(String(100), nullable=False)
    horse_id: Mapped[str] = mapped_column(String(100), nullable=False)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False)
    p_win: Mapped[float] = mapped_column(Float, nullable=False)
    fair_odds: Mapped[float] = mapped_column(Float, nullable=False)
    best_odds: Mapped[float | None] = mapped_column(Float, nullable=True)
    edge: Mapped[float | None] = mapped_column(Float, nullable=True)
    kelly_fraction: Mapped[float] = mapped_column(Float, nullable=False)
    stake_units: Mapped[float] = mapped_column(Float, nullable=False)
    reasons_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class Bet(Base):
    """A back bet placed on a signal (at most one per signal), settled once results arrive.

    ``clv`` is the closing-line value ``odds / closing_odds - 1``: positive when the bet
    was struck at a longer price than the market closed at.
    """

    __tablename__ = "bets"
    __table_args__ = (
        UniqueConstraint("signal_id"),
        CheckConstraint("side IN ('back')", name="side_allowed"),
        CheckConstraint(
            "result IS NULL OR result IN ('won', 'lost', 'void')", name="result_allowed"
        ),
        CheckConstraint("odds > 1", name="odds_above_1"),
        CheckConstraint("stake > 0", name="stake_positive"),
        Index(None, "race_id", "horse_id"),
        Index(None, "as_of"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id"), nullable=False)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    race_id: Mapped[str] = mapped_column(String(100), nullable=False)
    horse_id: Mapped[str] = mapped_column(String(100), nullable=False)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), nullable=False)
    side: Mapped[str] = mapped_column(String(10), nullable=False, default="back")
    odds: Mapped[float] = mapped_column(Float, nullable=False)
    stake: Mapped[float] = mapped_column(Float, nullable=False)
    closing_odds: Mapped[float | None] = mapped_column(Float, nullable=True)
    clv: Mapped[float | None] = mapped_column(Float, nullable=True)
    result: Mapped[str | None] = mapped_column(String(10), nullable=True)
    pnl: Mapped[float | None] = mapped_column(Float, nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
