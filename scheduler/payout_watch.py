"""Between the worker's ticks: act when there is something to do, not at the next tick.

- **New work.** Another process (`serve --no-worker`, or any API server beside this worker)
  records intents this worker's `wake()` never hears of. Every WORKER_IDLE_POLL_S one indexed
  read lists the due payouts; one it has not seen due before kicks its runner. Measured
  against a PostgreSQL LISTEN/NOTIFY prototype, interleaved (bench/latency_bench.py, 60
  payouts each, loaded 2-core machine): intent → submitted p50 77 ms polling, 76 ms
  notified; the work after the kick (claim, a read, two Horizon reads, a commit) dominates; a
  notification needs a hook on every API server and a listening connection, and SQLite has
  none. The poll costs an idle worker about 5% of a core.
- **A ledger closed.** While a payout's envelope is in flight (`submitting` or `submitted`
  with a hash), every WORKER_LEDGER_POLL_S one Horizon read of the latest ledger. When one
  closed since this watch last looked at a payout nobody holds (its submission was answered
  504 before inclusion, or left `submitted`), the payout is made due now and the runners are
  kicked: its lookup runs at once, not after its backoff or the next tick. A payout seen for
  the first time is looked up at once only if it was last written before the latest ledger
  closed (it may be in it); else at the next close. A payout whose worker still waits on its
  submission is left alone: Horizon answers that worker when the ledger closes.

Nothing here decides anything about a payout: it only moves `next_attempt_at` to now
(`store.nudge`) and kicks; the runners claim with leases and look up as always. A read that
fails is logged once per streak and tried again at the next poll; a database that cannot
serve is the runners' to log and probe (`DatabaseOutage`: a read proves nothing about
writes), so the watch stays silent and idle while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select

from anchorpay.adapters.ledger import LatestLedger, LedgerError
from anchorpay.domain.payout_states import IN_FLIGHT_STATES, OPEN_STATES
from anchorpay.scheduler.outage import DatabaseOutage
from anchorpay.services import JobServices
from anchorpay.store import payouts as store
from anchorpay.store.tables import PayoutRow
from anchorpay.store.unavailable import database_unavailable, describe

log = logging.getLogger("anchorpay.worker")

_T = PayoutRow.__table__  # type: ignore[attr-defined]
# Payouts listed per poll: those in flight first (a few per lane), then the newest due (new
# intents are the newest; older ones beyond this wait for the tick, as before).
MAX_LISTED = 100


@dataclass(frozen=True, slots=True)
class Watched:
    id: str
    state: str
    due: bool  # due now and nobody holds it
    in_flight: bool  # an envelope with a hash may be on its way to a ledger
    held: bool  # a worker holds its lease (e.g. waits on its submission)
    updated_at: datetime | None


async def watched_payouts(services: JobServices, now: datetime) -> list[Watched]:
    """Open payouts that are due, or in flight with an envelope hash: one indexed read."""
    free = or_(_T.c.lease_expires_at.is_(None), _T.c.lease_expires_at < now)
    due = and_(_T.c.next_attempt_at.is_not(None), _T.c.next_attempt_at <= now, free)
    in_flight = and_(_T.c.state.in_(IN_FLIGHT_STATES), _T.c.tx_hash.is_not(None))
    query = (
        select(_T.c.id, _T.c.state, due, in_flight, free, _T.c.updated_at)
        .where(_T.c.state.in_(OPEN_STATES), or_(due, in_flight))
        .order_by(in_flight.desc(), _T.c.created_at.desc())
        .limit(MAX_LISTED)
    )
    async with services.sessions() as session:
        rows = (await (await session.connection()).execute(query)).all()
    return [
        Watched(str(pid), str(state), bool(is_due), bool(flying), not bool(is_free), updated_at)
        for pid, state, is_due, flying, is_free, updated_at in rows
    ]


class LedgerLooks:
    """Which in-flight payouts to look up now, given the latest ledger: each one nobody
    holds, once per ledger closed since it was last looked at (or first seen). Pure: the
    watch feeds it what it read."""

    def __init__(self) -> None:
        self._looked_at: dict[str, int] = {}  # payout id -> latest ledger when last looked at

    def forget(self) -> None:
        self._looked_at.clear()

    def to_look_up(self, in_flight: list[Watched], latest: LatestLedger) -> list[Watched]:
        current = {w.id for w in in_flight}
        for gone in self._looked_at.keys() - current:
            del self._looked_at[gone]
        return [w for w in in_flight if self._look_now(w, latest)]

    def _look_now(self, watched: Watched, latest: LatestLedger) -> bool:
        looked_at = self._looked_at.get(watched.id)
        if looked_at is None:
            # First seen: the latest ledger may hold it only if it was written before that
            # ledger closed (once, so a clock skew costs at most one early or late look).
            self._looked_at[watched.id] = latest.sequence
            written = watched.updated_at
            return not watched.held and written is not None and written < latest.closed_at
        if watched.held or latest.sequence <= looked_at:
            return False  # its worker waits on it, or no ledger closed since the last look
        self._looked_at[watched.id] = latest.sequence
        return True


class PayoutWatch:
    """One task per worker: `poll()` every `idle_poll_s`, reading the ledger at most every
    `ledger_poll_s` and only while an envelope is in flight."""

    def __init__(
        self,
        services: JobServices,
        kick: Callable[[set[str]], None],
        outage: DatabaseOutage,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.services = services
        self.idle_poll_s = services.settings.worker_idle_poll_s
        self.ledger_poll_s = services.settings.worker_ledger_poll_s
        self._kick = kick
        self._outage = outage
        self._clock = clock
        self._due: set[str] = set()  # due at the last poll
        self._looks = LedgerLooks()
        self._next_ledger_read = 0.0
        self._failing: str | None = None  # what failed last, logged once per streak
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="anchorpay-payouts.watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.idle_poll_s)
            if self._outage.down:
                continue  # the runners probe the database; this read would prove nothing
            try:
                await self.poll()
            except LedgerError as exc:
                self._failed("the latest ledger", str(exc))
            except Exception as exc:
                if not database_unavailable(exc):  # that one the runners log, once per step
                    self._failed("the payouts", describe(exc))
            else:
                if self._failing is not None:
                    log.info("worker: payout watch reads again")
                    self._failing = None

    def _failed(self, what: str, detail: str) -> None:
        if self._failing != what:
            log.warning("worker: payout watch could not read %s (%s); retrying", what, detail)
            self._failing = what

    async def poll(self) -> None:
        """One look: kick for payouts newly due; nudge in-flight ones a new ledger may hold."""
        now = self._clock()
        watched = await watched_payouts(self.services, now)
        due = {w.id for w in watched if w.due}
        fresh = [w for w in watched if w.due and w.id not in self._due]
        self._due = due
        nudged = await self._after_ledger(now, [w for w in watched if w.in_flight])
        if fresh or nudged:
            self._kick({w.state for w in (*fresh, *nudged)})

    async def _after_ledger(self, now: datetime, in_flight: list[Watched]) -> list[Watched]:
        """Nudge the in-flight payouts nobody holds that a ledger closed since the last look
        may hold; returns them."""
        if not in_flight:
            self._looks.forget()
            return []
        # The loop's own time: the polls sleep on it, whatever clock the payouts use.
        elapsed = asyncio.get_running_loop().time()
        if elapsed < self._next_ledger_read:
            return []
        self._next_ledger_read = elapsed + self.ledger_poll_s
        latest = await self.services.ledger.latest_ledger()
        nudge = self._looks.to_look_up(in_flight, latest)
        if nudge:
            async with self.services.sessions() as session, session.begin():
                for watched in nudge:
                    await store.nudge(session, watched.id, now)
        return nudge
