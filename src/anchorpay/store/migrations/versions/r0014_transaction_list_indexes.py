"""transaction list indexes: one per order of get_transactions, and one per order led by status

Every order (started_at, transfer_received_at, user_action_required_by; asc or desc; NULLS
LAST; then id) gets an index holding exactly its sort keys, a nullable column behind
`(column IS NULL)`, so a page is a walk of an index, never a sort of the table
(store/tables.py, `list_order`). They replace the single-column indexes, which no query
could use for those orders, and (status, started_at), a prefix of a new one.

Revision ID: 0014_transaction_list_indexes
Revises: 0013_payout_batches
Create Date: 2026-12-02 16:30:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0014_transaction_list_indexes"
down_revision: str | None = "0013_payout_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "sep24_transactions"
ORDERS = {"started_at": False, "transfer_received_at": True, "user_action_required_by": True}
OLD = {
    "ix_sep24_status_started": ["status", "started_at"],
    "ix_sep24_transactions_status": ["status"],
    "ix_sep24_transactions_started_at": ["started_at"],
    "ix_sep24_transactions_transfer_received_at": ["transfer_received_at"],
    "ix_sep24_transactions_user_action_required_by": ["user_action_required_by"],
}


def _keys(column: str, nullable: bool, descending: bool) -> list[sa.ColumnElement[Any]]:
    value: sa.ColumnClause[Any] = sa.column(column)
    keys: list[sa.ColumnElement[Any]] = [value.is_(None)] if nullable else []
    return [*keys, value.desc() if descending else value, sa.column("id")]


def upgrade() -> None:
    for column, nullable in ORDERS.items():
        for descending, way in ((False, "asc"), (True, "desc")):
            keys = _keys(column, nullable, descending)
            op.create_index(f"ix_sep24_list_{column}_{way}", TABLE, keys)
            op.create_index(f"ix_sep24_list_status_{column}_{way}", TABLE, ["status", *keys])
    for name in OLD:
        op.drop_index(name, table_name=TABLE)


def downgrade() -> None:
    for name, columns in OLD.items():
        op.create_index(name, TABLE, columns)
    for column in ORDERS:
        for way in ("asc", "desc"):
            op.drop_index(f"ix_sep24_list_{column}_{way}", table_name=TABLE)
            op.drop_index(f"ix_sep24_list_status_{column}_{way}", table_name=TABLE)
