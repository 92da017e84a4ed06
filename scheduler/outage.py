"""The worker's view of a database that cannot serve (unreachable, locked, read-only, full).

Every job runs on a tick (WORKER_TICK_S, the periodic jobs' intervals); with the database
away, each tick would fail and log a traceback: thousands of lines for one outage. Instead
the jobs of one worker share one `DatabaseOutage`: the first failure closes it and logs one
line; while it is closed the jobs skip their runs, except one probe per backoff step
(exponential from WORKER_TICK_S, capped at MAX_BACKOFF_S), and each failed probe logs one
line saying when the next one is. A database may still answer reads (SQLite with another
writer holding the lock, a read-only standby): a job that only read proves nothing, so the
outage ends, with one line, only when a job that failed in it succeeds.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from anchorpay.store.unavailable import describe

log = logging.getLogger("anchorpay.worker")

MAX_BACKOFF_S = 60.0


class DatabaseOutage:
    def __init__(
        self,
        base_s: float,
        max_s: float = MAX_BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_s = base_s
        self.max_s = max(max_s, base_s)
        self._clock = clock
        self.failures = 0  # failed probes of the current outage
        self._next_try = 0.0
        self._probing = False
        self._failed_jobs: set[str] = set()

    @property
    def down(self) -> bool:
        return self.failures > 0

    def may_run(self) -> bool:
        """Whether a job may touch the database now: always while it is up; during an
        outage, only the first caller once the backoff step has passed (the probe)."""
        if not self.down:
            return True
        if self._probing or self._clock() < self._next_try:
            return False
        self._probing = True
        return True

    def delay(self, failures: int) -> float:
        return float(min(self.max_s, self.base_s * 2 ** (failures - 1)))

    def failed(self, job: str, exc: BaseException) -> None:
        """A run found the database unavailable. Runs already under way when the outage
        began fail too: only the first of them, then each probe, counts and logs."""
        if self.down and not self._probing:
            return
        self._probing = False
        self._failed_jobs.add(job)
        self.failures += 1
        delay = self.delay(self.failures)
        self._next_try = self._clock() + delay
        log.warning(
            "worker: database unavailable (%s) in %s; attempt %d failed, next in %gs",
            describe(exc),
            job,
            self.failures,
            delay,
        )

    def succeeded(self, job: str) -> None:
        self._probing = False
        if not self.down:
            return
        if job not in self._failed_jobs:
            return  # it needed less of the database than what failed: the probe goes on
        log.info("worker: database available again after %d failed attempts", self.failures)
        self.failures = 0
        self._failed_jobs.clear()


_BY_DATABASE: weakref.WeakKeyDictionary[Any, DatabaseOutage] = weakref.WeakKeyDictionary()


def outage_of(services: Any) -> DatabaseOutage:
    """The one gate of this process's database (its session factory): the payout runners and
    the periodic jobs of one worker back off together."""
    sessions = services.sessions
    settings = getattr(services, "settings", None)
    base_s = float(getattr(settings, "worker_tick_s", 1.0))
    try:
        gate = _BY_DATABASE.get(sessions)
        if gate is None:
            gate = _BY_DATABASE[sessions] = DatabaseOutage(base_s)
    except TypeError:  # a stand-in whose `sessions` cannot be weakly referenced
        return DatabaseOutage(base_s)
    return gate
