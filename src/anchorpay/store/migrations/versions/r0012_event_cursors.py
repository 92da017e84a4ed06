"""event_cursors: where each reader of the event feed (the Kafka publisher) has got to

Revision ID: 0012_event_cursors
Revises: 0011_payout_request_id
Create Date: 2026-12-02 12:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import anchorpay.store.types

revision: str = "0012_event_cursors"
down_revision: str | None = "0011_payout_request_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_cursors",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("cursor", sa.String(length=64), nullable=False),
        sa.Column("updated_at", anchorpay.store.types.UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_cursors")
