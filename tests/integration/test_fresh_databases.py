"""The test suite's own fresh databases (tests/support/databases.py) are what a migration
makes: a SQLite file copied from the session's template has Alembic's schema and revision,
and a PostgreSQL database handed out again after a test is empty, its sequences restarted,
or is not handed out again at all."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import URL, make_url

from anchorpay.store import migrate
from support.app import POSTGRES_ENV
from support.databases import MIGRATE_EACH_ENV, PostgresClones


def schema(path: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    with sqlite3.connect(path) as db:
        objects = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        revision = [r[0] for r in db.execute("SELECT version_num FROM alembic_version")]
    return objects, revision


async def test_a_copied_sqlite_file_is_what_alembic_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied, migrated = tmp_path / "copied.db", tmp_path / "migrated.db"
    await migrate.upgrade(f"sqlite+aiosqlite:///{copied}")
    monkeypatch.setenv(MIGRATE_EACH_ENV, "1")  # Alembic itself, as without the template
    await migrate.upgrade(f"sqlite+aiosqlite:///{migrated}")
    assert schema(copied) == schema(migrated)
    assert schema(copied)[1] != []


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(False)


def sql(url: str, query: str) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(dsn(url))
        try:
            return [tuple(r) for r in await conn.fetch(query)]
        finally:
            await conn.close()

    return asyncio.run(run())


def until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.fixture
def clones(postgres_template: URL) -> Iterator[PostgresClones]:
    pool = PostgresClones(make_url(os.environ[POSTGRES_ENV]), postgres_template, ahead=1)
    try:
        yield pool
    finally:
        pool.close()


def test_a_used_postgres_database_comes_back_empty_or_not_at_all(clones: PostgresClones) -> None:
    used = clones.take()
    url = clones.url(used)
    sql(url, "INSERT INTO job_leases (name, owner, expires_at) VALUES ('x', 'w', now())")
    assert sql(url, "SELECT nextval('events_position_seq')") == [(1,)]
    loop = asyncio.new_event_loop()  # a connection the test leaves open: ended before reuse
    left_open = loop.run_until_complete(asyncpg.connect(dsn(url)))
    try:
        clones.give_back(used)
        until(lambda: clones.counts["recycled"] == 1)
    finally:
        left_open.terminate()
        loop.run_until_complete(asyncio.sleep(0.01))  # the socket closes
        loop.close()
    again = [clones.take(), clones.take()]
    assert used in again
    assert sql(url, "SELECT * FROM job_leases") == []
    assert sql(url, "SELECT nextval('events_position_seq')") == [(1,)]

    # A database whose shape a test changed is dropped, never handed out again.
    sql(url, "CREATE TABLE extra (id int)")
    for name in again:
        clones.give_back(name)
    until(lambda: clones.counts["dropped"] == 1 and clones.counts["recycled"] == 2)
    databases = sql(os.environ[POSTGRES_ENV], "SELECT datname FROM pg_database")
    assert (used,) not in databases
