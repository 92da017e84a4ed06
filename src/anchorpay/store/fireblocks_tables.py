"""Tables of the Fireblocks integration (Alembic revision 0005_fireblocks).

- `fireblocks_events`: every webhook event id received, once. A replayed event finds its id
  here and does nothing (webhooks only nudge, so even a missed dedupe would be harmless).
- `fireblocks_incoming`: every incoming Fireblocks transfer to the vault that anchorpay
  decided on (credited to a withdrawal, or not), by Fireblocks id, written in the same
  database transaction as the credit: an incoming transfer takes effect once, whether it is
  seen by a webhook, by the poll, or by both at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from anchorpay.store.types import UTCDateTime


def _ts(nullable: bool) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class FireblocksEventRow(SQLModel, table=True):
    __tablename__ = "fireblocks_events"

    id: str = Field(primary_key=True, max_length=128)  # the event id (or the body's SHA-256)
    event_type: str = Field(max_length=64)
    resource_id: str | None = Field(default=None, max_length=64)  # the Fireblocks tx id
    external_tx_id: str | None = Field(default=None, max_length=64)  # our payout id
    status: str | None = Field(default=None, max_length=40)  # as the event said (not trusted)
    received_at: datetime = _ts(nullable=False)


class FireblocksIncomingRow(SQLModel, table=True):
    __tablename__ = "fireblocks_incoming"

    id: str = Field(primary_key=True, max_length=64)  # the Fireblocks tx id
    tx_hash: str = Field(max_length=64)
    # credited | no_memo | no_match | not_awaiting_payment | ambiguous | wrong_asset | rejected
    outcome: str = Field(max_length=32)
    transaction_id: str | None = Field(default=None, max_length=64)
    recorded_at: datetime = _ts(nullable=False)
