"""The trustline poller: resumes payouts once their destination trusts the asset.

Every cycle (TRUSTLINE_CHECK_INTERVAL_S) it takes every payout waiting for a trustline (and,
with TRUSTLINE_POLL_MANUAL=true and no custody, every transaction the business put in
`pending_trust`), groups them by destination account and reads each distinct account ONCE,
a few accounts at a time. One account's failing read is that account's problem alone: its
payouts wait for the next cycle, the others go on. Then, per waiting payout:

- the trustline is there: `notify_trust_set` with `success: true` through the state machine
  (`pending_trust` -> `pending_stellar`), which queues the payout and wakes the worker;
- the window (TRUSTLINE_CHECK_TIMEOUT_S, measured from `waiting_since`, stored in the
  database, so a restart keeps it) has passed: `notify_trust_set` with `success: false` and
  TRUSTLINE_TIMEOUT_MESSAGE (-> `pending_anchor`), which closes the payout;
- the business moved the transaction elsewhere meanwhile: the payout is closed, logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import select
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from anchorpay.adapters.ledger import Account, LedgerNotFound, LedgerUnavailable
from anchorpay.domain.errors import RpcError
from anchorpay.domain.payout_states import PayoutState
from anchorpay.domain.statuses import Status
from anchorpay.scheduler.leases import add_periodic_job
from anchorpay.store import payouts as payout_store
from anchorpay.store.tables import PayoutRow, TransactionRow
from anchorpay.workflow import Services, run_method

log = logging.getLogger("anchorpay.trustlines")

READ_CONCURRENCY = 8
JOB_ID = "trustlines.poll"


@dataclass(frozen=True, slots=True)
class Waiting:
    """One thing waiting for a trustline: a payout, or (manual mode) a bare transaction."""

    transaction_id: str
    account: str
    asset: str
    since: datetime
    payout_id: str | None


@dataclass(slots=True)
class CycleReport:
    accounts_read: int = 0
    accounts_failed: int = 0
    trusted: int = 0
    timed_out: int = 0
    closed: int = 0
    errors: list[str] = field(default_factory=list)


def _retryable(exc: BaseException) -> bool:
    """Back off on 429 and 5xx (and timeouts); a 404 is an answer: no account, no trust."""
    return isinstance(exc, LedgerUnavailable)


class TrustlinePoller:
    def __init__(
        self,
        services: Services,
        *,
        clock: Callable[[], datetime] | None = None,
        concurrency: int = READ_CONCURRENCY,
        read_attempts: int = 3,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 2.0,
    ) -> None:
        self.services = services
        self._clock = clock or services.clock.now
        self._reads = asyncio.Semaphore(concurrency)
        self._writes = asyncio.Lock()  # reads in parallel, state changes one at a time
        self._read_attempts = read_attempts
        self._backoff = (backoff_initial_s, backoff_max_s)

    async def run_cycle(self) -> CycleReport:
        report = CycleReport()
        waiting = await self._load_waiting()
        by_account: dict[str, list[Waiting]] = defaultdict(list)
        for item in waiting:
            by_account[item.account].append(item)
        await asyncio.gather(
            *(self._check_account(acc, items, report) for acc, items in by_account.items())
        )
        self.services.metrics.trustline_polls.inc()
        if waiting:
            log.info(
                "trustline cycle: waiting=%d accounts=%d failed_reads=%d trusted=%d "
                "timed_out=%d closed=%d",
                len(waiting),
                report.accounts_read,
                report.accounts_failed,
                report.trusted,
                report.timed_out,
                report.closed,
            )
        return report

    async def _load_waiting(self) -> list[Waiting]:
        settings = self.services.settings
        items: list[Waiting] = []
        async with self.services.sessions() as session:
            rows = (
                await session.exec(
                    # Parked by the worker itself (trustline vanished before submission) means
                    # a next attempt is set: the worker retries those; the rest are ours.
                    select(PayoutRow).where(
                        PayoutRow.state == PayoutState.WAITING_TRUST,
                        PayoutRow.next_attempt_at.is_(None),  # type: ignore[union-attr]
                    )
                )
            ).all()
            items.extend(
                Waiting(
                    transaction_id=r.transaction_id,
                    account=r.destination,
                    asset=r.asset,
                    since=r.waiting_since or r.created_at,
                    payout_id=r.id,
                )
                for r in rows
            )
            if settings.trustline_poll_manual and not settings.custody_enabled:
                txs = (
                    await session.exec(
                        select(TransactionRow).where(
                            TransactionRow.status == Status.PENDING_TRUST.value
                        )
                    )
                ).all()
                items.extend(
                    Waiting(
                        transaction_id=t.id,
                        account=t.to_account,
                        asset=t.amount_out_asset,
                        since=t.updated_at or t.started_at,
                        payout_id=None,
                    )
                    for t in txs
                    if t.to_account and t.amount_out_asset
                )
        return items

    async def _read(self, account: str) -> Account | None:
        """The account, None when it does not exist; raises LedgerUnavailable when it stays
        unreadable after the retries."""
        initial, maximum = self._backoff
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._read_attempts),
            wait=wait_exponential_jitter(multiplier=initial, max=maximum),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        async with self._reads:
            try:
                return await retrying(self._read_once, account)
            except LedgerNotFound:
                return None

    async def _read_once(self, account: str) -> Account:
        self.services.metrics.trustline_reads.inc()
        try:
            async with asyncio.timeout(self.services.settings.horizon_timeout_s):
                return await self.services.ledger.get_account(account)
        except TimeoutError as exc:  # a timeout is as transient as a 503: retried too
            raise LedgerUnavailable(f"reading {account} timed out") from exc

    async def _check_account(
        self, account: str, items: Iterable[Waiting], report: CycleReport
    ) -> None:
        now = self._clock()
        window = timedelta(seconds=self.services.settings.trustline_check_timeout_s)
        found: Account | None = None
        readable = True
        try:
            found = await self._read(account)
            report.accounts_read += 1
        except Exception as exc:  # one account's trouble is its own: the others go on
            readable = False
            report.accounts_failed += 1
            log.warning("trustline read for %s failed: %s; retrying next cycle", account, exc)
        for item in items:
            if readable and found is not None and found.trusts(item.asset):
                await self._settle(item, success=True, report=report)
            elif now - item.since >= window:
                await self._settle(item, success=False, report=report)

    async def _settle(self, item: Waiting, *, success: bool, report: CycleReport) -> None:
        settings = self.services.settings
        params: dict[str, Any] = {"transaction_id": item.transaction_id, "success": success}
        if not success:
            params["message"] = settings.trustline_timeout_message
        async with self._writes:
            try:
                await run_method(self.services, "notify_trust_set", params, now=self._clock())
            except RpcError as exc:
                await self._close_orphan(item, exc, report)
                return
        if success:
            report.trusted += 1
        else:
            report.timed_out += 1

    async def _close_orphan(self, item: Waiting, exc: RpcError, report: CycleReport) -> None:
        """The transaction is no longer in `pending_trust` (the business moved it): the
        payout must not wait for ever, nor be paid behind the business's back."""
        report.errors.append(f"{item.transaction_id}: {exc.message}")
        if item.payout_id is None:
            log.warning("trustline: %s: %s", item.transaction_id, exc.message)
            return
        reason = f"closed by the trustline poller: {exc.message}"
        async with self.services.sessions() as session, session.begin():
            await payout_store.cancel_unsent(
                session, item.transaction_id, reason=reason, now=self._clock()
            )
        report.closed += 1
        log.warning("trustline: payout %s %s", item.payout_id, reason)


def add_trustline_job(scheduler: Any, services: Services) -> None:
    """Registered by the worker (scheduler/worker.py OPTIONAL_JOBS). One cycle never
    overlaps the next: `max_instances=1`, `coalesce`."""
    settings = services.settings
    if not settings.custody_enabled and not settings.trustline_poll_manual:
        return  # the business drives request_trust / notify_trust_set itself
    poller = TrustlinePoller(services)
    add_periodic_job(
        scheduler, services, JOB_ID, settings.trustline_check_interval_s, poller.run_cycle
    )
