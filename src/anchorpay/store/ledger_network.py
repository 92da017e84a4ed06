"""`ledger_network`: which Stellar network this database's ledger cursors and payouts belong
to (Alembic revision 0009_network_identity): the network passphrase and, when Horizon has it,
the genesis ledger's hash. One row, written at the first start and compared at every start.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, delete, func, select
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store.db import insert_once
from anchorpay.store.observer_tables import ObserverCursorRow, ObserverStateRow
from anchorpay.store.tables import TransactionRow
from anchorpay.store.types import UTCDateTime

# Cursors that are not ledger paging tokens (a custodian's own listing) survive a reset.
CUSTODIAN_CURSOR_PREFIX = "fireblocks:"


class LedgerNetworkRow(SQLModel, table=True):
    __tablename__ = "ledger_network"

    id: int = Field(default=1, primary_key=True)
    passphrase: str = Field(max_length=128)
    genesis_hash: str | None = Field(default=None, max_length=64)
    network_created_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


async def get(session: AsyncSession) -> LedgerNetworkRow | None:
    return await session.get(LedgerNetworkRow, 1)


async def record(
    session: AsyncSession,
    passphrase: str,
    genesis_hash: str | None,
    created_at: datetime | None,
    now: datetime,
) -> None:
    # Several processes may start on a new database at once: ON CONFLICT DO NOTHING, then
    # update the row whoever created it.
    table = LedgerNetworkRow.__table__  # type: ignore[attr-defined]
    await insert_once(session, table, {"id": 1, "passphrase": passphrase, "recorded_at": now})
    row = await session.get(LedgerNetworkRow, 1, populate_existing=True)
    assert row is not None
    row.passphrase, row.genesis_hash = passphrase, genesis_hash
    row.network_created_at, row.recorded_at = created_at, now
    session.add(row)
    await session.flush()


async def first_transaction_at(session: AsyncSession) -> datetime | None:
    """When the oldest transaction of this database was created (None without any)."""
    started = TransactionRow.__table__.c.started_at  # type: ignore[attr-defined]
    conn = await session.connection()
    value: datetime | None = (await conn.execute(select(func.min(started)))).scalar()
    return value


async def observed_ledger(session: AsyncSession) -> int | None:
    """The last ledger the payment observer was caught up with."""
    row = await session.get(ObserverStateRow, 1)
    return row.last_ledger if row is not None else None


async def forget(session: AsyncSession, passphrase: str, now: datetime) -> int:
    """Forget the network: its identity, the observer's ledger cursors and caught-up state,
    and accept the next network of `passphrase` whatever its genesis (the row stays, without
    a genesis hash, so older transactions do not count against the new network). Answers how
    many cursors were dropped. Transactions and payouts are kept."""
    cursors = ObserverCursorRow.__table__  # type: ignore[attr-defined]
    conn = await session.connection()
    dropped = await conn.execute(
        delete(cursors).where(~cursors.c.account.startswith(CUSTODIAN_CURSOR_PREFIX))
    )
    await conn.execute(delete(ObserverStateRow.__table__))  # type: ignore[attr-defined]
    await record(session, passphrase, None, None, now)
    return int(dropped.rowcount or 0)
