"""Engine and sessions. SQLite gets WAL and a busy timeout so a server and workers can share it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import PoolResetState
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.store.writers import take_turns

SQLITE_MMAP_BYTES = 1 << 40  # asks for all of it; SQLite lowers it to its build's limit


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, busy_timeout_s: float = 30.0) -> AsyncEngine:
    """`busy_timeout_s`: how long a statement waits for another writer's lock before it fails
    (SQLite SQLITE_BUSY, PostgreSQL lock_timeout), answered "temporarily unavailable, retry"."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # The pool's reset below instead of its unconditional rollback-on-return.
        engine = create_async_engine(
            url, connect_args={"timeout": busy_timeout_s}, pool_reset_on_return=None
        )
        busy_ms = int(busy_timeout_s * 1000)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            # Read the file through the OS page cache mapped in, not a copy a page at a time
            # into a 2 MB cache: a deep get_transactions page walks 10^5-10^6 index entries
            # (2x faster).
            cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            cur.close()

        @event.listens_for(engine.sync_engine, "reset")
        def _rollback_if_open(dbapi_conn: Any, _record: Any, state: PoolResetState) -> None:
            # A connection back in the pool is rolled back only when a transaction is still
            # open: after a commit (every write) the rollback would be one more trip to the
            # connection's thread for nothing. sqlite3 knows without asking the database.
            if state.asyncio_safe and dbapi_conn.driver_connection.in_transaction:
                dbapi_conn.rollback()

        take_turns(engine, busy_timeout_s)  # after the reset above: the rollback comes first
        return engine
    # PostgreSQL: the same bound on waiting for a lock (lock_timeout, SQLSTATE 55P03). No JIT:
    # anchorpay's queries are index walks, which JIT cannot speed up, and the planner's cost
    # of a deep get_transactions page on a large table would buy it 10-100 ms of compiling.
    lock_ms = str(int(busy_timeout_s * 1000))
    server_settings = {"lock_timeout": lock_ms, "jit": "off"}
    return create_async_engine(
        url, pool_pre_ping=True, connect_args={"server_settings": server_settings}
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine `sessions` opens its sessions on (`session_factory`'s)."""
    engine = sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine), engine
    return engine


async def insert_once(session: AsyncSession, table: Any, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING in the session's transaction: True when this call
    inserted the row. Unlike catching IntegrityError, a conflict neither raises nor aborts
    the database transaction (PostgreSQL), so two workers racing to create a row both go on."""
    conn = await session.connection()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    result = await conn.execute(dialect.insert(table).values(**values).on_conflict_do_nothing())
    return bool(result.rowcount == 1)
