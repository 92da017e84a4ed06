"""ledger_hashes: one Stellar hash, one purpose of one transaction (backfilled)

Revision ID: 0008_ledger_hashes
Revises: 0007_source_account
Create Date: 2026-12-02 03:00:00
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import anchorpay.store.types
from anchorpay.clock import SYSTEM

revision: str = "0008_ledger_hashes"
down_revision: str | None = "0007_source_account"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    table = op.create_table(
        "ledger_hashes",
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("transaction_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("recorded_at", anchorpay.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_index("ix_ledger_hashes_transaction_id", "ledger_hashes", ["transaction_id"])
    # Backfill what the transactions already record; the first holder of a hash keeps it.
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT id, kind, stellar_transactions, refunds FROM sep24_transactions")
    )
    seen: dict[str, tuple[str, str]] = {}
    for tx_id, kind, stellar, refunds in rows:
        purpose = "payment" if kind == "deposit" else "incoming"
        for entry in _json(stellar) or []:
            if entry.get("id"):
                seen.setdefault(entry["id"], (tx_id, purpose))
        if kind == "withdrawal":
            for payment in (_json(refunds) or {}).get("payments") or []:
                if payment.get("id"):
                    seen.setdefault(payment["id"], (tx_id, "refund"))
    now = SYSTEM.now()
    if seen:
        op.bulk_insert(
            table,
            [
                {"hash": h, "transaction_id": t, "purpose": p, "recorded_at": now}
                for h, (t, p) in seen.items()
            ],
        )


def downgrade() -> None:
    op.drop_index("ix_ledger_hashes_transaction_id", table_name="ledger_hashes")
    op.drop_table("ledger_hashes")
