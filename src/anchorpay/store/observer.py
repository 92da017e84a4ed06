"""Repository of the payment observer and the withdrawal memos (tables in `observer_tables`).

Every function works inside the caller's database transaction; none commits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import String, Table, bindparam, exists, func, insert, literal, or_
from sqlalchemy import select as sa_select
from sqlalchemy import update as sql_update
from sqlalchemy.sql import Insert, Select
from sqlalchemy.sql.elements import BindParameter
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.payments import ObservedPayment
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.store.db import insert_once
from anchorpay.store.observer_tables import (
    ObserverCursorRow,
    ObserverStateRow,
    UnmatchedPaymentRow,
    WithdrawalMemoRow,
)
from anchorpay.store.tables import TransactionRow
from anchorpay.store.transactions import from_row
from anchorpay.store.types import UTCDateTime

# ---- withdrawal memos -------------------------------------------------------------------


async def memo_for_transaction(
    session: AsyncSession, transaction_id: str, destination: str
) -> str | None:
    result = await session.exec(
        select(WithdrawalMemoRow.memo).where(
            WithdrawalMemoRow.transaction_id == transaction_id,
            WithdrawalMemoRow.destination == destination,
        )
    )
    return result.first()


async def memo_of_transaction(
    session: AsyncSession, transaction_id: str
) -> tuple[str, str, str] | None:
    """(destination, memo, memo_type) issued to `transaction_id`, if any (its first)."""
    result = await session.exec(
        select(WithdrawalMemoRow)
        .where(WithdrawalMemoRow.transaction_id == transaction_id)
        .order_by(col(WithdrawalMemoRow.created_at))
    )
    row = result.first()
    return (row.destination, row.memo, row.memo_type) if row is not None else None


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


async def check_memo(
    session: AsyncSession, transaction_id: str, destination: str, memo: str
) -> tuple[str | None, bool]:
    """The memo `transaction_id` already has for `destination` (or None), and whether `memo`
    was ever issued for `destination` or a transaction names it there (a memo the business
    chose with DEPOSIT_INFO_GENERATOR=none)."""
    memos, txs = _table("withdrawal_memos"), _table("sep24_transactions")
    existing = (
        sa_select(memos.c.memo)
        .where(memos.c.transaction_id == transaction_id, memos.c.destination == destination)
        .limit(1)
        .scalar_subquery()
    )
    issued = exists().where(memos.c.destination == destination, memos.c.memo == memo)
    named = exists().where(txs.c.to_account == destination, txs.c.memo == memo)
    query: Select[str | None, bool] = sa_select(existing, or_(issued, named))
    row = (await session.exec(query)).one()  # type: ignore[call-overload]
    return row[0], bool(row[1])


def _build_insert_memo() -> Insert:
    memos, txs = _table("withdrawal_memos"), _table("sep24_transactions")
    dest: BindParameter[str] = bindparam("dest", type_=String())
    memo: BindParameter[str] = bindparam("memo", type_=String())
    tx_id: BindParameter[str] = bindparam("tx_id", type_=String())
    now: BindParameter[datetime] = bindparam("now", type_=UTCDateTime())
    issued = exists().where(memos.c.destination == dest, memos.c.memo == memo)
    named = exists().where(txs.c.to_account == dest, txs.c.memo == memo)
    has_one = exists().where(memos.c.transaction_id == tx_id, memos.c.destination == dest)
    values = sa_select(dest, memo, literal("id"), tx_id, now).where(~issued, ~named, ~has_one)
    return insert(memos).from_select(
        ["destination", "memo", "memo_type", "transaction_id", "created_at"], values
    )


_INSERT_MEMO = _build_insert_memo()  # built once: it is on request_onchain_funds' path


async def try_insert_memo(
    session: AsyncSession, destination: str, memo: str, transaction_id: str, now: datetime
) -> bool:
    """One round trip: insert the memo unless it was ever issued for `destination`, a
    transaction names it there, or `transaction_id` already has a memo there (False then).
    Two servers racing with the same memo still meet the primary key (IntegrityError)."""
    params = {"dest": destination, "memo": memo, "tx_id": transaction_id, "now": now}
    result = await session.exec(_INSERT_MEMO, params=params)
    return bool(result.rowcount == 1)


async def insert_memo(
    session: AsyncSession,
    destination: str,
    memo: str,
    transaction_id: str,
    now: datetime,
    memo_type: str = "id",
) -> None:
    """Plain insert; the primary key (destination, memo) raises IntegrityError on reuse."""
    await session.exec(
        insert(WithdrawalMemoRow).values(
            destination=destination,
            memo=memo,
            memo_type=memo_type,
            transaction_id=transaction_id,
            created_at=now,
        )
    )


async def count_memos(session: AsyncSession) -> int:
    result = await session.exec(select(func.count()).select_from(WithdrawalMemoRow))
    return int(result.one())


# ---- cursors ----------------------------------------------------------------------------


async def get_cursor(session: AsyncSession, account: str) -> str | None:
    row = await session.get(ObserverCursorRow, account)
    return row.cursor if row is not None else None


async def claim_page(
    session: AsyncSession,
    account: str,
    old: str | None,
    new: str,
    count: int,
    now: datetime,
) -> bool:
    """Move the account's cursor from `old` to `new` (compare-and-set). False when another
    worker moved it first: the caller rolls back and re-reads. Done first in the page's
    transaction, it also serialises two workers on the same account (row or database lock)."""
    if old is None:
        if await session.get(ObserverCursorRow, account) is not None:
            return False
        session.add(
            ObserverCursorRow(account=account, cursor=new, payments_seen=count, updated_at=now)
        )
        await session.flush()  # a concurrent insert raises IntegrityError: the caller retries
        return True
    result = await session.exec(
        sql_update(ObserverCursorRow)
        .where(col(ObserverCursorRow.account) == account, col(ObserverCursorRow.cursor) == old)
        .values(
            cursor=new,
            payments_seen=ObserverCursorRow.payments_seen + count,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)


# ---- watched accounts and matching ----------------------------------------------------


async def open_withdrawal_accounts(session: AsyncSession) -> set[str]:
    """Every `to_account` named by a withdrawal waiting for the user's payment."""
    result = await session.exec(
        select(TransactionRow.to_account)
        .where(
            TransactionRow.kind == Kind.WITHDRAWAL.value,
            TransactionRow.status == Status.PENDING_USER_TRANSFER_START.value,
            col(TransactionRow.to_account).is_not(None),
        )
        .distinct()
    )
    return {a for a in result.all() if a}


