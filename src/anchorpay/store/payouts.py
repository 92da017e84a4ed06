"""The payouts repository: intents recorded by the RPC, leased and advanced by the worker.

States (DESIGN.md): `queued` → (no trustline) `waiting_trust` → `queued` → `submitting`
(idempotency material stored, outcome unknown) → `submitted` (accepted, not final) →
`confirmed`; or `failed` (permanent, nothing paid) / `cancelled` (closed while waiting for a
trustline). The first four are open.

Every write is conditional: on the version the writer read and, for the worker, on holding the
lease. A writer that lost the row (its lease expired and another worker took over) gets
`LeaseLost` and must stop: it never sends anything it did not commit first.

Claims are one conditional UPDATE per row, so on SQLite (one writer at a time) two workers
never hold the same payout. On PostgreSQL the candidate read uses `FOR UPDATE SKIP LOCKED` and
the one-in-flight rule an advisory lock; the conditional UPDATE stays the guard.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import CursorResult, Executable, and_, func, or_, select, update
from sqlmodel import select as orm_select
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store.tables import PayoutRow

if TYPE_CHECKING:  # only its fields are read; the machine imports nothing of the store
    from anchorpay.domain.machine import PayoutIntent

QUEUED = "queued"
WAITING_TRUST = "waiting_trust"
SUBMITTING = "submitting"
SUBMITTED = "submitted"
CONFIRMED = "confirmed"
FAILED = "failed"
CANCELLED = "cancelled"

OPEN_STATES = (QUEUED, WAITING_TRUST, SUBMITTING, SUBMITTED)
IN_FLIGHT_STATES = (SUBMITTING, SUBMITTED)
FINAL_STATES = (CONFIRMED, FAILED, CANCELLED)

_T = PayoutRow.__table__  # type: ignore[attr-defined]


async def _run(session: AsyncSession, statement: Executable) -> CursorResult[Any]:
    """Core statements on the session's connection (same database transaction)."""
    conn = await session.connection()
    return await conn.execute(statement)


class PayoutConflict(Exception):
    """A second open payout (or a second payment after one was confirmed) was refused."""


class LeaseLost(Exception):
    """The row changed under the worker (lease expired, another worker took it over)."""

    def __init__(self, payout_id: str) -> None:
        super().__init__(f"payout {payout_id} is no longer held by this worker")
        self.payout_id = payout_id


