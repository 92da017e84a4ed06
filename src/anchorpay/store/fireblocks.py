"""Repository of the Fireblocks integration (tables in `fireblocks_tables`).

Every function works inside the caller's database transaction; none commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store.fireblocks_tables import FireblocksEventRow, FireblocksIncomingRow


async def _insert_once(session: AsyncSession, table: Any, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING: True when this call inserted the row. A conflict does
    not abort the database transaction (unlike catching IntegrityError on PostgreSQL)."""
    conn = await session.connection()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing()
    result = await conn.execute(statement)
    return bool(result.rowcount == 1)


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
    return await _insert_once(
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
    return await _insert_once(
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
