"""PostgreSQL only: the pull feed under concurrent writers that commit out of order.

Positions are handed out at insert, commits land in any order: a feed that served by
position alone would move its cursor past an event still uncommitted and skip it forever.
These tests hold writers' database transactions open while later ones commit, and page the
feed concurrently through several app instances (each its own engine, as API processes):
every event is served exactly once, each transaction's events in their order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.store import events as feed_store
from anchorpay.store import transactions as repo
from anchorpay.store.db import create_engine, session_factory
from support.app import ClientFactory

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new_tx(tx_id: str) -> Transaction:
    return Transaction(id=tx_id, kind=Kind.DEPOSIT, status=Status.INCOMPLETE, started_at=T0)


@pytest.fixture
async def processes(db_url: str) -> AsyncIterator[list[async_sessionmaker[AsyncSession]]]:
    engines: list[AsyncEngine] = [create_engine(db_url) for _ in range(4)]
    try:
        yield [session_factory(e) for e in engines]
    finally:
        for engine in engines:
            await engine.dispose()


async def read_feed(
    sessions: async_sessionmaker[AsyncSession], after: feed_store.Cursor
) -> list[str]:
    async with sessions() as s, s.begin():
        return [row.transaction_id for row in await feed_store.feed(s, after, 100)]


async def test_a_later_commit_is_held_back_until_the_earlier_writer_ends(
    processes: list[async_sessionmaker[AsyncSession]],
) -> None:
    first, second, reader = processes[0], processes[1], processes[2]
    async with first() as slow:
        async with slow.begin():
            await repo.insert(slow, new_tx("slow"))  # position 1, still uncommitted
            async with second() as fast, fast.begin():
                await repo.insert(fast, new_tx("fast"))  # position 2, committed now
            # "fast" is committed, but serving it would move a cursor past "slow".
            assert await read_feed(reader, feed_store.Cursor()) == []
    # Both are served once "slow" ends (other databases' writers on this shared server may
    # hold the horizon a moment longer: wait for it).
    async with asyncio.timeout(20):
        while True:
            served = await read_feed(reader, feed_store.Cursor())
            if served:
                break
            await asyncio.sleep(0.05)
    assert served == ["slow", "fast"]


async def test_concurrent_writers_and_pagers_see_every_event_once(
    client_factory: ClientFactory, processes: list[async_sessionmaker[AsyncSession]]
) -> None:
    writers, per_writer = 4, 10
    rng = random.Random(17)
    delays = {
        (w, i): (rng.uniform(0, 0.15), rng.uniform(0, 0.15))
        for w in range(writers)
        for i in range(per_writer)
    }

    async def writer(w: int) -> None:
        sessions = processes[w]
        for i in range(per_writer):
            tx_id = f"w{w}-{i}"
            before_commit, update_hold = delays[(w, i)]
            async with sessions() as s, s.begin():
                await repo.insert(s, new_tx(tx_id))
                await asyncio.sleep(before_commit)  # later writers commit first
            async with sessions() as s, s.begin():
                tx = await repo.get(s, tx_id)
                assert tx is not None
                changed = tx.clone()
                changed.status = Status.PENDING_USER_TRANSFER_START
                await repo.update(s, changed, tx)
                await asyncio.sleep(update_hold)

    total = writers * per_writer * 2
    writing = asyncio.gather(*(writer(w) for w in range(writers)))

    async def pager(client: Any) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        async with asyncio.timeout(60):
            while len(seen) < total:
                params: dict[str, Any] = {"limit": 3, "wait": 1}
                if cursor is not None:
                    params["after"] = cursor
                page = (await client.get("/events", params=params)).json()
                seen += page["events"]
                cursor = page["next"]
            # Nothing more is ever served after the last event.
            tail = (await client.get("/events", params={"after": cursor, "wait": 0.3})).json()
        assert tail["events"] == []
        return seen

    async with client_factory() as a, client_factory() as b, client_factory() as c:
        pages = await asyncio.gather(pager(a), pager(b), pager(c))
    await writing

    async with processes[0]() as s:
        stored = {
            row.id
            for w in range(writers)
            for i in range(per_writer)
            for row in await feed_store.for_transaction(s, f"w{w}-{i}")
        }
    assert len(stored) == total
    for seen in pages:
        ids = [e["id"] for e in seen]
        assert len(ids) == len(set(ids)) == total
        assert set(ids) == stored
        by_tx: dict[str, list[int]] = {}
        for event in seen:
            by_tx.setdefault(event["transaction_id"], []).append(event["sequence"])
        assert all(order == [1, 2] for order in by_tx.values())
