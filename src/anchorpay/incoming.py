"""Incoming payments: a user's payment to a watched account, credited to their withdrawal.

One service for every road a payment arrives by (the Horizon payment observer, the Fireblocks
poll, the Fireblocks webhook), so the matching rules, the transition and the record of an
unmatched payment are the same whichever road saw it. The roads keep only what is theirs:
where the payment came from and what must commit with its effect (the observer's cursor,
the Fireblocks decision row).

An incoming payment (to the watched account, successful, `payment` or a path payment) with a
memo is matched to the SEP-24 withdrawals that told the user to pay that account with that
memo (a `hash` memo matches in hex or base64). With exactly one such withdrawal, in
`pending_user_transfer_start`, paid in its `amount_in` asset, `notify_onchain_funds_received`
is applied through the state machine with the hash, `amount_in` = the amount received and
the message INCOMING_PAYMENT_RECEIVED_MESSAGE. When the amount differs from
`amount_expected` (else `amount_in`), the message says so:
"Received an incoming payment. Amount mismatch: received 9.5 but 10 was expected".
Anything else is recorded in `unmatched_payments` with a reason: `no_memo`, `no_match`,
`not_awaiting_payment` (e.g. a second payment), `ambiguous` (two open withdrawals with the
memo: nobody is credited), `wrong_asset`, `rejected` (the state machine refused it).
Outgoing payments, failed transactions and other operations are skipped.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import workflow
from anchorpay.domain.errors import INTERNAL_ERROR, RpcError
from anchorpay.domain.payments import ObservedPayment
from anchorpay.domain.statuses import Status
from anchorpay.domain.transaction import Transaction
from anchorpay.services import JobServices
from anchorpay.store import observer as store

log = logging.getLogger("anchorpay.incoming")

METHOD = "notify_onchain_funds_received"
PAYMENT_TYPES = frozenset(
    {"payment", "path_payment", "path_payment_strict_receive", "path_payment_strict_send"}
)

# Work that must commit in the same database transaction as the credit.
Finish = workflow.InSameTransaction
# Applies `notify_onchain_funds_received` with these params and runs `finish` inside the
# same database transaction (the workflow's run_method with `in_same_transaction=`).
Apply = Callable[[dict[str, Any], Finish], Awaitable[Transaction]]


@dataclass(frozen=True, slots=True)
class Unmatched:
    reason: str
    detail: str
    transaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class Credit:
    transaction_id: str
    params: dict[str, Any]


Decision = Unmatched | Credit | None  # None: not an incoming payment, skipped


def memo_candidates(memo: str | None, memo_type: str | None) -> set[str]:
    """The stored forms a payment memo may have. A `hash` memo is stored in base64 (the
    reference's `self` generator) or as the business gave it: match hex and base64."""
    if not memo:
        return set()
    out = {memo}
    if memo_type == "hash":
        raw: bytes | None = None
        try:
            raw = bytes.fromhex(memo)
        except ValueError:
            try:
                raw = base64.b64decode(memo, validate=True)
            except (binascii.Error, ValueError):
                raw = None
        if raw is not None and len(raw) == 32:
            out.add(base64.b64encode(raw).decode())
            out.add(raw.hex())
    return out


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def amount_message(base: str, received: str, expected: str | None) -> str:
    """`base`, plus the mismatch sentence when the amount received is not the one expected."""
    if not expected:
        return base
    try:
        got, want = Decimal(received), Decimal(expected)
    except InvalidOperation:
        return base
    if got == want:
        return base
    return f"{base}. Amount mismatch: received {_plain(got)} but {_plain(want)} was expected"


class IncomingPayments:
    """Decide on a payment, credit it, or record it unmatched. The caller says what commits
    with each effect, so a payment takes effect exactly once whichever road carried it."""

    def __init__(self, services: JobServices, apply: Apply | None = None) -> None:
        self.services = services
        self.apply = apply or _workflow_apply(services)

    async def decide(
        self, session: AsyncSession, account: str, payment: ObservedPayment
    ) -> Decision:
        """What to do with a payment seen on `account`: credit a withdrawal, record it
        unmatched, or skip it (not an incoming payment). Reads only."""
        if payment.destination_account != account or payment.source_account == account:
            return None
        if not payment.successful or payment.type not in PAYMENT_TYPES:
            return None
        candidates = memo_candidates(payment.memo, payment.memo_type)
        if not candidates or payment.memo_type in (None, "none"):
            return Unmatched("no_memo", "The payment has no memo")
        matches = await store.withdrawals_by_memo(session, account, candidates)
        if not matches:
            return Unmatched("no_match", "No withdrawal uses this memo for this account")
        open_ = [t for t in matches if t.status == Status.PENDING_USER_TRANSFER_START]
        if not open_:
            tx = matches[-1]
            return Unmatched(
                "not_awaiting_payment",
                f"Transaction[{tx.id}] uses this memo but is in status {tx.status.value}",
                tx.id,
            )
        if len(open_) > 1:
            ids = ", ".join(t.id for t in open_)
            return Unmatched(
                "ambiguous", f"Several open withdrawals use this memo: {ids}", open_[0].id
            )
        tx = open_[0]
        expected_asset = tx.amount_in_asset or tx.requested_asset
        if expected_asset != payment.asset:
            return Unmatched(
                "wrong_asset",
                f"Transaction[{tx.id}] expects {expected_asset}, the payment is {payment.asset}",
                tx.id,
            )
        message = amount_message(
            self.services.settings.incoming_payment_received_message,
            payment.amount,
            tx.amount_expected or tx.amount_in,
        )
        params: dict[str, Any] = {
            "transaction_id": tx.id,
            "stellar_transaction_id": payment.transaction_hash,
            "amount_in": {"amount": payment.amount},
            "message": message,
        }
        return Credit(tx.id, params)

    async def credit(
        self, payment: ObservedPayment, credit: Credit, finish: Finish
    ) -> Credit | Unmatched:
        """Apply the credit and `finish` in one database transaction: returns `credit` when
        committed, or the `rejected` Unmatched for the caller to record when the state machine
        refused it. A transient error (-32603, e.g. the ledger did not answer) and whatever
        `finish` raises propagate, with nothing written: the caller retries later."""
        try:
            await self.apply(credit.params, finish)
        except RpcError as exc:
            if exc.code == INTERNAL_ERROR:
                raise
            detail = f"{METHOD} was refused: {exc.message}"
            return Unmatched("rejected", detail, credit.transaction_id)
        log.info(
            "incoming payment %s (tx %s) credited to withdrawal %s",
            payment.id,
            payment.transaction_hash,
            credit.transaction_id,
        )
        return credit

    async def record_unmatched(
        self,
        session: AsyncSession,
        account: str,
        payment: ObservedPayment,
        unmatched: Unmatched,
        now: datetime,
    ) -> bool:
        """Record, in the caller's database transaction, a payment that credited nothing.
        False when it was recorded before."""
        log.warning(
            "unmatched incoming payment %s (tx %s) of %s %s to %s memo %r: %s",
            payment.id,
            payment.transaction_hash,
            payment.amount,
            payment.asset,
            account,
            payment.memo,
            unmatched.detail,
        )
        return await store.record_unmatched(
            session,
            payment,
            account,
            unmatched.reason,
            unmatched.detail,
            now,
            unmatched.transaction_id,
        )


def _workflow_apply(services: Any) -> Apply:
    """The workflow's `run_method` (services: the workflow's `Services`)."""

    async def apply(params: dict[str, Any], finish: Finish) -> Transaction:
        return await workflow.run_method(services, METHOD, params, in_same_transaction=finish)

    return apply
