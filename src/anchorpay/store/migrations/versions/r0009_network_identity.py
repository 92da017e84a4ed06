"""ledger_network: the Stellar network this database follows (its identity)

Revision ID: 0009_network_identity
Revises: 0008_ledger_hashes
Create Date: 2026-12-02 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import anchorpay.store.types

revision: str = "0009_network_identity"
down_revision: str | None = "0008_ledger_hashes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No backfill: the first start records the network it finds (and refuses a sandbox
    # network newer than the database's transactions).
    op.create_table(
        "ledger_network",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("passphrase", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("genesis_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column(
            "network_created_at", anchorpay.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("recorded_at", anchorpay.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("ledger_network")
