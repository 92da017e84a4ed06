"""The worker: one APScheduler `AsyncIOScheduler` running the payout jobs (and, when their
modules are installed, the other background jobs) in `anchorpay serve` or `anchorpay worker`.

- `payouts.dispatch` (every WORKER_TICK_S): claim due payouts, carry them out.
- `payouts.confirm` (every WORKER_TICK_S): look up `submitted` payouts until final.
Both run with `max_instances=1` and `coalesce`; leases make several worker processes safe.
`wake()` runs dispatch at once (an intent was just recorded) instead of at the next tick; a
wake during a running dispatch makes it loop once more, so nothing waits for the tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.base import CustodyAdapter
from anchorpay.adapters.ledger import LedgerClient
from anchorpay.scheduler.completion import Completion, RunMethod
from anchorpay.scheduler.payouts import PayoutProcessor
from anchorpay.settings import Settings
from anchorpay.store import payouts as store

log = logging.getLogger("anchorpay.worker")

DISPATCH_STATES = (store.QUEUED, store.WAITING_TRUST, store.SUBMITTING)
CONFIRM_STATES = (store.SUBMITTED,)

# Other background jobs register themselves on this scheduler when their module exists:
# (module, function taking (scheduler, services)).
OPTIONAL_JOBS = (
    ("anchorpay.scheduler.observer", "add_observer_job"),
    ("anchorpay.scheduler.trustlines", "add_trustline_job"),
)


class WorkerServices(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def ledger(self) -> LedgerClient: ...


def build_adapter(settings: Settings, ledger: LedgerClient) -> CustodyAdapter | None:
    """The configured custody adapter, or None when custody is off (CUSTODY_TYPE=none)."""
    kind = settings.effective_custody_type
    if kind == "stellar":
        from anchorpay.adapters.stellar_signer import build_stellar_signer

        return build_stellar_signer(settings, ledger)
    if kind == "fireblocks":
        try:
            module = importlib.import_module("anchorpay.adapters.fireblocks")
        except ImportError:
            log.error("CUSTODY_TYPE=fireblocks but the Fireblocks adapter is not installed")
            return None
        adapter: CustodyAdapter = module.build_fireblocks_adapter(settings, ledger)
        return adapter
    return None


class Worker:
    def __init__(
        self,
        services: WorkerServices,
        *,
        adapter: CustodyAdapter | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] | None = None,
        run_method: RunMethod | None = None,
        optional_jobs: bool = True,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.adapter = adapter or build_adapter(self.settings, services.ledger)
        self.processor: PayoutProcessor | None = None
        if self.adapter is not None:
            completion = Completion(services, run_method=run_method, clock=clock)
            self.processor = PayoutProcessor(
                self.settings,
                services.sessions,
                self.adapter,
                completion,
                owner=owner,
                clock=clock,
            )
        self._optional_jobs = optional_jobs
        self._scheduler: AsyncIOScheduler | None = None
        self._event = asyncio.Event()
        self._waker: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._again = False

    def __repr__(self) -> str:
        return f"Worker(adapter={self.adapter!r})"

    @property
    def scheduler(self) -> AsyncIOScheduler | None:
        return self._scheduler

    async def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        tick = self.settings.worker_tick_s
        now = datetime.now(UTC)
        if self.processor is not None:
            for job_id, func in (
                ("payouts.dispatch", self.dispatch),
                ("payouts.confirm", self.confirm),
            ):
                scheduler.add_job(
                    func,
                    "interval",
                    seconds=tick,
                    id=job_id,
                    max_instances=1,
                    coalesce=True,
                    replace_existing=True,
                    next_run_time=now,
                )
        else:
            log.info("worker: custody is off (CUSTODY_TYPE=none); no payout jobs")
        if self._optional_jobs:
            self._add_optional_jobs(scheduler)
        scheduler.start()
        self._scheduler = scheduler
        self._waker = asyncio.create_task(self._wake_loop(), name="anchorpay-worker-wake")
        log.info("worker started: adapter=%r tick=%ss", self.adapter, tick)

    def _add_optional_jobs(self, scheduler: AsyncIOScheduler) -> None:
        for module_name, func_name in OPTIONAL_JOBS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            add: Any = getattr(module, func_name, None)
            if add is not None:
                add(scheduler, self.services)

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._waker is not None:
            self._waker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._waker
            self._waker = None
        # Let a step in progress finish its commit (a cut is safe, a clean stop is nicer).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                async with self._lock:
                    pass
        if self.adapter is not None:
            await self.adapter.aclose()
        log.info("worker stopped")

    def wake(self) -> None:
        """An intent was recorded: dispatch now rather than at the next tick."""
        self._event.set()

    async def _wake_loop(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            try:
                await self.dispatch()
            except Exception:
                log.exception("worker: dispatch after wake failed")

    async def dispatch(self) -> None:
        """Claim and process due payouts until none is left; a wake while this runs makes
        it go round once more."""
        if self.processor is None:
            return
        self._again = True
        if self._lock.locked():
            return
        async with self._lock:
            while self._again:
                self._again = False
                if await self.processor.run_batch(DISPATCH_STATES):
                    self._again = True

    async def confirm(self) -> None:
        if self.processor is not None:
            while await self.processor.run_batch(CONFIRM_STATES):
                pass

    async def run_once(self) -> None:
        """One dispatch and one confirm pass (tests and `anchorpay worker --once`)."""
        await self.dispatch()
        await self.confirm()
