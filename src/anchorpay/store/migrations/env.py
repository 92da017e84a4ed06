"""Alembic environment: runs the migrations over the async engine of DATABASE_URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from anchorpay.store import (
    event_cursors,  # noqa: F401
    event_tables,  # noqa: F401
    fireblocks_tables,  # noqa: F401
    job_leases,  # noqa: F401
    ledger_hashes,  # noqa: F401
    ledger_network,  # noqa: F401
    observer_tables,  # noqa: F401
    tables,  # noqa: F401  (registers the tables on the metadata)
)
from anchorpay.store.db import create_engine

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


url = context.config.get_main_option("sqlalchemy.url")
if url is None:
    raise RuntimeError("sqlalchemy.url is not set")
asyncio.run(_main(url))