async def withdrawals_by_memo(
    session: AsyncSession, destination: str, memos: Collection[str]
) -> list[Transaction]:
    """SEP-24 withdrawals, in any status, that told the user to pay `destination` with one
    of `memos`. Oldest first."""
    if not memos:
        return []
    result = await session.exec(
        select(TransactionRow)
        .where(
            TransactionRow.sep == "24",
            TransactionRow.kind == Kind.WITHDRAWAL.value,
            TransactionRow.to_account == destination,
            col(TransactionRow.memo).in_(list(memos)),
        )
        .order_by(col(TransactionRow.started_at), col(TransactionRow.id))
    )
    return [from_row(r) for r in result.all()]


# ---- unmatched payments ------------------------------------------------------------------


async def record_unmatched(
    session: AsyncSession,
    payment: ObservedPayment,
    account: str,
    reason: str,
    detail: str,
    now: datetime,
    transaction_id: str | None = None,
) -> bool:
    """Record a payment that credited nothing. False when it was recorded before."""
    if await session.get(UnmatchedPaymentRow, payment.id) is not None:
        return False
    session.add(
        UnmatchedPaymentRow(
            id=payment.id,
            paging_token=payment.paging_token,
            account=account,
            transaction_hash=payment.transaction_hash,
            source_account=payment.source_account,
            asset=payment.asset,
            amount=payment.amount,
            memo=payment.memo,
            memo_type=payment.memo_type,
            reason=reason,
            detail=detail,
            transaction_id=transaction_id,
            created_at=payment.created_at,
            recorded_at=now,
        )
    )
    await session.flush()
    return True


async def list_unmatched(
    session: AsyncSession, *, account: str | None = None, limit: int = 50, offset: int = 0
) -> Sequence[UnmatchedPaymentRow]:
    """Newest first."""
    query = select(UnmatchedPaymentRow)
    if account is not None:
        query = query.where(UnmatchedPaymentRow.account == account)
    query = (
        query.order_by(col(UnmatchedPaymentRow.recorded_at).desc(), col(UnmatchedPaymentRow.id))
        .offset(offset)
        .limit(limit)
    )
    return (await session.exec(query)).all()


# ---- observer state (health) ------------------------------------------------------------


async def get_state(session: AsyncSession) -> ObserverStateRow | None:
    return await session.get(ObserverStateRow, 1)


async def _state_row(session: AsyncSession) -> ObserverStateRow:
    """The one state row, created if missing: two workers' observers may both be first."""
    await insert_once(session, ObserverStateRow.__table__, {"id": 1})  # type: ignore[attr-defined]
    row = await session.get(ObserverStateRow, 1, populate_existing=True)
    assert row is not None
    return row


async def save_caught_up(
    session: AsyncSession, ledger: int, ledger_closed_at: datetime | None, now: datetime
) -> None:
    row = await _state_row(session)
    row.last_ledger = ledger
    row.last_ledger_closed_at = ledger_closed_at
    row.caught_up_at = now
    row.last_error = None
    row.last_error_at = None
    session.add(row)
    await session.flush()


async def save_error(session: AsyncSession, error: str, now: datetime) -> None:
    row = await _state_row(session)
    row.last_error = error[:500]
    row.last_error_at = now
    session.add(row)
    await session.flush()
