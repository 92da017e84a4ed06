"""Fresh test databases without paying for a migration each time (used by tests/conftest.py).

SQLite: the first migration of a session runs Alembic into a template file; every later
`migrate.upgrade` of a SQLite file that does not exist yet copies that template instead of
running Alembic again (same revision, same bytes, ~10 ms instead of ~100-300 ms). A file that
exists is migrated by Alembic as before, so a test that builds an old schema itself still
migrates it for real.

PostgreSQL: each test's database is a copy of a template migrated once per session
(CREATE DATABASE … TEMPLATE), or such a copy another test used, emptied again (see
`PostgresClones`). A copy costs ~0.15-0.25 s of server time, emptying one tens of
milliseconds; both happen in a background thread while tests run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

# ANCHORPAY_TEST_MIGRATE_EACH=1: every fresh SQLite file is migrated by Alembic again (the
# old, slow way), e.g. to time or debug the migrations themselves.
MIGRATE_EACH_ENV = "ANCHORPAY_TEST_MIGRATE_EACH"


class SqliteTemplate:
    """Stands in for `anchorpay.store.migrate.upgrade_sync` during the tests (see above)."""

    def __init__(self, real: Callable[[str], None], directory: Callable[[], Path]) -> None:
        self.real = real
        self.directory = directory  # where the template goes, asked on first use
        self.path: Path | None = None
        self.lock = threading.Lock()
        self.copies = 0

    def template(self) -> Path:
        with self.lock:
            if self.path is None:
                path = self.directory() / "template.db"
                self.real(f"sqlite+aiosqlite:///{path}")
                for suffix in ("-wal", "-shm", "-journal"):  # everything is in the file
                    assert not Path(f"{path}{suffix}").exists(), f"{path}{suffix} left over"
                self.path = path
            return self.path

    def upgrade_sync(self, url: str) -> None:
        from anchorpay.store import migrate

        parsed = make_url(url)
        database = parsed.database
        if (
            os.environ.get(MIGRATE_EACH_ENV)
            or parsed.get_backend_name() != "sqlite"
            or not database
            or database == ":memory:"
            or database.startswith("file:")
        ):
            self.real(url)
            return
        target = Path(database)
        template = self.template()
        with migrate._one_at_a_time(url):  # the same lock the real upgrade takes
            if not _exists(target):
                partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.copy")
                shutil.copyfile(template, partial)
                os.replace(partial, target)  # whole or not at all
                self.copies += 1
                return
        self.real(url)


def _exists(database: Path) -> bool:
    return any(Path(f"{database}{suffix}").exists() for suffix in ("", "-wal", "-journal"))


@contextlib.contextmanager
def sqlite_templates(directory: Callable[[], Path]) -> Iterator[SqliteTemplate]:
    """`migrate.upgrade_sync` replaced by a `SqliteTemplate` until the block ends."""
    from anchorpay.store import migrate

    real = migrate.upgrade_sync
    stand_in = SqliteTemplate(real, directory)
    migrate.upgrade_sync = stand_in.upgrade_sync  # type: ignore[assignment]
    try:
        yield stand_in
    finally:
        migrate.upgrade_sync = real  # type: ignore[assignment]


class _Connection:
    """One asyncpg connection on an event loop of its own, for the pool's thread."""

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop) -> None:
        self.dsn = url.set(drivername="postgresql").render_as_string(False)
        self.loop = loop
        self.conn: Any = None

    def _run(self, method: str, statement: str, *args: Any) -> Any:
        import asyncpg  # type: ignore[import-untyped]

        async def run() -> Any:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(self.dsn)
            return await getattr(self.conn, method)(statement, *args)

        return self.loop.run_until_complete(run())

    def execute(self, statement: str, *args: Any) -> None:
        self._run("execute", statement, *args)

    def fetch(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._run("fetch", statement, *args)]

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(asyncio.wait_for(self.conn.close(), 10))
            self.conn = None


