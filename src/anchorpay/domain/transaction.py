"""The SEP-24 transaction as the domain sees it: a plain value, no I/O, no ORM.

The store maps it to and from its table; the state machine takes one and returns a new one.
Amounts are exact decimal strings, kept exactly as the business sent them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime

from anchorpay.domain.statuses import Kind, Status


@dataclass(slots=True)
class FeeDetail:
    name: str
    amount: str
    description: str | None = None


@dataclass(slots=True)
class RefundPayment:
    id: str
    id_type: str  # "stellar" | "external" (stored); SEP-24 results always show "stellar"
    amount: str
    fee: str


@dataclass(slots=True)
class Refunds:
    amount_refunded: str
    amount_fee: str
    payments: list[RefundPayment] = field(default_factory=list)


@dataclass(slots=True)
class StellarPayment:
    id: str
    amount: str
    asset: str  # SDK notation: "native" or "CODE:ISSUER"
    payment_type: str  # "payment" | "path_payment"
    source_account: str
    destination_account: str


@dataclass(slots=True)
class StellarTransaction:
    """One `stellar_transactions[]` entry (spec/rpc.md §5.5)."""

    id: str
    created_at: datetime | None
    envelope: str | None
    payments: list[StellarPayment] = field(default_factory=list)
    memo: str | None = None
    memo_type: str | None = None
    # The ledger record of a refund anchorpay paid (issue 16), never the user's incoming
    # payment nor a deposit's payment: its hash is also its `refunds.payments[].id`.
    refund: bool = False

    def clone(self) -> StellarTransaction:
        copied = copy.copy(self)
        copied.payments = [copy.copy(p) for p in self.payments]
        return copied


@dataclass(slots=True)
class Transaction:
    id: str
    kind: Kind
    status: Status
    started_at: datetime
    sep: str = "24"
    requested_asset: str | None = None  # amount_expected's asset in results (spec §5.3)
    amount_expected: str | None = None
    amount_in: str | None = None
    amount_in_asset: str | None = None
    amount_out: str | None = None
    amount_out_asset: str | None = None
    amount_fee: str | None = None
    amount_fee_asset: str | None = None
    fee_details: list[FeeDetail] | None = None
    quote_id: str | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    transfer_received_at: datetime | None = None
    user_action_required_by: datetime | None = None
    message: str | None = None
    refunds: Refunds | None = None
    stellar_transactions: list[StellarTransaction] = field(default_factory=list)
    stellar_transaction_id: str | None = None
    from_account: str | None = None  # result key `source_account`
    to_account: str | None = None  # result key `destination_account`
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
    version: int = 0  # optimistic concurrency: the store refuses a write over a newer version

    @property
    def funds_received(self) -> bool:
        """The reference's definition (spec §2.5): `transfer_received_at` is set."""
        return self.transfer_received_at is not None

    def clone(self) -> Transaction:
        """A copy the state machine may change without touching the caller's value: every
        record and list inside is new; the other fields (strings, numbers, datetimes, enums)
        are immutable and shared. A fraction of `copy.deepcopy`'s time; a test checks that
        no field of a mutable type is left out."""
        copied = copy.copy(self)
        if self.fee_details is not None:
            copied.fee_details = [copy.copy(d) for d in self.fee_details]
        if self.refunds is not None:
            copied.refunds = copy.copy(self.refunds)
            copied.refunds.payments = [copy.copy(p) for p in self.refunds.payments]
        copied.stellar_transactions = [s.clone() for s in self.stellar_transactions]
        return copied
