"""The outbox repository: writing an event with its change, and the pull feed's reads.

`record` is called by the transactions repository itself (`insert`, `update`), inside the
caller's database transaction: no write path can change a transaction without its event,
and a rolled-back change leaves no event.

The feed's order. SQLite has one writer at a time, holding the database from its first
write to its commit, so `position` (assigned at insert) is commit order. PostgreSQL assigns
`position` at insert but commits in any order: a reader that saw position 7 committed may
later see 6 commit, and a cursor "after 7" would skip it forever. So each row also stores
the id of the database transaction that wrote it (`pg_current_xact_id()`, 64-bit, never
wraps), the feed orders by (txid, position), and it serves only rows whose txid is below
the oldest transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`). Every
transaction that can still commit has an id at or above that horizon, and ids only grow,
so nothing can appear behind a cursor taken from a served row. A long-running transaction
anywhere on the server holds the feed back (delays it), it never makes it skip. The
per-transaction order holds too: a change of one transaction can only commit after reading
the previous change's version, so its database transaction started writing later and has
the larger id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, literal, select, text, tuple_
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.events import EventType
from anchorpay.store.event_tables import EventRow

_T = EventRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the feed: after the row (txid, position). Opaque to clients."""

    txid: int = 0
    position: int = 0

    def __str__(self) -> str:
        return f"{self.txid}-{self.position}"

    @classmethod
    def parse(cls, value: str | None) -> Cursor:
        """Raises ValueError for anything `str(Cursor)` did not write."""
        if not value:
            return cls()
        txid, sep, position = value.partition("-")
        if not sep or not txid.isdigit() or not position.isdigit():
            raise ValueError(f"after must be a cursor this feed returned, not {value!r}")
        return cls(int(txid), int(position))


def _bound(name: str) -> Any:
    return bindparam(name, type_=_T.c[name].type)


_RECORDED = ("id", "transaction_id", "type", "created_at", "transaction", "detail", "deliver_since")


def _record_statement(txid: Any = None) -> Any:
    """One INSERT … SELECT: the row with the next `seq` of its transaction (one statement,
    not a read of the last `seq` then an insert). Built once per dialect: SQLAlchemy
    compiles it once."""
    columns = [_bound(name) for name in _RECORDED]
    names = [*_RECORDED, "seq", "state", "attempts"]
    columns += [func.coalesce(func.max(_T.c.seq), 0) + 1, literal("pending"), literal(0)]
    if txid is not None:
        names.append("txid")
        columns.append(txid)
    rows = select(*columns).where(_T.c.transaction_id == _bound("transaction_id"))
    return _T.insert().from_select(names, rows)


# PostgreSQL also stores the id of the database transaction writing the row (the feed).
_RECORD = {
    "sqlite": _record_statement(),
    "postgresql": _record_statement(text("pg_current_xact_id()::text::bigint")),
}


async def record(
    session: AsyncSession,
    transaction_id: str,
    event_type: EventType,
    snapshot: dict[str, Any],
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> str:
    """Insert one event in the session's database transaction; returns its id. The caller
    holds the transaction's row (its insert, or its versioned update), so the next `seq` of
    this transaction cannot be taken by anyone else before we commit (the unique
    constraint would refuse it anyway)."""
    conn = await session.connection()
    event_id = str(uuid.uuid4())
    values: dict[str, Any] = {
        "id": event_id,
        "transaction_id": transaction_id,
        "type": event_type.value,
        "created_at": at,
        "transaction": snapshot,
        "detail": detail,
        "deliver_since": at,
    }
    await conn.execute(_RECORD[conn.dialect.name], values)
    return event_id


def _horizon(dialect: str) -> Any:
    """Rows at or past this txid may still have company committing behind them."""
    if dialect == "postgresql":
        return text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    return None


async def feed(
    session: AsyncSession, after: Cursor, limit: int, state: str | None = None
) -> list[EventRow]:
    """Up to `limit` events after `after`, in feed order, none that a later commit could
    still precede (see the module's docstring); `state`: only those whose delivery is in
    that state (e.g. the failed ones)."""
    conn = await session.connection()
    query = select(_T).where(tuple_(_T.c.txid, _T.c.position) > (after.txid, after.position))
    if state is not None:
        query = query.where(_T.c.state == state)
    horizon = _horizon(conn.dialect.name)
    if horizon is not None:
        query = query.where(_T.c.txid < horizon)
    query = query.order_by(_T.c.txid, _T.c.position).limit(limit)
    rows = (await conn.execute(query)).mappings().all()
    return [EventRow.model_validate(dict(r)) for r in rows]


async def get(session: AsyncSession, event_id: str) -> EventRow | None:
    conn = await session.connection()
    row = (await conn.execute(select(_T).where(_T.c.id == event_id))).mappings().first()
    return EventRow.model_validate(dict(row)) if row is not None else None


async def for_transaction(session: AsyncSession, transaction_id: str) -> list[EventRow]:
    conn = await session.connection()
    rows = (
        (
            await conn.execute(
                select(_T).where(_T.c.transaction_id == transaction_id).order_by(_T.c.seq)
            )
        )
        .mappings()
        .all()
    )
    return [EventRow.model_validate(dict(r)) for r in rows]