# Everything a test could change in a database besides the rows of its tables: schemas,
# relations (with their privileges), columns, constraints, indexes, triggers, functions, types
# and enum values, extensions, database settings, large objects, the Alembic revision.
_SYSTEM = "('pg_catalog', 'information_schema')"
_USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
    "AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%'"
)
_SHAPE = (
    f"SELECT 'schema', n.nspname, '', '' FROM pg_namespace n WHERE {_USER_SCHEMAS}",
    "SELECT 'relation', n.nspname || '.' || c.relname, c.relkind::text, "
    "coalesce(c.relacl::text, '') || c.relpersistence::text "
    f"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_SCHEMAS}",
    "SELECT 'column', n.nspname || '.' || c.relname || '.' || a.attname, "
    "format_type(a.atttypid, a.atttypmod), "
    "a.attnotnull::text || coalesce(pg_get_expr(d.adbin, d.adrelid), '') "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    f"WHERE a.attnum > 0 AND NOT a.attisdropped AND {_USER_SCHEMAS}",
    "SELECT 'constraint', n.nspname || '.' || c.conname, c.conrelid::regclass::text, "
    "pg_get_constraintdef(c.oid) "
    f"FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE {_USER_SCHEMAS}",
    "SELECT 'index', schemaname || '.' || indexname, tablename, indexdef FROM pg_indexes "
    f"WHERE schemaname NOT IN {_SYSTEM}",
    "SELECT 'trigger', t.tgname, t.tgrelid::regclass::text, t.tgenabled::text "
    "FROM pg_trigger t WHERE NOT t.tgisinternal",
    "SELECT 'function', n.nspname || '.' || p.proname, "
    "pg_get_function_identity_arguments(p.oid), md5(p.prosrc) "
    f"FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_SCHEMAS}",
    "SELECT 'sequence', schemaname || '.' || sequencename, coalesce(last_value::text, ''), "
    f"start_value::text FROM pg_sequences WHERE schemaname NOT IN {_SYSTEM}",
    "SELECT 'type', n.nspname || '.' || t.typname, t.typtype::text, '' "
    f"FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {_USER_SCHEMAS}",
    "SELECT 'enum', t.typname, e.enumlabel, e.enumsortorder::text "
    "FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid",
    "SELECT 'extension', extname, extversion, '' FROM pg_extension",
    "SELECT 'setting', coalesce(array_to_string(setconfig, ','), ''), '', '' "
    "FROM pg_db_role_setting WHERE setdatabase = "
    "(SELECT oid FROM pg_database WHERE datname = current_database())",
    "SELECT 'large objects', count(*)::text, '', '' FROM pg_largeobject_metadata",
    "SELECT 'policy', polname, polrelid::regclass::text, '' FROM pg_policy",
    "SELECT 'rule', rulename, tablename, definition FROM pg_rules "
    f"WHERE schemaname NOT IN {_SYSTEM}",
)


