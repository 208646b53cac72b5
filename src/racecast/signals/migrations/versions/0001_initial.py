"""Initial schema: models, signals, bets.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 00:00:00

Names follow ``racecast.signals.models.NAMING_CONVENTION`` (``op.f`` marks them final).
``signals`` is unique on ``(as_of, race_id, horse_id, model_id)``, the key of the
idempotent publishing upsert; ``bets`` on ``signal_id`` (one bet per signal).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the three tables with their keys, checks and indexes."""
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("feature_service", sa.String(length=200), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_models_name_version")),
    )
    op.create_table(
        "signals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("as_of", _utc(), nullable=False),
        sa.Column("race_id", sa.String(length=100), nullable=False),
        sa.Column("horse_id", sa.String(length=100), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("p_win", sa.Float(), nullable=False),
        sa.Column("fair_odds", sa.Float(), nullable=False),
        sa.Column("best_odds", sa.Float(), nullable=True),
        sa.Column("edge", sa.Float(), nullable=True),
        sa.Column("kelly_fraction", sa.Float(), nullable=False),
        sa.Column("stake_units", sa.Float(), nullable=False),
        sa.Column("reasons_json", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_signals_model_id_models")
        ),
        sa.UniqueConstraint(
            "as_of",
            "race_id",
            "horse_id",
            "model_id",
            name=op.f("uq_signals_as_of_race_id_horse_id_model_id"),
        ),
        sa.CheckConstraint("p_win > 0 AND p_win <= 1", name=op.f("ck_signals_p_win_range")),
        sa.CheckConstraint("stake_units >= 0", name=op.f("ck_signals_stake_units_nonnegative")),
    )
    op.create_index(op.f("ix_signals_race_id_horse_id"), "signals", ["race_id", "horse_id"])
    op.create_index(op.f("ix_signals_model_id_as_of"), "signals", ["model_id", "as_of"])
    op.create_table(
        "bets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("signal_id", sa.Integer(), nullable=False),
        sa.Column("as_of", _utc(), nullable=False),
        sa.Column("race_id", sa.String(length=100), nullable=False),
        sa.Column("horse_id", sa.String(length=100), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("side", sa.String(length=10), nullable=False),
        sa.Column("odds", sa.Float(), nullable=False),
        sa.Column("stake", sa.Float(), nullable=False),
        sa.Column("closing_odds", sa.Float(), nullable=True),
        sa.Column("clv", sa.Float(), nullable=True),
        sa.Column("result", sa.String(length=10), nullable=True),
        sa.Column("pnl", sa.Float(), nullable=True),
        sa.Column("settled_at", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bets")),
        sa.ForeignKeyConstraint(
            ["signal_id"], ["signals.id"], name=op.f("fk_bets_signal_id_signals")
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_bets_model_id_models")),
        sa.UniqueConstraint("signal_id", name=op.f("uq_bets_signal_id")),
        sa.CheckConstraint("side IN ('back')", name=op.f("ck_bets_side_allowed")),
        sa.CheckConstraint(
            "result IS NULL OR result IN ('won', 'lost', 'void')",
            name=op.f("ck_bets_result_allowed"),
        ),
        sa.CheckConstraint("odds > 1", name=op.f("ck_bets_odds_above_1")),
        sa.CheckConstraint("stake > 0", name=op.f("ck_bets_stake_positive")),
    )
    op.create_index(op.f("ix_bets_race_id_horse_id"), "bets", ["race_id", "horse_id"])
    op.create_index(op.f("ix_bets_as_of"), "bets", ["as_of"])


def downgrade() -> None:
    """Drop the three tables (and their indexes)."""
    op.drop_index(op.f("ix_bets_as_of"), table_name="bets")
    op.drop_index(op.f("ix_bets_race_id_horse_id"), table_name="bets")
    op.drop_table("bets")
    op.drop_index(op.f("ix_signals_model_id_as_of"), table_name="signals")
    op.drop_index(op.f("ix_signals_race_id_horse_id"), table_name="signals")
    op.drop_table("signals")
    op.drop_table("models")