async def record_intent(
    session: AsyncSession, transaction_id: str, intent: PayoutIntent, adapter: str, now: datetime
) -> PayoutRow:
    """Insert the payout for this intent in the caller's database transaction: state
    `waiting_trust` when `intent.wait_for_trust`, else `queued`, due now.

    Refunds are numbered (seq 1, 2, ...). Refused with PayoutConflict while another payout for
    the same (transaction, purpose) is open, and for a payment already confirmed: a deposit is
    paid once. Two racing inserts collide on the unique (transaction, purpose, seq)."""
    rows = (
        await _run(
            session,
            select(_T.c.seq, _T.c.state).where(
                _T.c.transaction_id == transaction_id, _T.c.purpose == intent.purpose
            ),
        )
    ).all()
    for _seq, state in (tuple(r) for r in rows):
        if state in OPEN_STATES:
            raise PayoutConflict(
                f"Transaction[{transaction_id}] already has an open {intent.purpose} payout"
            )
        if intent.purpose == "payment" and state == CONFIRMED:
            raise PayoutConflict(f"Transaction[{transaction_id}] was already paid out")
    waiting = bool(intent.wait_for_trust)
    row = PayoutRow(
        id=str(uuid.uuid4()),
        transaction_id=transaction_id,
        purpose=intent.purpose,
        seq=max((r[0] for r in rows), default=0) + 1,
        state=WAITING_TRUST if waiting else QUEUED,
        destination=intent.destination,
        asset=intent.asset,
        amount=intent.amount,
        memo=intent.memo,
        memo_type=intent.memo_type,
        refund_fee=intent.refund_fee,
        next_attempt_at=None if waiting else now,
        waiting_since=now if waiting else None,
        adapter=adapter,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def resume_waiting(session: AsyncSession, transaction_id: str, now: datetime) -> None:
    """The trustline is there: the transaction's `waiting_trust` payout becomes `queued`."""
    await _leave_waiting(session, transaction_id, now, state=QUEUED, next_attempt_at=now)


async def cancel_waiting(
    session: AsyncSession, transaction_id: str, reason: str, now: datetime
) -> None:
    """Close the transaction's `waiting_trust` payout (trust window passed, error, expired)."""
    await _leave_waiting(
        session, transaction_id, now, state=CANCELLED, last_error=reason, next_attempt_at=None
    )


async def _leave_waiting(
    session: AsyncSession, transaction_id: str, now: datetime, **values: Any
) -> None:
    """Move the transaction's `waiting_trust` payout on, releasing any lease on it."""
    values.setdefault("last_error", None)
    await _run(
        session,
        update(_T)
        .where(_T.c.transaction_id == transaction_id, _T.c.state == WAITING_TRUST)
        .values(
            **values,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
            version=_T.c.version + 1,
        ),
    )


def _lock_key(adapter: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory lock of one adapter's source."""
    digest = hashlib.sha256(f"anchorpay.payouts.serial.{adapter}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lease_free(now: datetime) -> Any:
    return or_(_T.c.lease_expires_at.is_(None), _T.c.lease_expires_at < now)


def _due(now: datetime) -> Any:
    # A `waiting_trust` payout is the worker's only when it parked it itself (a trustline
    # vanished before submission): it then has a next attempt. Intents recorded waiting have
    # none; the trustline poller resumes those.
    return and_(
        _T.c.state.in_(OPEN_STATES),
        _T.c.next_attempt_at.is_not(None),
        _T.c.next_attempt_at <= now,
        _lease_free(now),
    )


def _occupying(adapter: str, other: Any, now: datetime) -> Any:
    """`other` holds a lane of `adapter`: it is in flight, or claimed and being prepared."""
    return and_(
        other.c.adapter == adapter,
        or_(
            other.c.state.in_(IN_FLIGHT_STATES),
            and_(
                other.c.state.in_((QUEUED, WAITING_TRUST)),
                other.c.lease_expires_at.is_not(None),
                other.c.lease_expires_at >= now,
            ),
        ),
    )


async def claim_due(
    session: AsyncSession,
    owner: str,
    now: datetime,
    lease_s: float,
    limit: int,
    *,
    states: Collection[str] = OPEN_STATES,
    lanes: Mapping[str, Sequence[str]] | None = None,
) -> list[PayoutRow]:
    """Lease up to `limit` due payouts to `owner` and return them (committing is the
    caller's). Payouts already in flight come first.

    `lanes` maps an adapter whose submissions use sequence numbers to its source accounts
    (the distribution account, or its channel accounts). Each lane carries one payout at a
    time: a payout not yet sent is claimed only with a lane no other payout of that adapter
    occupies (in flight, or claimed), and the lane is written on it (`source_account`).
    A row from before lanes existed (no `source_account`) occupies the first lane."""
    lanes = lanes or {}
    query = (
        select(_T.c.id, _T.c.version, _T.c.state, _T.c.adapter)
        .where(_due(now), _T.c.state.in_(list(states)))
        .order_by(
            _T.c.state.in_(IN_FLIGHT_STATES).desc(),
            _T.c.next_attempt_at,
            _T.c.created_at,
        )
        .limit(limit * 4)
    )
    postgres = (await session.connection()).dialect.name == "postgresql"
    if postgres:
        # PostgreSQL: rows another worker is claiming right now are skipped, not waited on.
        query = query.with_for_update(skip_locked=True)
    candidates = (await _run(session, query)).all()
    serial_locked: set[str] = set()
    claimed: list[str] = []
    for pid, version, state, adapter in (tuple(r) for r in candidates):
        if len(claimed) >= limit:
            break
        conditions = [_T.c.id == pid, _T.c.version == version, _due(now)]
        values: dict[str, Any] = {}
        adapter_lanes = lanes.get(adapter)
        if adapter_lanes and state not in IN_FLIGHT_STATES:
            if postgres and adapter not in serial_locked:
                # Under READ COMMITTED two claims would not see each other's uncommitted
                # lease; a transaction-scoped advisory lock per adapter serialises them (on
                # SQLite the single writer already does).
                await _run(session, select(func.pg_advisory_xact_lock(_lock_key(adapter))))
                serial_locked.add(adapter)
            other = _T.alias("other")
            lane_of = func.coalesce(other.c.source_account, adapter_lanes[0])
            taken = await _run(
                session,
                select(lane_of).where(_occupying(adapter, other, now), other.c.id != pid),
            )
            used = {str(lane) for (lane,) in taken.all()}
            free = next((lane for lane in adapter_lanes if lane not in used), None)
            if free is None:
                continue  # every lane is busy: the payout waits for one
            busy = (
                select(other.c.id)
                .where(_occupying(adapter, other, now), other.c.id != pid, lane_of == free)
                .exists()
            )
            conditions.append(~busy)
            values["source_account"] = free
        result = await _run(
            session,
            update(_T)
            .where(*conditions)
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=lease_s),
                version=_T.c.version + 1,
                **values,
            ),
        )
        if result.rowcount == 1:
            claimed.append(pid)
    if not claimed:
        return []
    rows = (
        await session.exec(
            orm_select(PayoutRow)
            .where(_T.c.id.in_(claimed))
            .execution_options(populate_existing=True)
        )
    ).all()
    by_id = {r.id: r for r in rows}
    return [by_id[pid] for pid in claimed]


async def save(
    session: AsyncSession,
    row: PayoutRow,
    owner: str,
    now: datetime,
    *,
    lease_s: float | None = None,
    release: bool = False,
    **changes: Any,
) -> PayoutRow:
    """Write `changes` if the row is still at `row.version` and leased to `owner`; renew the
    lease by `lease_s` or release it. Returns the new value; raises LeaseLost otherwise."""
    values = dict(changes)
    if release:
        values.update(lease_owner=None, lease_expires_at=None)
    elif lease_s is not None:
        values["lease_expires_at"] = now + timedelta(seconds=lease_s)
    values.update(updated_at=now, version=row.version + 1)
    result = await _run(
        session,
        update(_T)
        .where(_T.c.id == row.id, _T.c.version == row.version, _T.c.lease_owner == owner)
        .values(**values),
    )
    if result.rowcount != 1:
        raise LeaseLost(row.id)
    data = row.model_dump()
    data.update(values)
    return PayoutRow(**data)


async def get(session: AsyncSession, payout_id: str) -> PayoutRow | None:
    return (
        await session.exec(
            orm_select(PayoutRow)
            .where(_T.c.id == payout_id)
            .execution_options(populate_existing=True)
        )
    ).first()


async def list_payouts(
    session: AsyncSession,
    *,
    transaction_id: str | None = None,
    states: Collection[str] | None = None,
    limit: int = 100,
) -> list[PayoutRow]:
    """Newest last for one transaction; for all, the most recent `limit`."""
    query = orm_select(PayoutRow)
    if transaction_id is not None:
        query = query.where(_T.c.transaction_id == transaction_id)
    if states:
        query = query.where(_T.c.state.in_(list(states)))
    query = query.order_by(_T.c.created_at.desc(), _T.c.seq.desc()).limit(limit)
    rows = list((await session.exec(query)).all())
    rows.reverse()
    return rows


async def count_by_state(session: AsyncSession) -> dict[str, int]:
    result = await _run(session, select(_T.c.state, func.count()).group_by(_T.c.state))
    rows: list[Any] = list(result.all())
    return {str(state): int(n) for state, n in rows}


async def oldest_in_flight(session: AsyncSession) -> datetime | None:
    """When the longest-waiting payout still in flight was last changed (health)."""
    result = await _run(
        session, select(func.min(_T.c.updated_at)).where(_T.c.state.in_(IN_FLIGHT_STATES))
    )
    value: datetime | None = result.scalar_one_or_none()  # UTCDateTime: aware, in UTC
    return value


async def nudge(session: AsyncSession, payout_id: str, now: datetime) -> bool:
    """Make an in-flight payout due now (a custodian's webhook said something changed). Not a
    versioned write: it only moves `next_attempt_at`, and a worker holding the row may
    overwrite it with its own schedule, which is as safe (the poll is capped)."""
    result = await _run(
        session,
        update(_T)
        .where(_T.c.id == payout_id, _T.c.state.in_(IN_FLIGHT_STATES))
        .values(next_attempt_at=now),
    )
    return bool(result.rowcount == 1)
