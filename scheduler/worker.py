"""The worker: one APScheduler `AsyncIOScheduler` running the payout jobs (and, when their
modules are installed, the other background jobs) in `anchorpay serve` or `anchorpay worker`.

- `payouts.dispatch` (every WORKER_TICK_S): claim due payouts, carry them out.
- `payouts.confirm` (every WORKER_TICK_S): look up `submitted` payouts until final.
Both run with `max_instances=1` and `coalesce`; leases make several worker processes safe.
The scheduled jobs only kick a runner task that does the work, one run at a time; `wake()`
kicks the dispatcher at once (an intent was just recorded) instead of at the next tick, and a
kick during a run makes it go round once more, so nothing waits for the tick.
`PayoutWatch` (scheduler/payout_watch.py) kicks them too: for payouts another process
recorded (WORKER_IDLE_POLL_S), and when a ledger closes while an envelope is in flight
(WORKER_LEDGER_POLL_S), so a payout is looked up at the close, not at its next tick.
A database that cannot serve closes the shared `DatabaseOutage` (scheduler/outage.py): runs
are skipped but for one probe per backoff step, one log line each, not one per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from anchorpay.adapters.custody import CustodyAdapter
from anchorpay.clock import SYSTEM
from anchorpay.domain.payout_states import PayoutState
from anchorpay.scheduler.completion import Completion, RunMethod
from anchorpay.scheduler.leases import release_leases
from anchorpay.scheduler.outage import DatabaseOutage, outage_of
from anchorpay.scheduler.payout_watch import PayoutWatch
from anchorpay.scheduler.payouts import PayoutProcessor
from anchorpay.services import JobServices
from anchorpay.settings import ConfigError
from anchorpay.store.unavailable import database_unavailable

log = logging.getLogger("anchorpay.worker")

DISPATCH_STATES = (PayoutState.QUEUED, PayoutState.WAITING_TRUST, PayoutState.SUBMITTING)
CONFIRM_STATES = (PayoutState.SUBMITTED,)

# Other background jobs register themselves on this scheduler when their module exists:
# (module, function taking (scheduler, services)).
OPTIONAL_JOBS = (
    ("anchorpay.scheduler.observer", "add_observer_job"),
    ("anchorpay.scheduler.trustlines", "add_trustline_job"),
    ("anchorpay.scheduler.fireblocks_incoming", "add_fireblocks_incoming_job"),
    ("anchorpay.scheduler.event_delivery", "add_event_delivery_job"),
    ("anchorpay.scheduler.kafka_events", "add_kafka_events_job"),
)


def build_adapter(services: JobServices) -> CustodyAdapter | None:
    """The configured custody adapter, or None when custody is off (CUSTODY_TYPE=none). Its
    configuration was read once by the composition root (`Services`)."""
    kind = services.settings.effective_custody_type
    if kind == "stellar":
        from anchorpay.adapters.stellar_signer import build_stellar_signer

        return build_stellar_signer(
            services.settings, services.ledger, services.distribution_secret_default
        )
    if kind == "fireblocks":
        from anchorpay.adapters.fireblocks import build_fireblocks_adapter

        if services.fireblocks is None:
            raise ConfigError("CUSTODY_TYPE=fireblocks but its configuration was not loaded")
        return build_fireblocks_adapter(
            services.fireblocks, services.ledger, services.clock, services.metrics
        )
    return None


class _Runner:
    """Runs `job` whenever kicked, one run at a time; a kick during a run makes it run once
    more afterwards. APScheduler's ticks only kick, so its jobs never overlap or pile up."""

    def __init__(
        self, name: str, job: Callable[[], Awaitable[None]], outage: DatabaseOutage
    ) -> None:
        self.name = name
        self._job = job
        self._outage = outage
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.running = False

    def kick(self) -> None:
        self._event.set()

    async def tick(self) -> None:  # the APScheduler job
        self._event.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"anchorpay-{self.name}")

    async def stop(self, grace_s: float = 10.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Let a step in progress finish its commit (a cut is safe, a clean stop is nicer).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                while self.running:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            if not self._outage.may_run():
                continue  # the database is away: the next probe is due later
            self.running = True
            try:
                await self._job()
            except Exception as exc:
                if database_unavailable(exc):
                    self._outage.failed(self.name, exc)
                else:
                    self._outage.succeeded(self.name)  # it answered: the failure is another one
                    log.exception("worker: %s failed", self.name)
            else:
                self._outage.succeeded(self.name)
            finally:
                self.running = False


class Worker:
    def __init__(
        self,
        services: JobServices,
        *,
        adapter: CustodyAdapter | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] | None = None,
        run_method: RunMethod | None = None,
        optional_jobs: bool = True,
    ) -> None:
        self.services = services
        self.settings = services.settings
        clock = clock or services.clock.now
        self.adapter = adapter or build_adapter(services)
        self.processor: PayoutProcessor | None = None
        self.watch: PayoutWatch | None = None
        self.outage = outage_of(services)
        if self.adapter is not None:
            completion = Completion(services, run_method=run_method, clock=clock)
            self.processor = PayoutProcessor(
                self.settings,
                services.sessions,
                self.adapter,
                completion,
                owner=owner,
                clock=clock,
                metrics=services.metrics,
            )
            self.watch = PayoutWatch(services, self.kick, self.outage, clock=clock)
        self._optional_jobs = optional_jobs
        self._scheduler: AsyncIOScheduler | None = None
        self._dispatcher = _Runner("payouts.dispatch", self.dispatch, self.outage)
        self._confirmer = _Runner("payouts.confirm", self.confirm, self.outage)
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def __repr__(self) -> str:
        return f"Worker(adapter={self.adapter!r})"

    @property
    def scheduler(self) -> AsyncIOScheduler | None:
        return self._scheduler

    async def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        tick = self.settings.worker_tick_s
        now = SYSTEM.now()  # APScheduler runs on real time
        if self.processor is not None:
            for runner in (self._dispatcher, self._confirmer):
                runner.start()
                scheduler.add_job(
                    runner.tick,
                    "interval",
                    seconds=tick,
                    id=runner.name,
                    max_instances=1,
                    coalesce=True,
                    replace_existing=True,
                    next_run_time=now,
                )
            if self.watch is not None:
                self.watch.start()
        else:
            log.info("worker: custody is off (CUSTODY_TYPE=none); no payout jobs")
        if self._optional_jobs:
            self._add_optional_jobs(scheduler)
        scheduler.start()
        self._scheduler = scheduler
        log.info("worker started: adapter=%r tick=%ss", self.adapter, tick)

    def _add_optional_jobs(self, scheduler: AsyncIOScheduler) -> None:
        for module_name, func_name in OPTIONAL_JOBS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            add: Any = getattr(module, func_name, None)
            job = add(scheduler, self.services) if add is not None else None
            closer = getattr(job, "aclose", None)
            if closer is not None:  # a job that owns a client closes it when we stop
                self._closers.append(closer)

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self.watch is not None:
            await self.watch.stop()
        await self._dispatcher.stop()
        await self._confirmer.stop()
        if self.processor is not None:
            await self.processor.drain()
        if self.adapter is not None:
            await self.adapter.aclose()
        for close in self._closers:
            await close()
        self._closers.clear()
        if self._optional_jobs:
            await release_leases(self.services)
        log.info("worker stopped")

    def wake(self) -> None:
        """An intent was recorded, or a custodian's webhook nudged a payout: dispatch and
        confirm now rather than at the next tick."""
        self._dispatcher.kick()
        self._confirmer.kick()

    def kick(self, states: Collection[str]) -> None:
        """Run the runner of each state now (`PayoutWatch`): only the one that has work, so
        a new intent is not slowed by a confirm pass claiming nothing beside it."""
        if any(state in DISPATCH_STATES for state in states):
            self._dispatcher.kick()
        if any(state in CONFIRM_STATES for state in states):
            self._confirmer.kick()

    async def dispatch(self) -> None:
        """Claim and process due payouts until none is left."""
        if self.processor is not None:
            while await self.processor.run_batch(DISPATCH_STATES):
                pass
            await self.processor.drain()  # batches still writing their completions

    async def confirm(self) -> None:
        """Look up payouts accepted but not final (`submitted`) until none is due."""
        if self.processor is not None:
            while await self.processor.run_batch(CONFIRM_STATES):
                pass

    async def run_once(self) -> None:
        """One dispatch and one confirm pass, in the caller's task (tests)."""
        await self.dispatch()
        await self.confirm()
