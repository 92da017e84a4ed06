"""The transactions repository: domain values in, domain values out, optimistic versions.

`update` writes only when the stored version is the one the caller read, and bumps it; a
lost race raises `ConcurrentModification`, and the caller's database transaction rolls back.

`insert` and `update` are the only writes of a transaction, and each records its business
event (the outbox, `store/events.py`) in the same database transaction: one seam, so no
path (RPC, worker, observer, trustline poller) can change a transaction without its event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import (
    CompoundSelect,
    Integer,
    Select,
    bindparam,
    func,
    union_all,
)
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.events import EventType, change_type
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import (
    FeeDetail,
    RefundPayment,
    Refunds,
    StellarPayment,
    StellarTransaction,
    Transaction,
)
from anchorpay.store import events
from anchorpay.store.db import engine_of
from anchorpay.store.tables import TransactionRow, list_order

_T = TransactionRow.__table__  # type: ignore[attr-defined]

OrderBy = Literal["created_at", "transfer_received_at", "user_action_required_by"]
Order = Literal["asc", "desc"]


class ConcurrentModification(Exception):
    def __init__(self, transaction_id: str) -> None:
        super().__init__(
            f"Transaction[{transaction_id}] was modified concurrently; re-read it and retry"
        )
        self.transaction_id = transaction_id


class DuplicateTransaction(Exception):
    """A transaction with this id already exists."""


_SIMPLE_FIELDS = (
    "id",
    "sep",
    "requested_asset",
    "amount_expected",
    "amount_in",
    "amount_in_asset",
    "amount_out",
    "amount_out_asset",
    "amount_fee",
    "amount_fee_asset",
    "quote_id",
    "started_at",
    "updated_at",
    "completed_at",
    "transfer_received_at",
    "user_action_required_by",
    "message",
    "stellar_transaction_id",
    "from_account",
    "to_account",
    "withdraw_anchor_account",
    "external_transaction_id",
    "memo",
    "memo_type",
    "refund_memo",
    "refund_memo_type",
    "client_domain",
    "client_name",
    "sep10_account",
    "sep10_account_memo",
    "version",
)


def _dt_out(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt_in(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def to_row_values(tx: Transaction) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(tx, name) for name in _SIMPLE_FIELDS}
    values["kind"] = tx.kind.value
    values["status"] = tx.status.value
    values["fee_details"] = (
        [asdict(d) for d in tx.fee_details] if tx.fee_details is not None else None
    )
    values["refunds"] = asdict(tx.refunds) if tx.refunds is not None else None
    values["stellar_transactions"] = [
        {**asdict(s), "created_at": _dt_out(s.created_at)} for s in tx.stellar_transactions
    ]
    return values


def from_row(row: TransactionRow) -> Transaction:
    return _from_values({name: getattr(row, name) for name in _ALL_FIELDS})


_ALL_FIELDS = (
    *_SIMPLE_FIELDS,
    "kind",
    "status",
    "fee_details",
    "refunds",
    "stellar_transactions",
)
_DATETIME_FIELDS = (
    "started_at",
    "updated_at",
    "completed_at",
    "transfer_received_at",
    "user_action_required_by",
)


def snapshot(tx: Transaction) -> dict[str, Any]:
    """The transaction as JSON-ready values (an event's copy of it)."""
    values = to_row_values(tx)
    for name in _DATETIME_FIELDS:
        values[name] = _dt_out(values[name])
    return values


def from_snapshot(values: dict[str, Any]) -> Transaction:
    converted = dict(values)
    for name in _DATETIME_FIELDS:
        converted[name] = _dt_in(converted.get(name))
    return _from_values(converted)


def _from_values(row: Mapping[str, Any]) -> Transaction:
    values: dict[str, Any] = {name: row[name] for name in _SIMPLE_FIELDS}
    refunds = None
    if row["refunds"] is not None:
        refunds = Refunds(
            amount_refunded=row["refunds"]["amount_refunded"],
            amount_fee=row["refunds"]["amount_fee"],
            payments=[RefundPayment(**p) for p in row["refunds"].get("payments", [])],
        )
    return Transaction(
        **values,
        kind=Kind(row["kind"]),
        status=Status(row["status"]),
        fee_details=[FeeDetail(**d) for d in row["fee_details"]]
        if row["fee_details"] is not None
        else None,
        refunds=refunds,
        stellar_transactions=[
            StellarTransaction(
                **{
                    **s,
                    "created_at": _dt_in(s.get("created_at")),
                    "payments": [StellarPayment(**p) for p in s.get("payments", [])],
                }
            )
            for s in (row["stellar_transactions"] or [])
        ],
    )


# Built once, so SQLAlchemy compiles each once (its statement cache) instead of building and
# hashing a new statement per call. The read is Core: no ORM instance to build and track.
_GET = select(_T).where(_T.c.id == bindparam("transaction_id"))
_UPDATE = _T.update().where(_T.c.id == bindparam("_id"), _T.c.version == bindparam("_read"))


async def get(session: AsyncSession, transaction_id: str) -> Transaction | None:
    return await _get(await session.connection(), transaction_id)


async def read(
    sessions: async_sessionmaker[AsyncSession], transaction_id: str
) -> Transaction | None:
    """The transaction, read on a connection of its own: no session to set up, and one
    rollback when the connection goes back to the pool (a session's close rolls back, then
    the pool does again)."""
    async with engine_of(sessions).connect() as conn:
        return await _get(conn, transaction_id)


async def _get(conn: AsyncConnection, transaction_id: str) -> Transaction | None:
    row = (await conn.execute(_GET, {"transaction_id": transaction_id})).mappings().first()
    return _from_values(row) if row is not None else None


async def get_fingerprint(session: AsyncSession, transaction_id: str) -> str | None:
    result = await session.exec(
        select(TransactionRow.create_fingerprint).where(TransactionRow.id == transaction_id)
    )
    value: str | None = result.first()
    return value


async def statuses(session: AsyncSession, transaction_ids: Sequence[str]) -> dict[str, str]:
    """The status of each transaction found, by id, in one query (the worker's check that a
    batch's transactions still want paying)."""
    if not transaction_ids:
        return {}
    result = await session.exec(
        select(TransactionRow.id, TransactionRow.status).where(
            col(TransactionRow.id).in_(list(transaction_ids))
        )
    )
    return {str(tx_id): str(status) for tx_id, status in result.all()}


async def insert(session: AsyncSession, tx: Transaction, fingerprint: str | None = None) -> None:
    session.add(TransactionRow(**to_row_values(tx), create_fingerprint=fingerprint))
    await session.flush()
    await events.record(session, tx.id, change_type(None, tx.status), snapshot(tx), tx.started_at)


async def update(
    session: AsyncSession,
    tx: Transaction,
    before: Transaction | None = None,
    now: datetime | None = None,
    event: EventType | None = None,
    detail: dict[str, Any] | None = None,
) -> Transaction:
    """Write `tx` over the stored row if nobody wrote since `tx.version` was read, with its
    event. `before`: the value the caller read (its status names the event); without it the
    stored status is read. `now`: the change's time (the event's), default its updated_at.
    `event`, `detail`: an event other than the change's own (payout_failed) and its detail.
    Returns the value with its new version."""
    if before is not None:
        before_status = before.status
    else:
        stored = await session.exec(select(TransactionRow.status).where(TransactionRow.id == tx.id))
        found = stored.first()
        before_status = Status(found) if found is not None else tx.status
    values = to_row_values(tx)
    values["version"] = tx.version + 1
    conn = await session.connection()
    # SET every column given in the parameters, WHERE the version is the one read.
    result = await conn.execute(_UPDATE, {**values, "_id": tx.id, "_read": tx.version})
    if result.rowcount != 1:
        raise ConcurrentModification(tx.id)
    session.expunge_all()
    written = tx.clone()
    written.version = tx.version + 1
    at = now or written.updated_at or written.started_at
    event_type = event or change_type(before_status, written.status)
    await events.record(session, tx.id, event_type, snapshot(written), at, detail)
    return written


_ORDER_COLUMNS: dict[str, str] = {
    "created_at": "started_at",
    "transfer_received_at": "transfer_received_at",
    "user_action_required_by": "user_action_required_by",
}


@lru_cache(maxsize=256)
def _list_query(dialect: str, order_by: OrderBy, order: Order, statuses: int) -> Select[Any]:
    """The query of a page of transactions in `statuses` statuses (none: every one), built once
    per shape with bound parameters (status_0…, offset, limit). The page's ids are read off
    the index of the order (tables.list_order), so OFFSET skips index entries, not rows; then
    only the page's rows are read, by id."""
    table = TransactionRow.__table__  # type: ignore[attr-defined]
    keys = list_order(_ORDER_COLUMNS[order_by], order == "desc")

    def ordered(columns: Sequence[Any]) -> list[Any]:
        return [c.desc() if desc else c for c, (_, desc) in zip(columns, keys, strict=True)]

    def walk(status: int | None) -> Select[Any]:
        query = sa_select(*[key.label(f"k{i}") for i, (key, _) in enumerate(keys)])
        if status is None:
            return query
        return query.where(table.c.status == bindparam(f"status_{status}"))

    ids: Select[Any] | CompoundSelect[Any]
    if statuses <= 1:
        ids = walk(0 if statuses else None).order_by(*ordered([key for key, _ in keys]))
    else:
        # One walk of the status-led index per status, merged. PostgreSQL merges (Merge
        # Append) only arms that are sorted themselves; SQLite refuses sorted arms and merges
        # a compound sorted as a whole.
        walks = [walk(i) for i in range(statuses)]
        if dialect == "postgresql":
            walks = [w.order_by(*ordered([key for key, _ in keys])) for w in walks]
        merged = union_all(*walks)
        ids = merged.order_by(*ordered(list(merged.selected_columns)))
    offset, limit = bindparam("offset", type_=Integer), bindparam("limit", type_=Integer)
    page = ids.offset(offset).limit(limit).subquery("page")
    return (
        sa_select(*table.c)
        .join_from(table, page, table.c.id == list(page.c)[-1])
        .order_by(*ordered(list(page.c)))
    )


def _list_params(statuses: Sequence[str], page_number: int, page_size: int) -> dict[str, Any]:
    found = {f"status_{i}": status for i, status in enumerate(statuses)}
    return {**found, "offset": page_number * page_size, "limit": page_size}


def list_statement(
    dialect: str,
    *,
    statuses: Sequence[str] | None = None,
    order_by: OrderBy = "created_at",
    order: Order = "asc",
    page_number: int = 0,
    page_size: int = 20,
) -> Select[Any]:
    """The query `list_page` runs on `dialect` ("sqlite" or "postgresql"), values bound."""
    wanted = list(dict.fromkeys(statuses or ()))
    query = _list_query(dialect, order_by, order, len(wanted))
    return query.params(_list_params(wanted, page_number, page_size))


async def list_page(
    session: AsyncSession,
    *,
    statuses: Sequence[str] | None = None,
    order_by: OrderBy = "created_at",
    order: Order = "asc",
    page_number: int = 0,
    page_size: int = 20,
) -> list[Transaction]:
    """Filter by status, order with NULLS LAST then by id (as the reference), page. Rows, not
    ORM objects: a page is read, never written (half the time of a shallow page)."""
    conn = await session.connection()
    wanted = list(dict.fromkeys(statuses or ()))
    query = _list_query(conn.dialect.name, order_by, order, len(wanted))
    result = await conn.execute(query, _list_params(wanted, page_number, page_size))
    return [_from_values(row) for row in result.mappings()]


async def count(session: AsyncSession) -> int:
    result = await session.exec(select(func.count()).select_from(TransactionRow))
    return int(result.one())


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    """Transactions per status: one grouped query (the metrics gauge)."""
    query = select(TransactionRow.status, func.count()).group_by(TransactionRow.status)
    rows = (await session.exec(query)).all()
    return {str(status): int(n) for status, n in rows}
