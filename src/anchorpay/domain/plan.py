"""The values the state machine exchanges with its caller (re-exported by `domain.machine`).

validate() returns a Plan (what to look up before applying), the caller gathers Facts (ledger
transaction, trustline, deposit instructions), apply() returns an Outcome (the new
transaction and what the worker must do).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from anchorpay.domain.assets import AssetList
from anchorpay.domain.params import Params
from anchorpay.domain.statuses import Status
from anchorpay.domain.transaction import RefundPayment, StellarTransaction, Transaction


@dataclass(frozen=True, slots=True)
class MachineContext:
    assets: AssetList
    custody_enabled: bool  # CUSTODY_TYPE != "none"
    custody_type: str  # "none" | "stellar" | "fireblocks"
    deposit_info_generator: str  # "self" | "none" | "custody"
    now: datetime  # timezone-aware UTC


@dataclass(frozen=True, slots=True)
class DepositInfo:
    destination_account: str
    memo: str
    memo_type: str


@dataclass(slots=True)
class Plan:
    """A validated request: what the caller must look up before apply()."""

    method: str
    transaction: Transaction  # the stored one, untouched
    params: Params
    # the caller must look this hash up on the ledger (notify_onchain_funds_sent/received)
    stellar_transaction_id: str | None = None
    # (account, SEP-38 asset) the caller must check (do_stellar_payment)
    trustline_query: tuple[str, str] | None = None
    # request_onchain_funds with generator self/custody: the caller MAY supply DepositInfo
    needs_deposit_info: bool = False
    # Computed during validation (spec §2.4 step 5); None while it depends on facts.
    next_status: Status | None = None
    # notify_refund_pending/sent: the payments list to store (None: leave refunds untouched)
    refund_payments: list[RefundPayment] | None = None
    # request_onchain_funds with generator none: the canonical type of the business's memo
    memo_type: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    # Built by the ledger client; memo/memo_type are copied from the SEP transaction (§5.5).
    stellar_transaction: StellarTransaction | None = None
    trustline: bool | None = None
    deposit_info: DepositInfo | None = None
    # notify_refund_sent applied by the worker for a refund it paid: the ledger's record of
    # that refund, added to stellar_transactions (never passed for a business's call).
    refund_record: StellarTransaction | None = None


@dataclass(frozen=True, slots=True)
class PayoutIntent:
    """do_stellar_payment / do_stellar_refund: what the worker must pay."""

    purpose: str  # "payment" | "refund"
    destination: str  # deposit: to_account; refund: from_account (the user who paid)
    asset: str  # SEP-38 id (payment: amount_out_asset; refund: amount_in_asset)
    amount: str  # payment: amount_out; refund: refund.amount.amount (exact string)
    memo: str | None  # payment: the transaction's memo; refund: refund_memo
    memo_type: str | None
    refund_fee: str | None
    wait_for_trust: bool  # do_stellar_payment without trustline


@dataclass(slots=True)
class Outcome:
    transaction: Transaction  # the new value (a clone), status/fields updated, updated_at=now
    payout: PayoutIntent | None = None
    # notify_trust_set success with custody: the waiting payout goes to queued
    resume_waiting_payout: bool = False
    # notify_trust_set success=false with custody, notify_transaction_error/expired: close a
    # payout waiting for trust
    cancel_waiting_payout: bool = False
