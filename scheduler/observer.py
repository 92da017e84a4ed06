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

Each payment is decided, credited or recorded unmatched by the incoming-payments service
(`anchorpay.incoming`: the matching rules and messages, shared with the Fireblocks roads);
the observer adds the cursor to what commits with each effect.

A state-machine error with code -32603 (e.g. Horizon did not answer) is transient: the open
unit is rolled back and retried from the stored cursor next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import network_guard
from anchorpay.adapters.ledger import LedgerError, LedgerNotFound, LedgerUnavailable
from anchorpay.domain.payments import ObservedPayment
from anchorpay.incoming import Apply, Credit, Finish, IncomingPayments, Unmatched
from anchorpay.scheduler.leases import add_periodic_job
from anchorpay.services import JobServices
from anchorpay.store import ledger_network
from anchorpay.store import observer as store

log = logging.getLogger("anchorpay.observer")

JOB_ID = "payment_observer"
PAGE_LIMIT = 200
MAX_PAGES_PER_ACCOUNT = 50  # per run; the rest waits for the next run
FIRST_RUN_DELAY_S = 1.0


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
        self.incoming = IncomingPayments(services, apply)
        self.page_limit = page_limit
        self.clock = clock or services.clock.now
        self._caught_up_ledger: int | None = None  # this process's last full catch-up

    async def run_once(self) -> ObserverRun:
        """The job: never raises; a failure is logged and recorded for GET /health."""
        run = ObserverRun()
        try:
            await self.sync(run)
        except Exception as exc:
            if isinstance(exc, network_guard.NetworkChanged):
                log.error("payment observer stopped: %s", exc)
            elif isinstance(exc, LedgerUnavailable):
                # Expected now and then (Horizon busy, or the embedded sandbox not listening
                # yet at start): one line, retried at the next run.
                log.warning("payment observer: ledger unavailable (%s); retrying next run", exc)
            else:
                log.exception("payment observer run failed")
            run.error = f"{type(exc).__name__}: {exc}"
            self.services.metrics.observer_runs.labels("failed").inc()
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
        async with self.services.sessions() as session:
            observed = await ledger_network.observed_ledger(session)
        if observed is not None and latest.sequence < observed:
            # The ledger is behind what was processed: another network. Its paging tokens
            # mean nothing against the stored cursors, so nothing is read.
            source = f"Horizon at {self.services.settings.horizon_base_url()}"
            raise network_guard.went_back(observed, latest.sequence, source)
        accounts = await self.watched_accounts()
        run.accounts = len(accounts)
        caught_up = True
        for account in sorted(accounts):
            caught_up = await self._sync_account(account, run) and caught_up
        if caught_up:
            async with self.services.sessions() as session, session.begin():
                await store.save_caught_up(session, latest.sequence, latest.closed_at, self.clock())
        run.caught_up = caught_up
        self._count(run, latest.sequence)
        if run.credited or run.unmatched:
            log.info(
                "observer: %d payments, credited %d, unmatched %d",
                run.payments,
                len(run.credited),
                len(run.unmatched),
            )
        return run

    def _count(self, run: ObserverRun, latest: int) -> None:
        metrics = self.services.metrics
        metrics.observer_runs.labels("caught_up" if run.caught_up else "behind").inc()
        metrics.observer_payments.labels("credited").inc(len(run.credited))
        metrics.observer_payments.labels("unmatched").inc(len(run.unmatched))
        if run.caught_up:
            self._caught_up_ledger = latest
        if self._caught_up_ledger is not None:
            metrics.observer_lag_ledgers.set(max(0, latest - self._caught_up_ledger))

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
                decision = await self.incoming.decide(session, account, payment)
            if isinstance(decision, Credit):
                finish = self._finisher(account, cursor, payment.paging_token, since, pending)
                decision = await self.incoming.credit(payment, decision, finish)
                if isinstance(decision, Credit):
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
                await self.incoming.record_unmatched(session, account, payment, unmatched, now)

        return finish


def add_observer_job(scheduler: Any, services: JobServices) -> PaymentObserver | None:
    """Register the observer on an APScheduler scheduler: every OBSERVER_INTERVAL_S, one
    instance at a time, missed runs coalesced. Not with custody deposit addresses: the
    custodian reports what reached its vault (anchorpay/fireblocks_transfers.py)."""
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
