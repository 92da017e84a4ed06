"""The `events` table: the transactional outbox (Alembic revision 0009).

One row per committed change of a transaction, written in the same database transaction as
the change (`store/events.py`), so a row exists if and only if the change committed. The
same rows feed the HTTP dispatcher (the delivery columns) and the pull feed (`position`,
`txid`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from anchorpay.store.types import UTCDateTime

# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
POSITION_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        # One sequence number per change of one transaction (the order a consumer applies).
        UniqueConstraint("transaction_id", "seq", name="uq_events_transaction_seq"),
        Index("ix_events_feed", "txid", "position"),
        Index("ix_events_delivery", "state", "position"),
    )

    # Insertion order. The feed orders by (txid, position): see store/events.py.
    position: int | None = Field(
        default=None, sa_column=Column(POSITION_TYPE, primary_key=True, autoincrement=True)
    )
    id: str = Field(max_length=36, unique=True)  # the event id consumers deduplicate by
    transaction_id: str = Field(max_length=64)
    seq: int
    type: str = Field(max_length=40)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    # PostgreSQL: the writing database transaction's id (pg_current_xact_id); SQLite: 0.
    txid: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))
    # The transaction as it was after the change (store/transactions.py `snapshot`),
    # rendered as `get_transaction` answers when the event is read.
    transaction: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # payout_failed: the payout (id, purpose, error); None for the transaction's own events.
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))

    # Delivery to BUSINESS_CALLBACK_URL: pending -> delivered | failed (redeliver: pending).
    state: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    # Start of the current delivery round (creation, or the last redeliver): the max age
    # counts from here.
    deliver_since: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_error: str | None = None
    lease_owner: str | None = Field(default=None, max_length=96)
    lease_expires_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    delivered_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
