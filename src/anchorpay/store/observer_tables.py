"""Tables of the withdrawal memos and the payment observer (Alembic revision 0003_observer).

- `withdrawal_memos`: every `id` memo anchorpay generated for a withdrawal. Its primary key
  (destination, memo) is never released, so a memo is issued once per account for ever: a
  payment for a closed withdrawal can never be credited to a newer one (2^63 values).
- `observer_cursors`: per watched account, the paging token of the last payment processed.
  It is written in the same database transaction as the effects of its page.
- `unmatched_payments`: incoming payments that credited nothing, keyed by Horizon payment id,
  so a replay records a payment once.
- `observer_state`: one row: the last ledger the observer was caught up with, and when.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from anchorpay.store.types import UTCDateTime


def _ts(nullable: bool) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class WithdrawalMemoRow(SQLModel, table=True):
    """One generated memo. Never deleted nor reused (see the module docstring)."""

    __tablename__ = "withdrawal_memos"
    __table_args__ = (
        # One memo per (transaction, destination): a repeated request_onchain_funds keeps it.
        UniqueConstraint("transaction_id", "destination", name="uq_withdrawal_memo_tx"),
    )

    destination: str = Field(primary_key=True, max_length=69)
    memo: str = Field(primary_key=True, max_length=20)  # decimal digits of a 63-bit number
    memo_type: str = Field(default="id", max_length=8)
    transaction_id: str = Field(max_length=64, index=True)
    created_at: datetime = _ts(nullable=False)


class ObserverCursorRow(SQLModel, table=True):
    __tablename__ = "observer_cursors"

    account: str = Field(primary_key=True, max_length=69)
    cursor: str = Field(max_length=64)  # Horizon paging token of the last processed payment
    payments_seen: int = Field(default=0)
    updated_at: datetime = _ts(nullable=False)


class UnmatchedPaymentRow(SQLModel, table=True):
    __tablename__ = "unmatched_payments"

    id: str = Field(primary_key=True, max_length=64)  # Horizon payment (operation) id
    paging_token: str = Field(max_length=64)
    account: str = Field(max_length=69, index=True)  # the watched account that received it
    transaction_hash: str = Field(max_length=64)
    source_account: str
    asset: str  # SEP-38 id
    amount: str
    memo: str | None = None
    memo_type: str | None = Field(default=None, max_length=8)
    # no_memo | no_match | not_awaiting_payment | ambiguous | wrong_asset | rejected
    reason: str = Field(max_length=32)
    detail: str
    transaction_id: str | None = Field(default=None, max_length=64)  # the memo's withdrawal
    created_at: datetime | None = _ts(nullable=True)  # when the payment was made
    recorded_at: datetime = _ts(nullable=False)


class ObserverStateRow(SQLModel, table=True):
    __tablename__ = "observer_state"

    id: int = Field(default=1, primary_key=True)
    last_ledger: int | None = None  # every payment up to this ledger has been processed
    last_ledger_closed_at: datetime | None = _ts(nullable=True)
    caught_up_at: datetime | None = _ts(nullable=True)  # when that was established
    last_error: str | None = None
    last_error_at: datetime | None = _ts(nullable=True)
