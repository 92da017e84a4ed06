"""`ledger_hashes`: which transaction, for which purpose, holds each Stellar hash (Alembic
revisions 0008, 0013). Written in the same database transaction as the record that holds it.
A hash is held by one transaction, except a batch anchorpay paid (one envelope, one payment
operation per payout): each transaction whose payout's envelope it is holds it too
(`holder(..., transaction_id)` says so), so the key is (hash, transaction).
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
    transaction_id: str = Field(primary_key=True, max_length=64, index=True)
    purpose: str = Field(max_length=16)  # HashPurpose
    recorded_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


_T = LedgerHashRow.__table__  # type: ignore[attr-defined]
_P = PayoutRow.__table__  # type: ignore[attr-defined]


async def holder(session: AsyncSession, tx_hash: str, transaction_id: str) -> Holder | None:
    """Who holds `tx_hash`, as `transaction_id` should see it: its own payout's envelope or
    record first (a batch's hash is each of its transactions' own), else another
    transaction's record, else another payout's envelope (a payout in flight holds its hash
    before it is recorded on its transaction)."""
    conn = await session.connection()
    mine = (
        await conn.execute(
            select(_P.c.transaction_id, _P.c.purpose, _P.c.id).where(
                _P.c.tx_hash == tx_hash, _P.c.transaction_id == transaction_id
            )
        )
    ).first()
    rows = (
        await conn.execute(
            select(_T.c.transaction_id, _T.c.purpose)
            .where(_T.c.hash == tx_hash)
            .order_by((_T.c.transaction_id == transaction_id).desc())
        )
    ).all()
    own_record = [r for r in rows if r[0] == transaction_id]
    if own_record:
        return Holder(transaction_id=own_record[0][0], purpose=HashPurpose(own_record[0][1]))
    if mine is not None:
        return Holder(transaction_id=mine[0], purpose=HashPurpose(mine[1]), payout_id=mine[2])
    if rows:
        return Holder(transaction_id=rows[0][0], purpose=HashPurpose(rows[0][1]))
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
