"""The payouts repository: intents recorded by the RPC, leased and advanced by the worker.

States and the moves between them are the domain's table (`domain/payout_states.py`):
every write names its move, and the store derives the new state from it.

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
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from sqlalchemy import CursorResult, Executable, and_, func, or_, select, update
from sqlmodel import select as orm_select
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.money import PayoutEntry
from anchorpay.domain.payout_states import (
    IN_FLIGHT_STATES,
    NOT_SENT_STATES,
    OPEN_STATES,
    PayoutMove,
    PayoutState,
    sources,
    target,
)
from anchorpay.store.tables import PayoutRow

if TYPE_CHECKING:  # only its fields are read; the machine imports nothing of the store
    from anchorpay.domain.machine import PayoutIntent

QUEUED, WAITING_TRUST = PayoutState.QUEUED, PayoutState.WAITING_TRUST
SUBMITTING, SUBMITTED = PayoutState.SUBMITTING, PayoutState.SUBMITTED


class PayoutChanges(TypedDict, total=False):
    """The columns a payout write may change besides its state (set by the move)."""

    attempts: int
    polls: int
    next_attempt_at: datetime | None
    last_error: str | None
    waiting_since: datetime | None
    adapter_ref: str | None
    envelope_xdr: str | None
    tx_hash: str | None
    source_sequence: int | None
    valid_until: datetime | None
    ledger: int | None
    op_index: int | None


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


def _conflict(transaction_id: str, purpose: str, pid: str, state: str, tx_hash: str | None) -> str:
    if state == PayoutState.CONFIRMED:
        return (
            f"Transaction[{transaction_id}] was already paid on-chain by payout {pid} "
            f"(hash {tx_hash})"
        )
    return (
        f"Transaction[{transaction_id}] already has a {purpose} payout in flight: "
        f"payout {pid} is {state}"
    )


async def record_intent(
    session: AsyncSession,
    transaction_id: str,
    intent: PayoutIntent,
    adapter: str,
    now: datetime,
    request_id: str | None = None,
) -> PayoutRow:
    """Insert the payout for this intent in the caller's database transaction: state
    `waiting_trust` when `intent.wait_for_trust`, else `queued`, due now.

    Refunds are numbered (seq 1, 2, ...). Refused with PayoutConflict while another payout for
    the same (transaction, purpose) is open, and for a payment already confirmed: a deposit is
    paid once. Two racing inserts collide on the unique (transaction, purpose, seq)."""
    rows = (
        await _run(
            session,
            select(_T.c.seq, _T.c.state, _T.c.id, _T.c.tx_hash).where(
                _T.c.transaction_id == transaction_id, _T.c.purpose == intent.purpose
            ),
        )
    ).all()
    for _seq, state, pid, tx_hash in (tuple(r) for r in rows):
        if state in OPEN_STATES or (intent.purpose == "payment" and state == PayoutState.CONFIRMED):
            raise PayoutConflict(_conflict(transaction_id, intent.purpose, pid, state, tx_hash))
    waiting = bool(intent.wait_for_trust)
    move = PayoutMove.RECORD_WAITING if waiting else PayoutMove.RECORD
    row = PayoutRow(
        id=str(uuid.uuid4()),
        transaction_id=transaction_id,
        purpose=intent.purpose,
        seq=max((r[0] for r in rows), default=0) + 1,
        state=target(move, None),
        destination=intent.destination,
        asset=intent.asset,
        amount=intent.amount,
        memo=intent.memo,
        memo_type=intent.memo_type,
        refund_fee=intent.refund_fee,
        next_attempt_at=None if waiting else now,
        waiting_since=now if waiting else None,
        adapter=adapter,
        request_id=request_id,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def resume_waiting(session: AsyncSession, transaction_id: str, now: datetime) -> None:
    """The trustline is there: the transaction's `waiting_trust` payout becomes `queued`."""
    await _move_all(session, transaction_id, PayoutMove.RESUME, now, next_attempt_at=now)


