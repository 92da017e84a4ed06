"""Which database errors mean "the database cannot serve right now" (locked past the busy
timeout, unreachable, read-only, full, shutting down) as opposed to a bug or a lost race.

The callers map them in one place each: the RPC endpoint answers -32603 "temporarily
unavailable, retry", the REST catch-all answers HTTP 503 with `Retry-After`, and the worker
backs off. Nothing was committed in any of these cases: the database transaction failed.

SQLite in WAL mode refuses a writer whose read snapshot went stale with "database is locked"
as well, at once and without waiting: that one (SQLITE_BUSY_SNAPSHOT) is a lost race, a
concurrent modification, and `lost_race` tells it apart from a lock timeout (SQLITE_BUSY).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

# Extended SQLite result names (Python >= 3.11 sets `sqlite_errorname`), by prefix.
_SQLITE_UNAVAILABLE = (
    "SQLITE_BUSY",  # but not SQLITE_BUSY_SNAPSHOT, checked first
    "SQLITE_LOCKED",
    "SQLITE_READONLY",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_NOMEM",
    "SQLITE_PROTOCOL",
)
# PostgreSQL SQLSTATEs: connection exception, insufficient resources (disk full, too many
# connections), operator intervention (shutdown, cannot connect now), system error (I/O),
# lock_not_available (lock_timeout), read_only_sql_transaction (a standby).
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57P", "58")
_PG_UNAVAILABLE_STATES = frozenset({"55P03", "25006"})

_SA_UNAVAILABLE = (sa_exc.TimeoutError, sa_exc.InterfaceError, sa_exc.DisconnectionError)

RETRY_MESSAGE = "temporarily unavailable, retry"
RETRY_AFTER_S = 2


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what SQLAlchemy wrapped (`orig`) and its causes, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        orig = getattr(item, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, item.__cause__]


def lost_race(exc: BaseException) -> bool:
    """SQLite refused a writer because another one committed since it read."""
    return any(getattr(e, "sqlite_errorname", None) == "SQLITE_BUSY_SNAPSHOT" for e in _chain(exc))


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` (from a session, a connection or the pool) says the database cannot
    serve now, so the same request may succeed later."""
    if lost_race(exc):
        return False
    # Only what the database layer raised: an HTTP client's error may wrap an OSError too.
    top = type(exc).__module__
    if not (
        isinstance(exc, sa_exc.SQLAlchemyError | OSError)
        or top.startswith(("asyncpg", "sqlite3", "aiosqlite"))
    ):
        return False
    for item in _chain(exc):
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return True
        if isinstance(item, _SA_UNAVAILABLE):
            return True  # pool exhausted, the driver lost its connection
        if isinstance(item, OSError):
            return True  # asyncpg's connect: refused, reset, timed out, no route
        name = getattr(item, "sqlite_errorname", None)
        if isinstance(name, str) and name.startswith(_SQLITE_UNAVAILABLE):
            return True
        state = getattr(item, "sqlstate", None)
        if isinstance(state, str) and (
            state in _PG_UNAVAILABLE_STATES or state.startswith(_PG_UNAVAILABLE_CLASSES)
        ):
            return True
        if type(item).__module__.startswith("asyncpg") and type(item).__name__ in (
            "InterfaceError",
            "ConnectionDoesNotExistError",
            "InternalClientError",
        ):
            return True  # "connection is closed", "cannot perform operation: another ..."
    return False


def describe(exc: BaseException) -> str:
    """One short line for the logs: the driver's error name and first line, no SQL, no
    parameters (they may hold anything a caller sent)."""
    inner = exc
    for item in _chain(exc):
        inner = item  # the deepest: the driver's own error
    first = (str(inner).strip().splitlines() or [""])[0][:160]
    return f"{type(inner).__name__}: {first}" if first else type(inner).__name__
