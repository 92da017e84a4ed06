"""Repository of the Fireblocks integration (tables in `fireblocks_tables`).

Every function works inside the caller's database transaction; none commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store.db import insert_once
from anchorpay.store.fireblocks_tables import FireblocksEventRow, FireblocksIncomingRow


async def record_event(
    session: AsyncSession,
    event_id: str,
    event_type: str,
    resource_id: str | None,
    external_tx_id: str | None,
    status: str | None,
    now: datetime,
) -> bool:
    """Record a webhook event id; False when it was already recorded (a replay)."""
    return await insert_once(
        session,
        FireblocksEventRow.__table__,  # type: ignore[attr-defined]
        {
            "id": event_id,
            "event_type": event_type[:64],
            "resource_id": resource_id,
            "external_tx_id": external_tx_id,
            "status": status,
            "received_at": now,
        },
    )


async def incoming_seen(session: AsyncSession, fireblocks_id: str) -> bool:
    return await session.get(FireblocksIncomingRow, fireblocks_id) is not None


async def record_incoming(
    session: AsyncSession,
    fireblocks_id: str,
    tx_hash: str,
    outcome: str,
    transaction_id: str | None,
    now: datetime,
) -> bool:
    """Record the decision on an incoming transfer; False when another writer recorded it
    first (the caller's database transaction must then roll back its effects)."""
    return await insert_once(
        session,
        FireblocksIncomingRow.__table__,  # type: ignore[attr-defined]
        {
            "id": fireblocks_id,
            "tx_hash": tx_hash,
            "outcome": outcome,
            "transaction_id": transaction_id,
            "recorded_at": now,
        },
    )


async def last_event_at(session: AsyncSession) -> datetime | None:
    """When the newest webhook event was received (health)."""
    table = FireblocksEventRow.__table__  # type: ignore[attr-defined]
    conn = await session.connection()
    result = await conn.execute(select(func.max(table.c.received_at)))
    value: datetime | None = result.scalar_one_or_none()
    return value