async def cancel_unsent(
    session: AsyncSession,
    transaction_id: str,
    reason: str,
    now: datetime,
    *,
    keep: str | None = None,
) -> None:
    """Close the transaction's payouts that nothing was sent for yet (`queued`,
    `waiting_trust`): the trust window passed, or the business put the transaction in error
    or expired it. A worker holding one is preparing it at most: its next write is refused
    (the version moved), so it stops before sending anything.

    `keep`: the payout whose own final write shares this database transaction (the worker
    failing it puts the transaction in error): it is left to that write, which would
    otherwise find its version moved and roll everything back, forever."""
    await _move_all(
        session,
        transaction_id,
        PayoutMove.CANCEL,
        now,
        keep=keep,
        last_error=reason,
        next_attempt_at=None,
    )


async def _move_all(
    session: AsyncSession,
    transaction_id: str,
    move: PayoutMove,
    now: datetime,
    *,
    keep: str | None = None,
    **values: Unpack[PayoutChanges],
) -> None:
    """Apply `move` to every payout of the transaction it applies to (but `keep`), releasing
    leases."""
    changes: dict[str, Any] = {"last_error": None, **values}
    chosen = [_T.c.transaction_id == transaction_id, _T.c.state.in_(list(sources(move)))]
    if keep is not None:
        chosen.append(_T.c.id != keep)
    await _run(
        session,
        update(_T)
        .where(*chosen)
        .values(
            **changes,
            state=target(move, sources(move)[0]),
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
    """`other` holds a lane of `adapter`: it is in flight, or claimed and being prepared.
    An envelope known to be on the ledger (`ledger` set while its completion is written)
    no longer needs its lane: its sequence number is consumed, the next one reads past it."""
    return and_(
        other.c.adapter == adapter,
        or_(
            and_(other.c.state.in_(IN_FLIGHT_STATES), other.c.ledger.is_(None)),
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
    states: Collection[PayoutState] = OPEN_STATES,
    lanes: Mapping[str, Sequence[str]] | None = None,
    batch: Mapping[str, int] | None = None,
) -> list[PayoutRow]:
    """Lease up to `limit` due payouts (or batches) to `owner` and return them (committing
    is the caller's). Payouts already in flight come first.

    `lanes` maps an adapter whose submissions use sequence numbers to its source accounts
    (the distribution account, or its channel accounts). Each lane carries one envelope at a
    time: a payout not yet sent is claimed only with a lane no other payout of that adapter
    occupies (in flight, or claimed), and the lane is written on it (`source_account`).
    A row from before lanes existed (no `source_account`) occupies the first lane.

    `batch` maps an adapter to how many payouts one envelope may carry. The lane then takes
    the oldest due payout and, when it has no memo (Stellar has one memo per transaction),
    the next oldest memo-less ones up to that number: a memo'd payout gets a lane to itself,
    and whichever kind is oldest goes first, so neither starves. Payouts claimed together on
    one lane are one batch (the caller groups them by `source_account`)."""
    lanes = lanes or {}
    batch = batch or {}
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
    serial_locked: set[str] = set()
    claimed: list[str] = []
    units = 0
    # A batch can absorb every candidate of a pass: read the next ones until the limit is
    # reached or a pass claims nothing more (every lane busy, nothing due).
    while units < limit:
        page = query.where(_T.c.id.not_in(claimed)) if claimed else query
        candidates = (await _run(session, page)).all()
        before = units
        for pid, version, state, adapter in (tuple(r) for r in candidates):
            if units >= limit:
                break
            if pid in claimed:
                continue  # joined an earlier payout's batch
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
            if result.rowcount != 1:
                continue
            claimed.append(pid)
            units += 1
            size = batch.get(adapter, 1)
            if "source_account" in values and size > 1:
                claimed += await _claim_batch_mates(
                    session, pid, adapter, values["source_account"], owner, now, lease_s, size - 1
                )
        if units == before:
            break
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


def _memo_less() -> Any:
    return or_(_T.c.memo.is_(None), _T.c.memo == "", _T.c.memo_type == "none")


async def _claim_batch_mates(
    session: AsyncSession,
    leader: str,
    adapter: str,
    lane: str,
    owner: str,
    now: datetime,
    lease_s: float,
    room: int,
) -> list[str]:
    """Claim up to `room` more due, unsent, memo-less payouts of `adapter` onto `lane`, to
    share the envelope of `leader` (when it has no memo itself). The lane was found free in
    this database transaction, under the same serialisation as the leader's claim."""
    memo_less = (
        await _run(session, select(_T.c.id).where(_T.c.id == leader, _memo_less()))
    ).first()
    if memo_less is None:
        return []
    mates = (
        select(_T.c.id)
        .where(
            _due(now),
            _T.c.state.in_(list(NOT_SENT_STATES)),
            _T.c.adapter == adapter,
            _T.c.id != leader,
            _memo_less(),
        )
        .order_by(_T.c.next_attempt_at, _T.c.created_at)
        .limit(room)
    )
    if (await session.connection()).dialect.name == "postgresql":
        mates = mates.with_for_update(skip_locked=True)
    ids = [str(pid) for (pid,) in (await _run(session, mates)).all()]
    if not ids:
        return []
    result = await _run(
        session,
        update(_T)
        .where(_T.c.id.in_(ids), _due(now), _T.c.state.in_(list(NOT_SENT_STATES)))
        .values(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            source_account=lane,
            version=_T.c.version + 1,
        )
        .returning(_T.c.id),
    )
    got = {str(pid) for (pid,) in result.all()}
    return [pid for pid in ids if pid in got]


async def save_all(
    session: AsyncSession,
    rows: Sequence[PayoutRow],
    owner: str,
    now: datetime,
    move: PayoutMove,
    changes: Mapping[str, PayoutChanges],
    *,
    lease_s: float | None = None,
) -> list[PayoutRow]:
    """`save` for several payouts in the caller's database transaction: all or none (a
    LeaseLost rolls the whole transaction back)."""
    return [
        await save(session, row, owner, now, move, lease_s=lease_s, **changes.get(row.id, {}))
        for row in rows
    ]


async def save(
    session: AsyncSession,
    row: PayoutRow,
    owner: str,
    now: datetime,
    move: PayoutMove,
    *,
    lease_s: float | None = None,
    release: bool = False,
    **changes: Unpack[PayoutChanges],
) -> PayoutRow:
    """Apply `move` with `changes` if the row is still at `row.version` and leased to `owner`;
    renew the lease by `lease_s` or release it. Returns the new value; raises LeaseLost when
    the row changed, IllegalPayoutMove when `move` does not apply to its state."""
    values: dict[str, Any] = {**changes, "state": target(move, row.state)}
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
    states: Collection[PayoutState] | None = None,
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


async def money_entries(session: AsyncSession, transaction_id: str) -> list[PayoutEntry]:
    """The transaction's payouts as its money ledger counts them (`domain.money`)."""
    result = await _run(
        session,
        select(_T.c.id, _T.c.purpose, _T.c.state, _T.c.amount, _T.c.refund_fee, _T.c.tx_hash)
        .where(_T.c.transaction_id == transaction_id)
        .order_by(_T.c.purpose, _T.c.seq),
    )
    return [
        PayoutEntry(
            id=pid, purpose=purpose, state=PayoutState(state), amount=amount, fee=fee, tx_hash=h
        )
        for pid, purpose, state, amount, fee, h in (tuple(r) for r in result.all())
    ]


async def by_hash(session: AsyncSession, tx_hash: str) -> PayoutRow | None:
    """The payout whose envelope has this hash, if any."""
    return (await session.exec(orm_select(PayoutRow).where(_T.c.tx_hash == tx_hash))).first()


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
