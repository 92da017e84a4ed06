"""The event dispatcher: POSTs the outbox's events to `<BUSINESS_CALLBACK_URL>/event`.

Every EVENTS_POLL_S it leases up to EVENTS_DELIVERY_CONCURRENCY sendable events (one per
transaction, each the earliest undelivered of its transaction: `store/event_delivery.py`),
sends them at the same time and records each outcome, and goes round again until nothing is
sendable. Any number of workers run it at once; the per-event lease keeps one event with one
sender at a time.

The body is the Anchor Platform 2.x callback (`SendEventRequest`): `{"timestamp": <unix
seconds>, "payload": <AnchorEvent>}`, signed with the Standard Webhooks headers
(`anchorpay.events`). Outcomes: 2xx delivered; 408, 429, 5xx, a timeout or a connection
error retried with exponential backoff and full jitter (`Retry-After` honoured as a
minimum) until EVENTS_MAX_AGE_S after the round started, then failed; any other answer is
failed at once. A failed event stays visible (`GET /events/{id}`, the feed's `delivery`)
and `POST /events/{id}/redeliver` starts a new round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from anchorpay.events import sign_headers
from anchorpay.rpc.events import event_payload
from anchorpay.scheduler.leases import PROCESS_OWNER
from anchorpay.scheduler.retry import Backoff
from anchorpay.services import JobServices
from anchorpay.store import event_delivery as store
from anchorpay.store.event_tables import EventRow

log = logging.getLogger("anchorpay.events")

JOB_ID = "events.deliver"
RETRIED_4XX = frozenset({408, 429})
MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one attempt's answer means: delivered, retry (not before `min_delay_s`), or
    failed for good."""

    kind: str  # "delivered" | "retry" | "failed"
    reason: str
    min_delay_s: float = 0.0


def retry_after_s(value: str | None, now: datetime) -> float:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP date; 0 if absent or
    unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        return 0.0
    return max(0.0, (when - now).total_seconds())


def judge(status: int, retry_after: str | None, now: datetime) -> Verdict:
    if 200 <= status < 300:
        return Verdict("delivered", f"HTTP {status}")
    if status in RETRIED_4XX or status >= 500:
        return Verdict("retry", f"HTTP {status}", retry_after_s(retry_after, now))
    return Verdict("failed", f"HTTP {status}: refused by the business server")


