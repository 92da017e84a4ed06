"""SQLite's pool (store/db.py) rolls a returned connection back only when a transaction is
still open on it: one opened behind SQLAlchemy's back is undone and leaves no lock behind."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, insert, select

from anchorpay.store.db import create_engine

ROWS = Table("rows", MetaData(), Column("n", Integer, primary_key=True))


async def test_a_connection_returned_in_a_transaction_is_rolled_back(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'reset.db'}", 0.3)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(ROWS.metadata.create_all)
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute("BEGIN IMMEDIATE")  # the write lock, unknown to SQLAlchemy
            await driver.execute("INSERT INTO rows (n) VALUES (1)")
            assert driver.in_transaction
        async with engine.begin() as conn:  # within the 0.3 s busy timeout: no lock left
            await conn.execute(insert(ROWS).values(n=2))
        async with engine.connect() as conn:
            assert (await conn.execute(select(ROWS.c.n))).scalars().all() == [2]
    finally:
        await engine.dispose()
