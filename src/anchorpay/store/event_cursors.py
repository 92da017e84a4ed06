"""Where each reader of the event feed has got to (the Kafka publisher): one row per reader,
the feed cursor of the last event it handed on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String, select, update
from sqlalchemy import Table as SaTable
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store.types import UTCDateTime

event_cursors = SaTable(
    "event_cursors",
    SQLModel.metadata,
    Column("name", String(64), primary_key=True),
    Column("cursor", String(64), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


async def get(session: AsyncSession, name: str) -> str | None:
    conn = await session.connection()
    row = await conn.execute(select(event_cursors.c.cursor).where(event_cursors.c.name == name))
    value: str | None = row.scalar_one_or_none()
    return value


async def save(session: AsyncSession, name: str, cursor: str, now: datetime) -> None:
    conn = await session.connection()
    moved = await conn.execute(
        update(event_cursors)
        .where(event_cursors.c.name == name)
        .values(cursor=cursor, updated_at=now)
    )
    if moved.rowcount == 0:
        await conn.execute(event_cursors.insert().values(name=name, cursor=cursor, updated_at=now))
