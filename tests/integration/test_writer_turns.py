"""SQLite writers of one process take turns (store/writers.py): a write transaction starts
its first write once the one before it has committed or rolled back, at once rather than
after a sleep in SQLite's busy handler; reads never wait for a turn; a turn not had within
the busy timeout leaves the decision to SQLite's own lock, so a writer holding the database
too long is still an error, not a hang."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from anchorpay.store.db import create_engine

ROWS = Table("rows", MetaData(), Column("n", Integer, primary_key=True))
BUSY_S = 0.3

Log = list[tuple[str, int, float]]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}", BUSY_S)
    async with engine.begin() as conn:
        await conn.run_sync(ROWS.metadata.create_all)
    yield engine
    await engine.dispose()


async def write(
    engine: AsyncEngine,
    n: int,
    log: Log,
    hold_s: float = 0.0,
    wrote: asyncio.Event | None = None,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(ROWS).values(n=n))
        log.append(("wrote", n, time.monotonic()))
        if wrote is not None:
            wrote.set()
        await asyncio.sleep(hold_s)  # the write transaction stays open
    log.append(("committed", n, time.monotonic()))


async def stored(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(ROWS.c.n).order_by(ROWS.c.n))).scalars())


async def test_each_writer_goes_as_soon_as_the_one_before_committed(engine: AsyncEngine) -> None:
    async def connect() -> None:  # the pool's connections are open before the writers race
        async with engine.connect() as conn:
            await conn.execute(select(ROWS.c.n))
            await asyncio.sleep(0.05)

    await asyncio.gather(*(connect() for _ in range(5)))
    log: Log = []
    await asyncio.gather(*(write(engine, n, log, hold_s=0.03) for n in range(5)))
    assert [step for step, _, _ in log] == ["wrote", "committed"] * 5  # one at a time
    # From a commit to the next writer's first write: at once (left to SQLite's busy
    # handler, which sleeps 1, 2, 5, 10 … ms between tries, 10-25 ms here).
    gaps = sorted(log[i + 1][2] - log[i][2] for i in range(1, len(log) - 1, 2))
    assert gaps[len(gaps) // 2] < 0.005, gaps
    assert await stored(engine) == [0, 1, 2, 3, 4]


async def test_a_rolled_back_writer_gives_its_turn_back(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError, match="abandoned"):
        async with engine.begin() as conn:
            await conn.execute(insert(ROWS).values(n=1))
            raise RuntimeError("abandoned")
    log: Log = []
    async with asyncio.timeout(BUSY_S / 2):
        await write(engine, 2, log)
    assert await stored(engine) == [2]


async def test_reads_do_not_wait_for_a_turn(engine: AsyncEngine) -> None:
    log: Log = []
    wrote = asyncio.Event()
    writer = asyncio.create_task(write(engine, 1, log, hold_s=0.5, wrote=wrote))
    await wrote.wait()
    async with asyncio.timeout(0.25):
        assert await stored(engine) == []
    await writer


async def test_a_writer_holding_too_long_is_still_an_error_not_a_hang(
    engine: AsyncEngine,
) -> None:
    log: Log = []
    wrote = asyncio.Event()
    holder = asyncio.create_task(write(engine, 1, log, hold_s=3 * BUSY_S, wrote=wrote))
    await wrote.wait()
    started = time.monotonic()
    # the turn waited for BUSY_S, then SQLite's lock for BUSY_S: "database is locked"
    with pytest.raises(OperationalError, match="database is locked"):
        await write(engine, 2, log)
    assert time.monotonic() - started < 2.5 * BUSY_S
    await holder
    assert [(step, n) for step, n, _ in log] == [("wrote", 1), ("committed", 1)]
