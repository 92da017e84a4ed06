"""The observer's one state row when several workers start at once: both first writes
succeed (the row is created with ON CONFLICT DO NOTHING, then updated), on SQLite and
PostgreSQL. Before, the second insert failed with a unique violation and a traceback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store import observer as store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_two_first_writes_at_once_both_succeed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async def caught_up(ledger: int) -> None:
        async with sessions() as session, session.begin():
            await store.save_caught_up(session, ledger, T0, T0)

    async def failed() -> None:
        async with sessions() as session, session.begin():
            await store.save_error(session, "Horizon answered 503", T0)

    await asyncio.gather(caught_up(7), caught_up(8), failed())
    async with sessions() as session:
        row = await store.get_state(session)
    assert row is not None and row.last_ledger in (7, 8)


async def test_an_error_then_catching_up_clears_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await store.save_error(session, "x" * 600, T0)
    async with sessions() as session:
        row = await store.get_state(session)
    assert row is not None and row.last_error == "x" * 500 and row.last_ledger is None
    async with sessions() as session, session.begin():
        await store.save_caught_up(session, 9, T0, T0)
    async with sessions() as session:
        row = await store.get_state(session)
    assert row is not None
    assert (row.last_ledger, row.last_error, row.caught_up_at) == (9, None, T0)
