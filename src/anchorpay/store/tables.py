"""The database tables. Amounts are exact decimal strings; nested values are JSON.

Changing a table means a new Alembic revision in `migrations/versions/`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ColumnElement, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from anchorpay.store.types import UTCDateTime


def _ts(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


class TransactionRow(SQLModel, table=True):
    """A SEP-24 transaction: every field of the RPC transaction object (spec/rpc.md §5.2)."""

    __tablename__ = "sep24_transactions"
    # The indexes of get_transactions' orders are declared below the class (`LIST_ORDERS`).
    __table_args__ = (Index("ix_sep24_memo_open", "to_account", "memo"),)

    id: str = Field(primary_key=True, max_length=64)
    sep: str = Field(default="24", max_length=4)
    kind: str = Field(max_length=16)
    status: str = Field(max_length=40)
    version: int = Field(default=0)
    # Hash of the create request's body, so a repeated create with the same id is idempotent.
    create_fingerprint: str | None = Field(default=None, max_length=64)

    requested_asset: str | None = None
    amount_expected: str | None = None
    amount_in: str | None = None
    amount_in_asset: str | None = None
    amount_out: str | None = None
    amount_out_asset: str | None = None
    amount_fee: str | None = None
    amount_fee_asset: str | None = None
    fee_details: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    quote_id: str | None = None

    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    transfer_received_at: datetime | None = _ts()
    user_action_required_by: datetime | None = _ts()

    message: str | None = None
    refunds: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    stellar_transactions: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    stellar_transaction_id: str | None = None
    from_account: str | None = None
    to_account: str | None = None
    withdraw_anchor_account: str | None = None
    external_transaction_id: str | None = None
    memo: str | None = None
    memo_type: str | None = None
    refund_memo: str | None = None
    refund_memo_type: str | None = None
    client_domain: str | None = None
    client_name: str | None = None
    sep10_account: str | None = None
    sep10_account_memo: str | None = None


# get_transactions orders by one of these columns, either way, NULLS LAST and then by id
# (spec/rpc.md §4.2). Each order has two indexes holding exactly its sort keys, one of them
# led by status, so a page at any depth is a walk of one index (or a merge of one walk per
# status) and never a sort of the table; `list_order` is what both the indexes and the
# query (store/transactions.py) sort on. NULLS LAST is `(column IS NULL)` first: the one form
# both SQLite (NULL lowest) and PostgreSQL (NULL highest) read off the same index either way.
LIST_ORDERS = ("started_at", "transfer_received_at", "user_action_required_by")


def list_order(column: str, descending: bool) -> list[tuple[ColumnElement[Any], bool]]:
    """The sort keys of the listing by `column`: (expression, descending) pairs."""
    table = TransactionRow.__table__  # type: ignore[attr-defined]
    value = table.c[column]
    keys: list[tuple[ColumnElement[Any], bool]] = (
        [(value.is_(None), False)] if value.nullable else []
    )
    return [*keys, (value, descending), (table.c.id, False)]


def _declare_list_indexes() -> None:
    status = TransactionRow.__table__.c.status  # type: ignore[attr-defined]
    for column in LIST_ORDERS:
        for descending, way in ((False, "asc"), (True, "desc")):
            keys = [key.desc() if desc else key for key, desc in list_order(column, descending)]
            Index(f"ix_sep24_list_{column}_{way}", *keys)
            Index(f"ix_sep24_list_status_{column}_{way}", status, *keys)


_declare_list_indexes()


class PayoutRow(SQLModel, table=True):
    """A payout intent recorded by do_stellar_payment / do_stellar_refund and carried out by
    the worker (DESIGN.md, "Payout states and the exactly-once protocol")."""

    __tablename__ = "payouts"
    __table_args__ = (
        # One payout per (transaction, purpose, number): a retried RPC cannot add a second.
        UniqueConstraint("transaction_id", "purpose", "seq", name="uq_payout_purpose_seq"),
        Index("ix_payouts_due", "state", "next_attempt_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    transaction_id: str = Field(index=True, max_length=64)
    purpose: str = Field(max_length=16)  # "payment" | "refund"
    seq: int = Field(default=1)
    state: str = Field(max_length=24)
    destination: str
    asset: str
    amount: str
    memo: str | None = None
    memo_type: str | None = None
    refund_fee: str | None = None

    attempts: int = Field(default=0)
    polls: int = Field(default=0)  # looks at it while accepted but not final (backoff)
    next_attempt_at: datetime | None = _ts()
    last_error: str | None = None
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: datetime | None = _ts()
    waiting_since: datetime | None = _ts()

    adapter: str = Field(max_length=16)  # "stellar" | "fireblocks"
    adapter_ref: str | None = None  # Fireblocks: the externalTxId sent (the payout id)
    envelope_xdr: str | None = None  # local signer: stored before submission
    tx_hash: str | None = Field(default=None, index=True, max_length=64)
    source_account: str | None = Field(default=None, max_length=56)  # the lane (signer)
    # Its payment operation in an envelope it shares with other payouts (operation batching,
    # all of them storing that envelope and hash); None when the envelope is its own.
    op_index: int | None = None
    # The X-Request-Id of the request that recorded it: the worker's log lines carry it.
    request_id: str | None = Field(default=None, max_length=128)
    source_sequence: int | None = Field(  # Stellar sequence numbers are 64-bit
        default=None, sa_column=Column(BigInteger(), nullable=True)
    )
    valid_until: datetime | None = _ts()  # the envelope's time bound
    ledger: int | None = None

    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    version: int = Field(default=0)
