"""`ledger_hashes`: which transaction, for which purpose, holds each Stellar hash (Alembic
revision 0008). Written in the same database transaction as the record that holds it; the
primary key makes two transactions racing for one hash collide.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, select
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.hashes import Claim, HashPurpose, Holder
from anchorpay.store.db import insert_once
from anchorpay.store.tables import PayoutRow
from anchorpay.store.types import UTCDateTime


class LedgerHashRow(SQLModel, table=True):
    __tablename__ = "ledger_hashes"

    hash: str = Field(primary_key=True, max_length=128)
    transaction_id: str = Field(max_length=64, index=True)
    purpose: str = Field(max_length=16)  # HashPurpose
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


_T = LedgerHashRow.__table__  # type: ignore[attr-defined]
_P = PayoutRow.__table__  # type: ignore[attr-defined]


async def holder(session: AsyncSession, tx_hash: str) -> Holder | None:
    """Who holds `tx_hash`: a transaction's record first, else a payout's envelope (a payout
    in flight holds its hash before it is recorded on its transaction)."""
    conn = await session.connection()
    row = (
        await conn.execute(select(_T.c.transaction_id, _T.c.purpose).where(_T.c.hash == tx_hash))
    ).first()
    if row is not None:
        return Holder(transaction_id=row[0], purpose=HashPurpose(row[1]))
    payout = (
        await conn.execute(
            select(_P.c.transaction_id, _P.c.purpose, _P.c.id).where(_P.c.tx_hash == tx_hash)
        )
    ).first()
    if payout is not None:
        return Holder(transaction_id=payout[0], purpose=HashPurpose(payout[1]), payout_id=payout[2])
    return None


async def claim(session: AsyncSession, transaction_id: str, item: Claim, now: datetime) -> bool:
    """Record that `transaction_id` holds the hash; False when it was already recorded."""
    return await insert_once(
        session,
        _T,
        {
            "hash": item.hash,
            "transaction_id": transaction_id,
            "purpose": str(item.purpose),
            "recorded_at": now,
        },
    )
