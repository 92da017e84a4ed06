"""withdrawal memos and the payment observer

Revision ID: 0003_observer
Revises: 0001
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import anchorpay.store.types

revision: str = "0003_observer"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _str(length: int | None = None) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _ts() -> anchorpay.store.types.UTCDateTime:
    return anchorpay.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "withdrawal_memos",
        sa.Column("destination", _str(69), nullable=False),
        sa.Column("memo", _str(20), nullable=False),
        sa.Column("memo_type", _str(8), nullable=False),
        sa.Column("transaction_id", _str(64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("destination", "memo"),
        sa.UniqueConstraint("transaction_id", "destination", name="uq_withdrawal_memo_tx"),
    )
    with op.batch_alter_table("withdrawal_memos", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_withdrawal_memos_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "observer_cursors",
        sa.Column("account", _str(69), nullable=False),
        sa.Column("cursor", _str(64), nullable=False),
        sa.Column("payments_seen", sa.Integer(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("account"),
    )

    op.create_table(
        "unmatched_payments",
        sa.Column("id", _str(64), nullable=False),
        sa.Column("paging_token", _str(64), nullable=False),
        sa.Column("account", _str(69), nullable=False),
        sa.Column("transaction_hash", _str(64), nullable=False),
        sa.Column("source_account", _str(), nullable=False),
        sa.Column("asset", _str(), nullable=False),
        sa.Column("amount", _str(), nullable=False),
        sa.Column("memo", _str(), nullable=True),
        sa.Column("memo_type", _str(8), nullable=True),
        sa.Column("reason", _str(32), nullable=False),
        sa.Column("detail", _str(), nullable=False),
        sa.Column("transaction_id", _str(64), nullable=True),
        sa.Column("created_at", _ts(), nullable=True),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("unmatched_payments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_unmatched_payments_account"), ["account"], unique=False
        )

    op.create_table(
        "observer_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_ledger", sa.Integer(), nullable=True),
        sa.Column("last_ledger_closed_at", _ts(), nullable=True),
        sa.Column("caught_up_at", _ts(), nullable=True),
        sa.Column("last_error", _str(), nullable=True),
        sa.Column("last_error_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("observer_state")
    with op.batch_alter_table("unmatched_payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unmatched_payments_account"))
    op.drop_table("unmatched_payments")
    op.drop_table("observer_cursors")
    with op.batch_alter_table("withdrawal_memos", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_withdrawal_memos_transaction_id"))
    op.drop_table("withdrawal_memos")
