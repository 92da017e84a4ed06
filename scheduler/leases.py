"""Periodic jobs that one worker runs at a time, however many workers share the database.

The trustline poller, the payment observer and the Fireblocks incoming poll are correct when
several workers run them at once (their effects go through versioned or compare-and-set
writes), but each run reads the ledger or Fireblocks: with M workers, M times the reads for
nothing. So each run first holds the job's lease (`store/job_leases.py`): the holder renews
it every run; the others skip. If the holder dies, its lease expires after
max(3 × interval, 30 s) and another worker takes the job over; a clean stop hands the leases
back at once. Leases compare the workers' clocks: keep them NTP-synchronised.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from anchorpay.clock import SYSTEM
from anchorpay.scheduler.outage import outage_of
from anchorpay.services import JobServices
from anchorpay.store import job_leases
from anchorpay.store.unavailable import database_unavailable

log = logging.getLogger("anchorpay.worker")

# Every job of this process holds its leases under one name.
PROCESS_OWNER = f"{socket.gethostname()[:48]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
MIN_TTL_S = 30.0


def lease_ttl(interval_s: float) -> float:
    return max(3 * interval_s, MIN_TTL_S)


def one_worker_at_a_time(
    services: JobServices,
    name: str,
    interval_s: float,
    job: Callable[[], Awaitable[Any]],
    *,
    owner: str = PROCESS_OWNER,
    clock: Callable[[], datetime] | None = None,
) -> Callable[[], Awaitable[bool]]:
    """`job` wrapped to run only while this process holds the lease of `name`. The wrapper
    returns whether it ran (tests)."""
    ttl = lease_ttl(interval_s)
    now = clock or services.clock.now
    outage = outage_of(services)  # shared with the payout runners: one backoff, one line

    async def run() -> bool:
        if not outage.may_run():
            return False
        try:
            async with services.sessions() as session, session.begin():
                held = await job_leases.hold(session, name, owner, now(), ttl)
        except Exception as exc:
            if database_unavailable(exc):
                outage.failed(name, exc)
            else:
                outage.succeeded(name)
                log.warning("job %s: its lease could not be taken (%s); run skipped", name, exc)
            return False
        outage.succeeded(name)
        if held:
            await job()
        return held

    return run


def add_periodic_job(
    scheduler: Any,
    services: JobServices,
    name: str,
    interval_s: float,
    job: Callable[[], Awaitable[Any]],
    *,
    first_run_delay_s: float = 0.0,
) -> None:
    """Register `job` on an APScheduler scheduler: every `interval_s`, in one worker at a
    time (its lease), never overlapping itself (`max_instances=1`), missed runs coalesced."""
    scheduler.add_job(
        one_worker_at_a_time(services, name, interval_s, job),
        "interval",
        seconds=interval_s,
        id=name,
        max_instances=1,
        coalesce=True,
        replace_existing=True,
        # APScheduler runs on real time, whatever clock the jobs read.
        next_run_time=SYSTEM.now() + timedelta(seconds=first_run_delay_s),
    )


async def release_leases(services: JobServices, owner: str = PROCESS_OWNER) -> None:
    """Hand this process's job leases back (the worker's clean stop)."""
    try:
        async with services.sessions() as session, session.begin():
            await job_leases.release_all(session, owner)
    except Exception as exc:
        log.warning("job leases could not be released (%s); they expire by themselves", exc)
