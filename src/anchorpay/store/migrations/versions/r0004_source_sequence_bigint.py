"""payouts.source_sequence as a 64-bit integer (Stellar sequence numbers do not fit 32 bits)

Revision ID: 0004_source_sequence_bigint
Revises: 0003_observer
Create Date: 2026-11-24 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_source_sequence_bigint"
down_revision: str | None = "0003_observer"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite's INTEGER is already 64-bit; PostgreSQL's is not.
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "payouts", "source_sequence", type_=sa.BigInteger(), existing_type=sa.Integer()
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "payouts", "source_sequence", type_=sa.Integer(), existing_type=sa.BigInteger()
        )