class PostgresClones:
    """Fresh databases like `template` (migrated, empty), `ahead` of them kept ready by a
    background thread: `take()` hands one out, `give_back()` returns it after the test.

    A returned database is made fresh again in the background rather than dropped: its
    other connections are ended, its tables emptied and its sequences restarted, and if its
    shape (see `_SHAPE`) is then exactly a fresh copy's it is handed out again (tens of
    milliseconds, where a copy of the template costs hundreds). Any difference (a test
    created a table, changed a setting, left a prepared transaction, ...) and it is dropped.
    `close()` drops every database it made."""

    def __init__(self, admin: URL, template: URL, ahead: int = 3) -> None:
        self.admin = admin
        self.template = template
        self.ahead = ahead
        self.ready: queue.Queue[str | BaseException] = queue.Queue()
        self.used: queue.Queue[str] = queue.Queue()
        self.made: set[str] = set()
        self.shape: list[tuple[Any, ...]] | None = None  # a fresh copy's, taken once
        self.tables: list[str] = []
        self.sequences: list[str] = []
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.counts = {"copied": 0, "recycled": 0, "dropped": 0}
        self.thread = threading.Thread(target=self._run, name="pg-clones", daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return self.template.set(database=name).render_as_string(False)

    def take(self, timeout_s: float = 120) -> str:
        """The name of a database like the template, for one test."""
        self.wake.set()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                found = self.ready.get(timeout=0.5)
                break
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError("the PostgreSQL test databases' thread stopped") from None
                if time.monotonic() > deadline:
                    raise TimeoutError("no PostgreSQL test database came ready") from None
        self.wake.set()
        if isinstance(found, BaseException):
            raise RuntimeError(f"could not make a PostgreSQL test database: {found!r}") from found
        return found

    def give_back(self, name: str) -> None:
        self.used.put(name)
        self.wake.set()

    # --- the background thread ----------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        admin = _Connection(self.admin, loop)
        try:
            while not self.stopping.is_set():
                self.wake.clear()
                try:
                    name = self.used.get_nowait()
                except queue.Empty:
                    name = None
                try:
                    if name is not None:
                        if self._recycle(admin, loop, name):
                            self.ready.put(name)
                        else:
                            self._drop(admin, name)
                    elif self.ready.qsize() < self.ahead:
                        self.ready.put(self._copy(admin, loop))
                    else:
                        self.wake.wait(0.5)
                except Exception as exc:  # the test that takes it reports it
                    self.ready.put(exc)
                    self.stopping.wait(1)
            # closing: drop every database made, handed out and returned or never taken
            while True:
                try:
                    left = self.ready.get_nowait()
                except queue.Empty:
                    break
                if isinstance(left, str):
                    self.used.put(left)
            while True:
                try:
                    self._drop(admin, self.used.get_nowait())
                except queue.Empty:
                    break
        finally:
            admin.close()
            loop.close()

    def _copy(self, admin: _Connection, loop: asyncio.AbstractEventLoop) -> str:
        name = f"t_{uuid.uuid4().hex}"
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template.database}"')
        self.made.add(name)
        self.counts["copied"] += 1
        if self.shape is None:
            fresh = _Connection(self.template.set(database=name), loop)
            try:
                self.shape = self._shape(fresh)
                tables = (
                    f"SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN {_SYSTEM}"
                )
                sequences = (
                    "SELECT schemaname, sequencename FROM pg_sequences "
                    f"WHERE schemaname NOT IN {_SYSTEM}"
                )
                self.tables = [
                    f'"{schema}"."{table}"'
                    for schema, table in fresh.fetch(tables)
                    if table != "alembic_version"
                ]
                self.sequences = [f'"{schema}"."{seq}"' for schema, seq in fresh.fetch(sequences)]
                if any(fresh.fetch(f"SELECT 1 FROM {table} LIMIT 1") for table in self.tables):
                    self.shape = []  # the template has rows: never recycle (TRUNCATE loses them)
            finally:
                fresh.close()
        return name

    @staticmethod
    def _shape(conn: _Connection) -> list[tuple[Any, ...]]:
        rows = conn.fetch(" UNION ALL ".join(f"({query})" for query in _SHAPE))
        rows += [("alembic", *r) for r in conn.fetch("SELECT version_num FROM alembic_version")]
        return sorted(rows, key=repr)

    def _recycle(self, admin: _Connection, loop: asyncio.AbstractEventLoop, name: str) -> bool:
        """Make `name` like a fresh copy again; False when it cannot be trusted to be."""
        if not self.shape:
            return False
        others = (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()"
        )
        deadline = time.monotonic() + 10
        while admin.fetch(others, name):  # ended: the test's connections, any process's
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        if admin.fetch("SELECT 1 FROM pg_prepared_xacts WHERE database = $1", name):
            return False
        conn = _Connection(self.template.set(database=name), loop)
        try:
            # Emptied first, then compared whole: a dropped table fails here, an added one
            # (or any other change) differs below. DELETE, not TRUNCATE: the same empty
            # tables at a tenth of the cost; TRUNCATE if foreign keys need an order.
            restart = [f"ALTER SEQUENCE {seq} RESTART" for seq in self.sequences]
            try:
                conn.execute("; ".join([*(f"DELETE FROM {t}" for t in self.tables), *restart]))
            except Exception:
                conn.execute("; ".join([f"TRUNCATE {', '.join(self.tables)}", *restart]))
            if self._shape(conn) != self.shape:
                return False
        except Exception:
            return False
        finally:
            conn.close()
        self.counts["recycled"] += 1
        return True

    def _drop(self, admin: _Connection, name: str) -> None:
        with contextlib.suppress(Exception):  # a leftover is only disk space
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.made.discard(name)
            self.counts["dropped"] += 1

    def close(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(120)
