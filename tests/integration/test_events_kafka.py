"""The Kafka publisher (scheduler/kafka_events.py) on the real store, SQLite and PostgreSQL.

No Kafka broker can be installed on these machines, so the producer is a stand-in that
implements the part of aiokafka's AIOKafkaProducer the publisher uses (start, send_and_wait,
stop) and records what it was handed; it can fail on a chosen message like a broker that went
away. Everything else is real: the outbox rows written by the API, the feed, the cursor."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from anchorpay.scheduler.kafka_events import KafkaPublisher, aiokafka_producer
from anchorpay.settings import ConfigError
from support.app import AppClient, create_tx

TOPIC = "TRANSACTION"


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, dict[str, bytes]]] = []
        self.fail_at: int | None = None  # fail when this many messages were sent
        self.started = self.stopped = 0

    async def start(self) -> None:
        self.started += 1

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            self.fail_at = None
            raise ConnectionError("broker went away")
        assert value is not None and key is not None
        self.sent.append((topic, key, value, dict(headers or [])))

    async def stop(self) -> None:
        self.stopped += 1

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(value) for _, _, value, _ in self.sent]


async def feed_ids(client: AppClient, count: int) -> list[str]:
    """The pull feed's event ids once it serves `count` (PostgreSQL holds back events until
    older transactions on the server end)."""
    async with asyncio.timeout(20):
        while True:
            answer = (await client.get("/events", params={"limit": 500})).json()
            if len(answer["events"]) >= count:
                return [e["id"] for e in answer["events"]]
            await asyncio.sleep(0.05)


async def publish_all(publisher: KafkaPublisher, count: int) -> None:
    async with asyncio.timeout(20):
        while len(publisher.producer.sent) < count:  # type: ignore[attr-defined]
            await publisher.run_once()
            await asyncio.sleep(0.05)


async def test_events_are_published_in_feed_order_keyed_by_transaction(
    app_client: AppClient,
) -> None:
    first = (await create_tx(app_client))["id"]
    second = (await create_tx(app_client))["id"]
    error = {"transaction_id": first, "message": "stop"}
    body = {"jsonrpc": "2.0", "method": "notify_transaction_error", "params": error, "id": 1}
    assert "result" in (await app_client.rpc(body)).json()
    ids = await feed_ids(app_client, 3)

    producer = Producer()
    publisher = KafkaPublisher(app_client.services, producer, TOPIC)
    await publish_all(publisher, 3)
    assert [e["id"] for e in producer.events()] == ids
    assert [(t, k.decode()) for t, k, _, _ in producer.sent] == [
        (TOPIC, first),
        (TOPIC, second),
        (TOPIC, first),
    ]
    kinds = [(e["type"], e["transaction"]["status"]) for e in producer.events()]
    assert kinds == [
        ("transaction_created", "incomplete"),
        ("transaction_created", "incomplete"),
        ("transaction_error", "error"),
    ]
    assert producer.sent[2][3] == {"event-id": ids[2].encode(), "event-type": b"transaction_error"}
    # The cursor moved: nothing is published twice; a new change is published alone.
    assert await publisher.run_once() == 0
    third = (await create_tx(app_client))["id"]
    await publish_all(publisher, 4)
    assert [k.decode() for _, k, _, _ in producer.sent[3:]] == [third]
    await publisher.aclose()
    assert (producer.started, producer.stopped) == (1, 1)


async def test_a_failed_publish_is_repeated_from_the_cursor(app_client: AppClient) -> None:
    for _ in range(3):
        await create_tx(app_client)
    ids = await feed_ids(app_client, 3)
    producer = Producer()
    producer.fail_at = 2  # the broker goes away after two acknowledgements
    publisher = KafkaPublisher(app_client.services, producer, TOPIC)
    with pytest.raises(ConnectionError):
        await publisher.run_once()
    assert [e["id"] for e in producer.events()] == ids[:2]
    # At least once: the batch whose cursor never moved is published again, whole.
    await publish_all(publisher, 5)
    assert [e["id"] for e in producer.events()] == [*ids[:2], *ids]
    assert await publisher.run_once() == 0


def test_without_aiokafka_the_setting_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "aiokafka", None)  # as if the extra were not installed
    with pytest.raises(ConfigError) as caught:
        aiokafka_producer("localhost:9092")
    assert str(caught.value) == (
        "EVENTS_KAFKA_BOOTSTRAP_SERVERS is set but aiokafka is not installed: "
        "pip install 'anchorpay[kafka]'"
    )
