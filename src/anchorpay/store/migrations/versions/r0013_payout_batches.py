"""payout batches: a payout's operation in a shared envelope; a hash held per transaction

Revision ID: 0013_payout_batches
Revises: 0012_event_cursors
Create Date: 2026-12-02 16:00:00

Operation batching puts several payouts, of several transactions, in one Stellar transaction:
`payouts.op_index` is a payout's payment operation in that envelope, and `ledger_hashes` is
keyed by (hash, transaction) so each transaction of a batch records the shared hash. The
rule that stops a hash being claimed twice moves to the workflow: a transaction may record a
hash another transaction holds only when its own payout's envelope has that hash.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anchorpay.store.types

revision: str = "0013_payout_batches"
down_revision: str | None = "0012_event_cursors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payouts") as batch:
        batch.add_column(sa.Column("op_index", sa.Integer(), nullable=True))
    _primary_key("hash", "transaction_id")


def downgrade() -> None:
    _primary_key("hash")
    with op.batch_alter_table("payouts") as batch:
        batch.drop_column("op_index")


def _primary_key(*columns: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("ledger_hashes_pkey", "ledger_hashes", type_="primary")
        op.create_primary_key("ledger_hashes_pkey", "ledger_hashes", list(columns))
        return
    # SQLite cannot change a primary key in place: copy the table under the new key.
    names = "hash, transaction_id, purpose, recorded_at"
    op.create_table(
        "ledger_hashes_new",
        sa.Column("hash", sa.String(length=128), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", anchorpay.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(*columns, name="ledger_hashes_pkey"),
    )
    op.execute(f"INSERT INTO ledger_hashes_new ({names}) SELECT {names} FROM ledger_hashes")
    op.drop_index("ix_ledger_hashes_transaction_id", table_name="ledger_hashes")
    op.drop_table("ledger_hashes")
    op.rename_table("ledger_hashes_new", "ledger_hashes")
    op.create_index("ix_ledger_hashes_transaction_id", "ledger_hashes", ["transaction_id"])
