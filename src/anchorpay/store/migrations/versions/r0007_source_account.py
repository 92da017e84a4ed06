"""payouts.source_account: the account whose sequence a payout's envelope uses (its lane)

Revision ID: 0007_source_account
Revises: 0006_job_leases
Create Date: 2026-11-28 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0007_source_account"
down_revision: str | None = "0006_job_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source_account", sqlmodel.sql.sqltypes.AutoString(length=56), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_column("source_account")
