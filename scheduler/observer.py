"""The payment observer: credits the user's Stellar payment to their withdrawal.

Every run (an APScheduler interval job, `OBSERVER_INTERVAL_S`, one instance at a time):

1. Reads the latest ledger, then the watched accounts: the distribution account of every
   configured Stellar asset, and every `to_account` named by a withdrawal in
   `pending_user_transfer_start` (re-read each run, so a new account is watched at once).
2. For each account, pages through `LedgerClient.payments(account, cursor)`, oldest first,
   and decides each payment (read only). Effects commit in units, each ONE database
   transaction that also moves the account's stored cursor (compare-and-set from the value
   the unit started from, so two workers never both take a payment): a credit commits inside
   the state machine's own transaction (`run_method(..., in_same_transaction=...)`) together
   with the cursor moved to that payment and the unmatched payments before it; the rest of
   the page commits at its end. A crash or error anywhere rolls back the open unit, effects and
   cursor together: the next run resumes from the last committed payment and each payment
   takes effect exactly once, none is skipped however long the process was down.
3. When every account is caught up, records the ledger read in step 1 as processed
   (`observer_state`, reported by `GET /health`).

An incoming payment (to the watched account, successful, `payment` or a path payment) with a
memo is matched to the SEP-24 withdrawals that told the user to pay that account with that
memo (a `hash` memo matches in hex or base64). With exactly one such withdrawal, in
`pending_user_transfer_start`, paid in its `amount_in` asset, the observer applies
`notify_onchain_funds_received` through the state machine with the hash, `amount_in` = the
amount received and the message INCOMING_PAYMENT_RECEIVED_MESSAGE. When the amount differs
from `amount_expected` (else `amount_in`), the message says so:
"Received an incoming payment. Amount mismatch: received 9.5 but 10 was expected".
Everything else is recorded in `unmatched_payments` and logged, with a reason: `no_memo`,
`no_match`, `not_awaiting_payment` (e.g. a second payment), `ambiguous` (two open withdrawals
with the memo: nobody is credited), `wrong_asset`, `rejected` (the state machine refused it).
Outgoing payments, failed transactions and other operations are skipped.

A state-machine error with code -32603 (e.g. Horizon did not answer) is transient: the open
unit is rolled back and retried from the stored cursor next run.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.ledger import (
    LedgerError,
    LedgerNotFound,
    LedgerUnavailable,
    ObservedPayment,
)
from anchorpay.domain.errors import INTERNAL_ERROR, RpcError
from anchorpay.domain.statuses import Status
from anchorpay.domain.transaction import Transaction
from anchorpay.scheduler.singleton import add_periodic_job
from anchorpay.services import JobServices
from anchorpay.store import observer as store

log = logging.getLogger("anchorpay.observer")

JOB_ID = "payment_observer"
PAGE_LIMIT = 200
MAX_PAGES_PER_ACCOUNT = 50  # per run; the rest waits for the next run
PAYMENT_TYPES = frozenset(
    {"payment", "path_payment", "path_payment_strict_receive", "path_payment_strict_send"}
)
METHOD = "notify_onchain_funds_received"
FIRST_RUN_DELAY_S = 1.0


# Work that must commit in the same database transaction as a state change.
Finish = Callable[[AsyncSession], Awaitable[None]]
# Applies `notify_onchain_funds_received` with these params and runs `finish` inside the
# same database transaction (the workflow's run_method with `in_same_transaction=`).
Apply = Callable[[dict[str, Any], Finish], Awaitable[Transaction]]


@dataclass
class ObserverRun:
    """What one run did (for logs and tests)."""

    accounts: int = 0
    pages: int = 0
    payments: int = 0
    credited: list[str] = field(default_factory=list)  # transaction ids
    unmatched: list[str] = field(default_factory=list)  # payment ids
    caught_up: bool = False
    ledger: int | None = None
    error: str | None = None


class _LostRace(Exception):
    """Another worker moved the cursor first."""


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


class PaymentObserver:
    def __init__(
        self,
        services: JobServices,
        apply: Apply | None = None,
        *,
        page_limit: int = PAGE_LIMIT,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.services = services
        self.apply = apply or _workflow_apply(services)
        self.page_limit = page_limit
        self.clock = clock or (lambda: datetime.now(UTC))

    async def run_once(self) -> ObserverRun:
        """The job: never raises; a failure is logged and recorded for GET /health."""
        run = ObserverRun()
        try:
            await self.sync(run)
        except Exception as exc:
            if isinstance(exc, LedgerUnavailable):
                # Expected now and then (Horizon busy, or the embedded sandbox not listening
                # yet at start): one line, retried at the next run.
                log.warning("payment observer: ledger unavailable (%s); retrying next run", exc)
            else:
                log.exception("payment observer run failed")
            run.error = f"{type(exc).__name__}: {exc}"
            try:
                async with self.services.sessions() as session, session.begin():
                    await store.save_error(session, run.error, self.clock())
            except Exception:
                log.exception("payment observer could not record its error")
        return run

    async def sync(self, run: ObserverRun | None = None) -> ObserverRun:
        """One pass over every watched account; raises on the first failure."""
        run = run or ObserverRun()
        latest = await self.services.ledger.latest_ledger()
        run.ledger = latest.sequence
        accounts = await self.watched_accounts()
        run.accounts = len(accounts)
        caught_up = True
        for account in sorted(accounts):
            caught_up = await self._sync_account(account, run) and caught_up
        if caught_up:
            async with self.services.sessions() as session, session.begin():
                await store.save_caught_up(session, latest.sequence, latest.closed_at, self.clock())
        run.caught_up = caught_up
        if run.credited or run.unmatched:
            log.info(
                "observer: %d payments, credited %d, unmatched %d",
                run.payments,
                len(run.credited),
                len(run.unmatched),
            )
        return run

    async def watched_accounts(self) -> set[str]:
        accounts = {
            a.distribution_account
            for a in self.services.assets.stellar_assets()
            if a.distribution_account
        }
        async with self.services.sessions() as session:
            accounts |= await store.open_withdrawal_accounts(session)
        return accounts

    async def _sync_account(self, account: str, run: ObserverRun) -> bool:
        """Process pages until the account is caught up (True) or the page budget is spent."""
        for _ in range(MAX_PAGES_PER_ACCOUNT):
            async with self.services.sessions() as session:
                cursor = await store.get_cursor(session, account)
            try:
                page = await self.services.ledger.payments(account, cursor, self.page_limit)
            except LedgerNotFound:
                return True  # the account does not exist yet: nothing was paid to it
            except LedgerUnavailable:
                raise  # transient: the run fails and is retried
            except LedgerError as exc:  # e.g. 400 for a malformed address a business gave
                log.warning("observer: cannot follow payments of %s: %s", account, exc)
                return True
            if not page.payments:
                return True
            try:
                await self._process_page(account, cursor, page.payments, run)
            except (_LostRace, IntegrityError):
                log.info("observer: another worker processed %s first; re-reading", account)
                continue
            run.pages += 1
            if len(page.payments) < self.page_limit:
                return True
        return False

    async def _process_page(
        self, account: str, cursor: str | None, payments: list[ObservedPayment], run: ObserverRun
    ) -> None:
        """Commit units: each credit commits with the cursor moved to its payment and the
        unmatched payments before it; the rest commit together at the end of the page."""
        pending: list[tuple[ObservedPayment, Unmatched]] = []
        since = 0  # payments since `cursor`
        for payment in payments:
            run.payments += 1
            since += 1
            async with self.services.sessions() as session:
                decision = await self.decide(session, account, payment)
            if isinstance(decision, Credit):
                finish = self._finisher(account, cursor, payment.paging_token, since, pending)
                try:
                    await self.apply(decision.params, finish)
                except RpcError as exc:
                    if exc.code == INTERNAL_ERROR:
                        raise  # transient (e.g. Horizon): retried from the cursor next run
                    detail = f"{METHOD} was refused: {exc.message}"
                    decision = Unmatched("rejected", detail, decision.transaction_id)
                else:
                    log.info(
                        "observer: payment %s (tx %s) credited to withdrawal %s",
                        payment.id,
                        payment.transaction_hash,
                        decision.transaction_id,
                    )
                    run.unmatched.extend(p.id for p, _ in pending)
                    run.credited.append(decision.transaction_id)
                    cursor, pending, since = payment.paging_token, [], 0
                    continue
            if decision is not None:
                pending.append((payment, decision))
        finish = self._finisher(account, cursor, payments[-1].paging_token, since, pending)
        async with self.services.sessions() as session, session.begin():
            await finish(session)
        run.unmatched.extend(p.id for p, _ in pending)

    def _finisher(
        self,
        account: str,
        old: str | None,
        new: str,
        count: int,
        pending: list[tuple[ObservedPayment, Unmatched]],
    ) -> Finish:
        """What commits with a unit: the cursor moves from `old` to `new` (or the unit is
        refused: another worker took it), and the unmatched payments are recorded."""
        items = list(pending)

        async def finish(session: AsyncSession) -> None:
            now = self.clock()
            if not await store.claim_page(session, account, old, new, count, now):
                raise _LostRace(account)
            for payment, unmatched in items:
                log.warning(
                    "observer: unmatched payment %s (tx %s) of %s %s to %s memo %r: %s",
                    payment.id,
                    payment.transaction_hash,
                    payment.amount,
                    payment.asset,
                    account,
                    payment.memo,
                    unmatched.detail,
                )
                await store.record_unmatched(
                    session,
                    payment,
                    account,
                    unmatched.reason,
                    unmatched.detail,
                    now,
                    unmatched.transaction_id,
                )

        return finish

    async def decide(
        self, session: AsyncSession, account: str, payment: ObservedPayment
    ) -> Decision:
        """What to do with one payment: credit a withdrawal, record it unmatched, or skip it
        (not an incoming payment). Reads only."""
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


def _workflow_apply(services: Any) -> Apply:
    """The workflow's `run_method` (services: the workflow's `Services`)."""

    async def apply(params: dict[str, Any], finish: Finish) -> Transaction:
        from anchorpay import workflow  # imported late: the workflow imports the store

        return await workflow.run_method(services, METHOD, params, in_same_transaction=finish)

    return apply


def add_observer_job(scheduler: Any, services: JobServices) -> PaymentObserver | None:
    """Register the observer on an APScheduler scheduler: every OBSERVER_INTERVAL_S, one
    instance at a time, missed runs coalesced. Not with custody deposit addresses: the
    custodian reports what reached its vault (scheduler/fireblocks_incoming.py)."""
    if services.settings.deposit_info_generator == "custody":
        return None
    observer = PaymentObserver(services)
    # The first run waits a moment: the embedded sandbox's Horizon only answers once the
    # server listens, and a "ledger unavailable" warning at every start is noise.
    add_periodic_job(
        scheduler,
        services,
        JOB_ID,
        services.settings.observer_interval_s,
        observer.run_once,
        first_run_delay_s=FIRST_RUN_DELAY_S,
    )
    return observer
