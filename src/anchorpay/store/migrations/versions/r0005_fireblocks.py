"""Fireblocks webhook events and incoming transfers; payouts.polls

Revision ID: 0005_fireblocks
Revises: 0004_source_sequence_bigint
Create Date: 2026-11-28 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import anchorpay.store.types

revision: str = "0005_fireblocks"
down_revision: str | None = "0004_source_sequence_bigint"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _str(length: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _ts() -> anchorpay.store.types.UTCDateTime:
    return anchorpay.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("polls", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "fireblocks_events",
        sa.Column("id", _str(128), nullable=False),
        sa.Column("event_type", _str(64), nullable=False),
        sa.Column("resource_id", _str(64), nullable=True),
        sa.Column("external_tx_id", _str(64), nullable=True),
        sa.Column("status", _str(40), nullable=True),
        sa.Column("received_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "fireblocks_incoming",
        sa.Column("id", _str(64), nullable=False),
        sa.Column("tx_hash", _str(64), nullable=False),
        sa.Column("outcome", _str(32), nullable=False),
        sa.Column("transaction_id", _str(64), nullable=True),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_column("polls")
    op.drop_table("fireblocks_incoming")
    op.drop_table("fireblocks_events")
