"""The Fireblocks tables on SQLite and PostgreSQL: an event id and an incoming transfer are
recorded once (a conflict neither raises nor aborts the database transaction), and a nudge
moves only in-flight payouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from test_payouts_store import T0, Intent, force_state, record

from anchorpay.store import fireblocks as fb_store
from anchorpay.store import payouts


async def test_an_event_is_recorded_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s, s.begin():
        first = await fb_store.record_event(
            s, "ev-1", "transaction.created", "fb-1", "p-1", "SUBMITTED", T0
        )
        again = await fb_store.record_event(
            s, "ev-1", "transaction.created", "fb-1", "p-1", "SUBMITTED", T0
        )
        other = await fb_store.record_event(
            s, "ev-2", "transaction.status.updated", "fb-1", None, None, T0
        )
    assert (first, again, other) == (True, False, True)  # and the transaction still committed
    async with sessions() as s, s.begin():
        assert not await fb_store.record_event(s, "ev-2", "x", None, None, None, T0)


async def test_an_incoming_transfer_is_recorded_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s, s.begin():
        assert not await fb_store.incoming_seen(s, "fb-9")
        assert await fb_store.record_incoming(s, "fb-9", "ab" * 32, "credited", "tx-1", T0)
        assert not await fb_store.record_incoming(s, "fb-9", "ab" * 32, "no_match", None, T0)
    async with sessions() as s:
        assert await fb_store.incoming_seen(s, "fb-9")


async def test_a_nudge_moves_only_in_flight_payouts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    queued = await record(sessions, "tx-q", Intent(), "fireblocks")
    flying = await record(sessions, "tx-f", Intent(), "fireblocks")
    await force_state(sessions, flying.id, payouts.SUBMITTED)
    now = datetime.now(UTC) + timedelta(minutes=5)
    async with sessions() as s, s.begin():
        assert await payouts.nudge(s, flying.id, now)
        assert not await payouts.nudge(s, queued.id, now)
        assert not await payouts.nudge(s, "no-such-payout", now)
    async with sessions() as s:
        moved = await payouts.get(s, flying.id)
        kept = await payouts.get(s, queued.id)
    assert moved is not None and moved.next_attempt_at == now
    assert moved.version == flying.version  # not a versioned write: a holder's save still wins
    assert kept is not None and kept.next_attempt_at == queued.next_attempt_at
