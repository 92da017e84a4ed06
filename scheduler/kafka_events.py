"""Business events to Kafka (EVENTS_KAFKA_BOOTSTRAP_SERVERS, the `anchorpay[kafka]` extra),
for anchors already running the Anchor Platform's Kafka setup.

The publisher reads the outbox through the same feed as `GET /events` (commit order, never
skipping a late commit: store/events.py), publishes each event to EVENTS_KAFKA_TOPIC keyed by
its transaction id (one transaction's events stay in order in one partition), waits for the
brokers' acknowledgement (acks=all, idempotent producer), then moves its cursor in the
database. At least once: a crash between a publish and the cursor's move publishes that
batch again; consumers keep the event `id` to drop repeats. One worker publishes at a time
(a job lease), so the topic sees the feed's order."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from anchorpay.rpc.events import event_payload
from anchorpay.scheduler.leases import add_periodic_job
from anchorpay.services import JobServices
from anchorpay.settings import ConfigError
from anchorpay.store import event_cursors
from anchorpay.store import events as store
from anchorpay.store.event_tables import EventRow

log = logging.getLogger("anchorpay.events")

JOB_ID = "events.kafka"
CURSOR = "kafka"  # the publisher's row in event_cursors
BATCH = 200


class Producer(Protocol):
    """The part of aiokafka's AIOKafkaProducer the publisher uses."""

    async def start(self) -> None: ...

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any: ...

    async def stop(self) -> None: ...


def aiokafka_producer(bootstrap_servers: str) -> Producer:
    try:
        from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            "EVENTS_KAFKA_BOOTSTRAP_SERVERS is set but aiokafka is not installed: "
            "pip install 'anchorpay[kafka]'"
        ) from None
    producer: Producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True
    )
    return producer


def message(row: EventRow, services: JobServices) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers): the AP's AnchorEvent JSON keyed by transaction id."""
    value = json.dumps(event_payload(row, services.assets), separators=(",", ":"))
    headers = [("event-id", row.id.encode()), ("event-type", row.type.encode())]
    return row.transaction_id.encode(), value.encode("utf-8"), headers


class KafkaPublisher:
    def __init__(self, services: JobServices, producer: Producer, topic: str) -> None:
        self.services = services
        self.producer = producer
        self.topic = topic
        self._started = False

    async def run_once(self) -> int:
        """Publish what the feed holds past the cursor, a batch at a time; returns how many
        events were published. A failure leaves the cursor at the last acknowledged batch."""
        published = 0
        while True:
            async with self.services.sessions() as session:
                after = store.Cursor.parse(await event_cursors.get(session, CURSOR))
                rows = await store.feed(session, after, BATCH)
            if not rows:
                return published
            if not self._started:
                await self.producer.start()
                self._started = True
            for row in rows:
                key, value, headers = message(row, self.services)
                await self.producer.send_and_wait(self.topic, value, key, headers=headers)
            last = store.Cursor(rows[-1].txid, rows[-1].position or 0)
            async with self.services.sessions() as session, session.begin():
                await event_cursors.save(session, CURSOR, str(last), self.services.clock.now())
            published += len(rows)
            log.info("kafka: published %d events to %s (cursor %s)", len(rows), self.topic, last)

    async def aclose(self) -> None:
        if self._started:
            await self.producer.stop()
            self._started = False


def add_kafka_events_job(scheduler: Any, services: JobServices) -> KafkaPublisher | None:
    """Registered by the worker when EVENTS_KAFKA_BOOTSTRAP_SERVERS is set: every
    EVENTS_POLL_S, one worker at a time."""
    settings = services.settings
    if not settings.events_kafka_bootstrap_servers:
        return None
    publisher = KafkaPublisher(
        services,
        aiokafka_producer(settings.events_kafka_bootstrap_servers),
        settings.events_kafka_topic,
    )

    async def run() -> None:
        try:
            await publisher.run_once()
        except Exception as exc:  # the brokers are down: the next run starts from the cursor
            log.warning("kafka: publishing failed (%s); retrying next run", exc)

    add_periodic_job(scheduler, services, JOB_ID, settings.events_poll_s, run)
    return publisher
