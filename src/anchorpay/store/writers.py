"""SQLite's writers of one process take turns in the event loop.

SQLite lets one connection write at a time. A connection that finds the write lock taken
polls it from its busy handler, sleeping 1, 2, 5, 10 … up to 100 ms between tries, so under
a backlog of RPC writes most of a write's time was spent asleep after the lock was free
(measured: a mean wait of ~230 ms for the first write of a `do_stellar_payment`). Here a
connection's first write of a transaction waits for this process's other writer to finish
on an asyncio lock instead, and goes as soon as that one commits or rolls back.

The turns only order writers of one process; another process (a worker, a second server)
still meets SQLite's own lock and busy timeout, as before. Reads never wait for a turn. A
writer that waited the busy timeout for its turn goes ahead without one and meets SQLite's
lock as before: a writer holding the database too long is still "temporarily unavailable,
retry", never a request that hangs."""

from __future__ import annotations

import asyncio
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_

# In the pooled connection's info from its transaction's first write: the lock it holds, or
# None when it went ahead without a turn (its later writes in the transaction do not wait).
_HOLDS = "anchorpay_writer"


async def _acquire(lock: asyncio.Lock, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            await lock.acquire()
    except TimeoutError:
        return False
    return True


class WriterTurns:
    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        # One lock per event loop (an asyncio.Lock belongs to the loop that waits on it).
        self._locks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            WeakKeyDictionary()
        )

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def take(self, info: dict[Any, Any]) -> None:
        """Before a connection's first write in its transaction (in SQLAlchemy's greenlet)."""
        if _HOLDS not in info:
            lock = self._lock()
            info[_HOLDS] = lock if await_(_acquire(lock, self._timeout_s)) else None

    def give_back(self, info: dict[Any, Any]) -> None:
        lock = info.pop(_HOLDS, None)
        if lock is not None:
            lock.release()


def _writes(context: Any, statement: str) -> bool:
    if context is not None and (context.isinsert or context.isupdate or context.isdelete):
        return True
    return statement.lstrip()[:7].upper().startswith(("INSERT", "UPDATE", "DELETE", "REPLACE"))


def take_turns(engine: AsyncEngine, timeout_s: float) -> None:
    """Install the turns on a SQLite engine; `timeout_s`: its busy timeout."""
    turns = WriterTurns(timeout_s)
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _before_write(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if _writes(context, statement):
            turns.take(conn.info)

    # Given back once the transaction is over: SQLAlchemy's commit and rollback events fire
    # before SQLite's COMMIT, which would let the next writer meet the lock (and sleep in the
    # busy handler) while the commit runs. A connection goes back to the pool right after its
    # commit or rollback (a session's, `engine.begin()`'s): the pool's reset gives the turn
    # back (after store/db.py's reset has rolled back a transaction still open). One kept
    # checked out gives it back when it begins its next transaction.
    @event.listens_for(sync_engine, "begin")
    def _begins(conn: Any) -> None:
        turns.give_back(conn.info)

    def _returned(record: Any) -> None:
        if record is not None:
            turns.give_back(record.info)

    @event.listens_for(sync_engine, "reset")
    def _reset(dbapi_conn: Any, record: Any, state: Any) -> None:
        _returned(record)

    @event.listens_for(sync_engine, "checkin")
    def _checkin(dbapi_conn: Any, record: Any) -> None:
        _returned(record)

    @event.listens_for(sync_engine, "invalidate")
    def _invalidate(dbapi_conn: Any, record: Any, exception: Any) -> None:
        _returned(record)
