"""PostgreSQL only: what several servers and workers rely on, with one engine (one connection
pool) per simulated process on the same database.

- Two sessions racing the optimistic version update of one transaction: the second waits on
  the first's row lock, then finds the version gone and raises ConcurrentModification.
- Concurrent `claim_due` calls (FOR UPDATE SKIP LOCKED plus the lease) never hand one payout
  to two workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store import payouts as payout_store
from anchorpay.store import transactions as repo
from anchorpay.store.db import create_engine, session_factory
from support.app import ClientFactory, create_tx

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEST = "GCUSERXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


@dataclass
class Intent:  # the fields of domain.machine.PayoutIntent the store reads
    purpose: str = "payment"
    destination: str = DEST
    asset: str = "stellar:native"
    amount: str = "10"
    memo: str | None = None
    memo_type: str | None = None
    refund_fee: str | None = None
    wait_for_trust: bool = False


@pytest.fixture
async def processes(db_url: str) -> AsyncIterator[list[async_sessionmaker[AsyncSession]]]:
    """Four session factories, each over its own engine, as four processes would have."""
    engines: list[AsyncEngine] = [create_engine(db_url) for _ in range(4)]
    try:
        yield [session_factory(e) for e in engines]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_optimistic_update_across_processes(
    client_factory: ClientFactory, processes: list[async_sessionmaker[AsyncSession]]
) -> None:
    async with client_factory() as client:
        tx_id: str = (await create_tx(client))["id"]
    first, second = processes[0], processes[1]

    async with first() as s:
        read_a = await repo.get(s, tx_id)
    async with second() as s:
        read_b = await repo.get(s, tx_id)
    assert read_a is not None and read_b is not None
    assert read_a.version == read_b.version
    read_a.message = "written by A"
    read_b.message = "written by B"

    async def write_b() -> None:
        async with second() as s, s.begin():
            await repo.update(s, read_b)

    async with first() as s_a:
        async with s_a.begin():
            written = await repo.update(s_a, read_a)
            loser = asyncio.create_task(write_b())
            await asyncio.sleep(0.3)
            assert not loser.done(), "B should wait on A's row lock"
        # A committed: B re-checks the row, finds a newer version, writes nothing.
        with pytest.raises(repo.ConcurrentModification, match="modified concurrently"):
            await asyncio.wait_for(loser, 10)

    async with processes[2]() as s:
        stored = await repo.get(s, tx_id)
    assert stored is not None
    assert stored.version == written.version == read_a.version + 1
    assert stored.message == "written by A"


async def test_concurrent_claims_never_share_a_payout(
    processes: list[async_sessionmaker[AsyncSession]],
) -> None:
    total = 60
    async with processes[0]() as s, s.begin():
        for i in range(total):
            await payout_store.record_intent(s, f"tx{i}", Intent(), "stellar", T0)  # type: ignore[arg-type]

    async def worker(n: int, sessions: async_sessionmaker[AsyncSession]) -> list[str]:
        mine: list[str] = []
        while True:
            async with sessions() as s, s.begin():
                rows = await payout_store.claim_due(s, f"worker-{n}", T0, 300, 4)
                # Hold the row locks a moment so the other workers must skip past them.
                await asyncio.sleep(0.02)
            if not rows:
                return mine
            mine.extend(r.id for r in rows)

    claimed = await asyncio.gather(*(worker(n, p) for n, p in enumerate(processes)))
    every = [pid for ids in claimed for pid in ids]
    assert len(every) == len(set(every)) == total
    assert sum(1 for ids in claimed if ids) >= 2, "the claims should have been spread out"

    async with processes[0]() as s:
        for n, ids in enumerate(claimed):
            for pid in ids:
                row = await payout_store.get(s, pid)
                assert row is not None and row.lease_owner == f"worker-{n}"
