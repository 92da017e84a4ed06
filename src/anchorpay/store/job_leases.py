"""`job_leases`: which worker process runs each periodic job (Alembic revision 0006).

One row per job. A worker runs a job only while it holds that row's lease: it claims a free
or expired row, or renews its own, with one conditional write. A dead holder's lease expires
after its TTL and another worker takes the job over. Works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, or_, update
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store.db import insert_once
from anchorpay.store.types import UTCDateTime


class JobLeaseRow(SQLModel, table=True):
    __tablename__ = "job_leases"

    name: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=96)
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


_T = JobLeaseRow.__table__  # type: ignore[attr-defined]


async def hold(session: AsyncSession, name: str, owner: str, now: datetime, ttl_s: float) -> bool:
    """Claim or renew the lease of job `name` for `owner` until now + ttl. False when another
    owner holds a lease that has not expired."""
    until = now + timedelta(seconds=ttl_s)
    if await insert_once(session, _T, {"name": name, "owner": owner, "expires_at": until}):
        return True
    conn = await session.connection()
    result = await conn.execute(
        update(_T)
        .where(_T.c.name == name, or_(_T.c.owner == owner, _T.c.expires_at <= now))
        .values(owner=owner, expires_at=until)
    )
    return bool(result.rowcount == 1)


async def release_all(session: AsyncSession, owner: str) -> None:
    """Give up every lease of `owner` at once (a clean stop): no one waits for the TTL."""
    conn = await session.connection()
    await conn.execute(update(_T).where(_T.c.owner == owner).values(expires_at=_EPOCH))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
