"""Delivery bookkeeping of the outbox: which events a dispatcher may send now, and what came
of each attempt.

An event is sendable when it is `pending`, due, not leased by a live dispatcher, and no
earlier event of its transaction is still `pending` (the per-transaction order: a later one
waits for an earlier undelivered one; a `failed` one does not hold the others back). A claim
is one conditional UPDATE (the payouts' pattern): on PostgreSQL a second worker's UPDATE
waits on the first's row locks, then re-reads the lease and leaves those rows alone, so two
workers never send one event at the same time. A dispatcher that dies mid-send loses its
lease after its TTL and the event is sent again (at least once; consumers dedupe by id).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store.event_tables import EventRow

_T = EventRow.__table__  # type: ignore[attr-defined]

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def _lease_free(now: datetime) -> Any:
    return or_(_T.c.lease_expires_at.is_(None), _T.c.lease_expires_at <= now)


async def claim(
    session: AsyncSession, owner: str, now: datetime, limit: int, lease_s: float
) -> list[EventRow]:
    """Lease up to `limit` sendable events (at most one per transaction) for `owner`."""
    conn = await session.connection()
    earlier = aliased(_T)
    blocked = exists().where(
        earlier.c.transaction_id == _T.c.transaction_id,
        earlier.c.seq < _T.c.seq,
        earlier.c.state == PENDING,
    )
    candidates = (
        await conn.execute(
            select(_T.c.id)
            .where(
                _T.c.state == PENDING,
                or_(_T.c.next_attempt_at.is_(None), _T.c.next_attempt_at <= now),
                _lease_free(now),
                ~blocked,
            )
            .order_by(_T.c.position)
            .limit(limit)
        )
    ).scalars()
    ids = list(candidates)
    if not ids:
        return []
    until = now + timedelta(seconds=lease_s)
    # One conditional UPDATE for the lot; rows another worker leased meanwhile stay theirs.
    await conn.execute(
        update(_T)
        .where(_T.c.id.in_(ids), _T.c.state == PENDING, _lease_free(now))
        .values(lease_owner=owner, lease_expires_at=until)
    )
    rows = (
        (
            await conn.execute(
                select(_T)
                .where(_T.c.id.in_(ids), _T.c.lease_owner == owner, _T.c.lease_expires_at == until)
                .order_by(_T.c.position)
            )
        )
        .mappings()
        .all()
    )
    return [EventRow.model_validate(dict(r)) for r in rows]


def _held(event_id: str, owner: str) -> Any:
    return and_(_T.c.id == event_id, _T.c.lease_owner == owner, _T.c.state == PENDING)


async def _finish_attempt(session: AsyncSession, event_id: str, owner: str, **values: Any) -> bool:
    """Record an attempt's outcome and hand the lease back, if `owner` still holds it. False
    when the lease was lost meanwhile (another dispatcher sends it again)."""
    conn = await session.connection()
    result = await conn.execute(
        update(_T)
        .where(_held(event_id, owner))
        .values(attempts=_T.c.attempts + 1, lease_owner=None, lease_expires_at=None, **values)
    )
    return bool(result.rowcount == 1)


async def delivered(session: AsyncSession, event_id: str, owner: str, now: datetime) -> bool:
    return await _finish_attempt(
        session, event_id, owner, state=DELIVERED, delivered_at=now, last_error=None
    )


async def retry_at(
    session: AsyncSession, event_id: str, owner: str, when: datetime, error: str
) -> bool:
    return await _finish_attempt(session, event_id, owner, next_attempt_at=when, last_error=error)


async def failed(session: AsyncSession, event_id: str, owner: str, error: str) -> bool:
    return await _finish_attempt(
        session, event_id, owner, state=FAILED, next_attempt_at=None, last_error=error
    )


async def redeliver(session: AsyncSession, event_id: str, now: datetime) -> EventRow | None:
    """Send a delivered or failed event again (a new round: attempts and max age restart).
    None when there is no such event; a pending one is left as it is (already on its way)."""
    conn = await session.connection()
    await conn.execute(
        update(_T)
        .where(_T.c.id == event_id, _T.c.state != PENDING)
        .values(
            state=PENDING,
            attempts=0,
            next_attempt_at=None,
            deliver_since=now,
            last_error=None,
            delivered_at=None,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    row = (await conn.execute(select(_T).where(_T.c.id == event_id))).mappings().first()
    return EventRow.model_validate(dict(row)) if row is not None else None


async def release(session: AsyncSession, owner: str) -> None:
    """Give back every lease of `owner` at once (a clean stop): no one waits for the TTL."""
    conn = await session.connection()
    await conn.execute(
        update(_T)
        .where(_T.c.lease_owner == owner, _T.c.state == PENDING)
        .values(lease_owner=None, lease_expires_at=None)
    )


async def count_by_state(session: AsyncSession) -> dict[str, int]:
    conn = await session.connection()
    rows = await conn.execute(select(_T.c.state, func.count()).group_by(_T.c.state))
    return {state: int(n) for state, n in rows.all()}
