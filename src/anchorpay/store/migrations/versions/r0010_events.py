"""events: the transactional outbox of business events

Revision ID: 0010_events
Revises: 0009_network_identity
Create Date: 2026-12-02 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import anchorpay.store.types

revision: str = "0010_events"
down_revision: str | None = "0009_network_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("transaction_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("created_at", anchorpay.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("transaction", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", anchorpay.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "deliver_since", anchorpay.store.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(length=96), nullable=True),
        sa.Column(
            "lease_expires_at", anchorpay.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("delivered_at", anchorpay.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("transaction_id", "seq", name="uq_events_transaction_seq"),
    )
    op.create_index("ix_events_feed", "events", ["txid", "position"])
    op.create_index("ix_events_delivery", "events", ["state", "position"])


def downgrade() -> None:
    op.drop_index("ix_events_delivery", table_name="events")
    op.drop_index("ix_events_feed", table_name="events")
    op.drop_table("events")