def callback_body(row: EventRow, services: JobServices, timestamp: int) -> bytes:
    payload = event_payload(row, services.assets)
    return json.dumps(
        {"timestamp": timestamp, "payload": payload}, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


class EventDispatcher:
    def __init__(
        self,
        services: JobServices,
        *,
        client: httpx.AsyncClient | None = None,
        owner: str | None = None,
    ) -> None:
        settings = services.settings
        url, secret = settings.event_callback_url, settings.business_callback_secret
        if url is None or secret is None:
            raise ValueError("the event dispatcher needs BUSINESS_CALLBACK_URL and its secret")
        self.services = services
        self.settings = settings
        self._url = url
        self._secret = secret.get_secret_value()
        self._client = client or httpx.AsyncClient(
            timeout=settings.events_delivery_timeout_s, follow_redirects=False
        )
        self._owner = owner or f"{PROCESS_OWNER}-events"
        self._backoff = Backoff(settings.events_retry_base_s, settings.events_retry_max_s)
        self._kick: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run in a task of its own, kicked by the scheduler's ticks: a long run (a backlog, a
        slow receiver) is never overlapped, and ticks during it are not piled up."""
        self._kick = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="anchorpay-events.deliver")

    def kick(self) -> None:
        if self._kick is not None:
            self._kick.set()

    async def tick(self) -> None:  # the APScheduler job: a coroutine, so it runs on our loop
        self.kick()

    async def _loop(self) -> None:
        assert self._kick is not None
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                await self.run()
            except Exception:  # the database is away: the next tick tries again
                log.exception("events: dispatcher run failed")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._client.aclose()
        try:  # what this worker was sending goes to the others now, not after the lease
            async with self.services.sessions() as session, session.begin():
                await store.release(session, self._owner)
        except Exception as exc:  # the leases expire by themselves
            log.warning("events: leases not released at stop (%s)", exc)

    async def run(self) -> int:
        """Send until nothing is sendable; returns how many attempts were made."""
        attempts = 0
        while True:
            now = self.services.clock.now()
            async with self.services.sessions() as session, session.begin():
                batch = await store.claim(
                    session,
                    self._owner,
                    now,
                    self.settings.events_delivery_concurrency,
                    self.settings.events_lease_s,
                )
            if not batch:
                return attempts
            verdicts = await asyncio.gather(*(self._attempt(row) for row in batch))
            attempts += len(batch)
            try:  # one commit for the batch's outcomes
                async with self.services.sessions() as session, session.begin():
                    for row, verdict in zip(batch, verdicts, strict=True):
                        if verdict is not None:
                            await self._record(session, row, verdict)
            except Exception:  # the database is away: the leases expire, all are sent again
                log.exception("events: delivery outcomes could not be recorded")
                return attempts

    async def _attempt(self, row: EventRow) -> Verdict | None:
        started = time.perf_counter()
        try:
            verdict = await self._send(row)
        except Exception:  # a bug: the lease expires and another round retries
            log.exception("event %s: delivery failed unexpectedly", row.id)
            self.services.metrics.event_deliveries.labels("error").inc()
            return None
        metrics = self.services.metrics
        metrics.event_deliveries.labels(verdict.kind).inc()
        metrics.event_delivery_seconds.observe(time.perf_counter() - started)
        if verdict.kind == "delivered":
            waited = (self.services.clock.now() - row.created_at).total_seconds()
            metrics.event_commit_to_delivery_seconds.observe(max(0.0, waited))
        return verdict

    async def _send(self, row: EventRow) -> Verdict:
        now = self.services.clock.now()
        timestamp = int(now.timestamp())
        body = callback_body(row, self.services, timestamp)
        headers = {
            "content-type": "application/json",
            **sign_headers(self._secret, row.id, timestamp, body),
        }
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Verdict("retry", "timed out")
        except httpx.TransportError as exc:
            return Verdict("retry", f"connection failed: {type(exc).__name__}")
        return judge(response.status_code, response.headers.get("retry-after"), now)

    async def _record(self, session: Any, row: EventRow, verdict: Verdict) -> None:
        now = self.services.clock.now()
        if verdict.kind == "delivered":
            kept = await store.delivered(session, row.id, self._owner, now)
        elif verdict.kind == "failed":
            kept = await store.failed(session, row.id, self._owner, verdict.reason)
            log.warning("event %s (%s): failed: %s", row.id, row.type, verdict.reason)
        else:
            kept = await self._retry(session, row, verdict, now)
        if not kept:
            log.info("event %s: lease lost while sending; another worker sends it", row.id)

    async def _retry(self, session: Any, row: EventRow, verdict: Verdict, now: datetime) -> bool:
        deadline = row.deliver_since + timedelta(seconds=self.settings.events_max_age_s)
        if now >= deadline:
            reason = f"gave up after {self.settings.events_max_age_s:g} s: {verdict.reason}"
            log.warning("event %s (%s): failed: %s", row.id, row.type, reason)
            return await store.failed(session, row.id, self._owner, reason[:MAX_ERROR_CHARS])
        delay = max(self._backoff.delay(row.attempts + 1), verdict.min_delay_s)
        when = min(now + timedelta(seconds=delay), deadline)  # one last try at the deadline
        return await store.retry_at(
            session, row.id, self._owner, when, verdict.reason[:MAX_ERROR_CHARS]
        )


def add_event_delivery_job(scheduler: Any, services: JobServices) -> EventDispatcher | None:
    """Registered by the worker (scheduler/worker.py OPTIONAL_JOBS) when BUSINESS_CALLBACK_URL
    is set. Not behind a job lease: every worker sends, the events' own leases share them."""
    if services.settings.event_callback_url is None:
        return None
    dispatcher = EventDispatcher(services)
    dispatcher.start()
    scheduler.add_job(
        dispatcher.tick,
        "interval",
        seconds=services.settings.events_poll_s,
        id=JOB_ID,
        max_instances=1,
        coalesce=True,
        replace_existing=True,
    )
    return dispatcher
