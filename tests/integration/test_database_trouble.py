"""Database trouble is an answer, not a crash (issue 15 part 3): a locked, read-only, full or
unreachable database answers JSON-RPC -32603 "temporarily unavailable, retry" and REST 503
with `Retry-After`, changes nothing, and the same request succeeds once the trouble is gone.
A lock timeout is never "modified concurrently". Real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from anchorpay.app import create_app
from anchorpay.settings import Settings
from anchorpay.store.db import create_engine, session_factory
from support.app import CONFIG_DIR, POSTGRES_ENV, AppClient, FakeLedger, _pg_admin, deposit_body
from support.sandbox_fixtures import free_port

RETRY = "temporarily unavailable, retry"
BUSY_S = 0.3  # DATABASE_BUSY_TIMEOUT_S: a locked database answers within a second


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "database_busy_timeout_s": BUSY_S,
        "stellar_network": "testnet",
        "horizon_url": "http://horizon.invalid",
        "custody_type": "none",
        "assets_file": CONFIG_DIR / "assets.toml",
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[AppClient]:
    app = create_app(settings, run_worker=False, ledger=FakeLedger())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AppClient(transport=transport, base_url="http://anchorpay.test") as client:
            client.app = app
            yield client


def rpc_error_tx(tx_id: str, request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "notify_transaction_error",
        "params": {"transaction_id": tx_id, "message": "broken"},
    }


def assert_retry_rpc(answer: dict[str, Any], tx_id: str | None, request_id: int = 1) -> None:
    error: dict[str, Any] = {"code": -32603, "message": RETRY}
    if tx_id is not None:
        error = {"id": tx_id, **error}
    assert answer == {"jsonrpc": "2.0", "error": error, "id": request_id}


def assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "reference"}
    assert body["error"] == RETRY
    assert len(body["reference"]) == 16


async def snapshot(client: AppClient) -> list[tuple[str, str, str]]:
    listed = (await client.get("/transactions?page_size=200")).json()["records"]
    return sorted((t["id"], t["status"], json.dumps(t, sort_keys=True)) for t in listed)


async def writes_are_refused_then_retried(client: AppClient, caplog: Any) -> None:
    """With the trouble in place (reads still work): every write is refused exactly, nothing
    changes; the caller then lifts the trouble and retries."""
    tx_id = client.app.state.test_tx
    before = await snapshot(client)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anchorpay"):
        # a batch: the read answers, the write is that element's retry error
        batch = await client.rpc(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "get_transaction",
                 "params": {"transaction_id": tx_id}},
                rpc_error_tx(tx_id, 2),
            ]
        )  # fmt: skip
        assert batch.status_code == 200
        first, second = batch.json()
        assert first["result"]["status"] == "incomplete"
        assert_retry_rpc(second, tx_id, 2)
        assert_503(await client.post("/transactions", json=deposit_body()))
    assert await snapshot(client) == before
    text = caplog.text
    assert "modified concurrently" not in text and "Traceback" not in text
    assert "database unavailable" in text


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'anchorpay.db'}"


async def created(client: AppClient) -> str:
    answer = await client.post("/transactions", json=deposit_body())
    assert answer.status_code == 201
    tx_id: str = answer.json()["id"]
    client.app.state.test_tx = tx_id
    return tx_id


async def test_sqlite_locked(sqlite_url: str, caplog: Any) -> None:
    async with serving(settings_for(sqlite_url)) as client:
        tx_id = await created(client)
        holder = sqlite3.connect(make_url(sqlite_url).database or "", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the timeout
        try:
            await writes_are_refused_then_retried(client, caplog)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        again = (await client.rpc(rpc_error_tx(tx_id))).json()
        assert again["result"]["status"] == "error"


@contextlib.contextmanager
def swapped_sessions(client: AppClient, url: str, on_connect: Any = None) -> Iterator[None]:
    """The app's sessions on another engine over the same database file (read-only, or
    capped in size), for the block."""
    services = client.app.state.services
    engine = create_engine(url, BUSY_S)
    if on_connect is not None:
        event.listen(engine.sync_engine, "connect", on_connect)
    original = services.sessions
    services.sessions = session_factory(engine)
    try:
        yield
    finally:
        services.sessions = original


async def test_sqlite_read_only(sqlite_url: str, caplog: Any) -> None:
    path = make_url(sqlite_url).database
    async with serving(settings_for(sqlite_url)) as client:
        tx_id = await created(client)
        with swapped_sessions(client, f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"):
            await writes_are_refused_then_retried(client, caplog)
        again = (await client.rpc(rpc_error_tx(tx_id))).json()
        assert again["result"]["status"] == "error"


async def test_sqlite_full(sqlite_url: str) -> None:
    """The file may not grow: creates succeed while the last pages have room, then the first
    that needs a new page is 503, and what is stored is exactly what was answered 201."""
    path = make_url(sqlite_url).database or ""

    def cap(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA page_count")
        (pages,) = cur.fetchone()
        cur.execute(f"PRAGMA max_page_count={pages}")
        cur.close()

    async with serving(settings_for(sqlite_url)) as client:
        await created(client)
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        accepted = 1
        with swapped_sessions(client, sqlite_url, cap):
            for _ in range(300):
                answer = await client.post("/transactions", json=deposit_body())
                if answer.status_code != 201:
                    break
                accepted += 1
            assert_503(answer)
        assert len(await snapshot(client)) == accepted
        assert (await client.post("/transactions", json=deposit_body())).status_code == 201


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty, migrated PostgreSQL database of this test."""
    raw = os.environ.get(POSTGRES_ENV)
    if not raw:
        pytest.skip(f"needs {POSTGRES_ENV}")
    from anchorpay.store import migrate

    admin = make_url(raw)
    url = admin.set(database=f"t_{uuid.uuid4().hex}")
    _pg_admin(admin, f'CREATE DATABASE "{url.database}"')
    try:
        migrate.upgrade_sync(url.render_as_string(False))
        yield url.render_as_string(False)
    finally:
        _pg_admin(admin, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


async def test_postgres_locked_table(postgres_url: str, caplog: Any) -> None:
    """A lock held past lock_timeout (55P03): even reads wait for an ACCESS EXCLUSIVE lock."""
    import asyncpg  # type: ignore[import-untyped]

    async with serving(settings_for(postgres_url)) as client:
        tx_id = await created(client)
        before = await snapshot(client)
        holder = await asyncpg.connect(
            make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
        )
        try:
            await holder.execute("BEGIN; LOCK TABLE sep24_transactions IN ACCESS EXCLUSIVE MODE")
            with caplog.at_level(logging.WARNING, logger="anchorpay"):
                assert_retry_rpc((await client.rpc(rpc_error_tx(tx_id))).json(), tx_id)
                assert_503(await client.post("/transactions", json=deposit_body()))
                assert_503(await client.get(f"/transactions/{tx_id}"))
            await holder.execute("ROLLBACK")
        finally:
            await holder.close()
        assert await snapshot(client) == before
        assert "modified concurrently" not in caplog.text and "Traceback" not in caplog.text
        again = (await client.rpc(rpc_error_tx(tx_id))).json()
        assert again["result"]["status"] == "error"


async def test_postgres_read_only(postgres_url: str, caplog: Any) -> None:
    async with serving(settings_for(postgres_url)) as client:
        await created(client)
        services = client.app.state.services
        from sqlalchemy.ext.asyncio import create_async_engine

        read_only = create_async_engine(
            postgres_url,
            connect_args={"server_settings": {"default_transaction_read_only": "on"}},
        )
        original, services.sessions = services.sessions, session_factory(read_only)
        try:
            await writes_are_refused_then_retried(client, caplog)
        finally:
            services.sessions = original
            await read_only.dispose()


async def test_postgres_unreachable(caplog: Any) -> None:
    """Nothing listens on the port: every route that needs the database answers retry."""
    url = f"postgresql+asyncpg://anchorpay@127.0.0.1:{free_port()}/anchorpay"
    async with serving(settings_for(url)) as client:
        with caplog.at_level(logging.WARNING, logger="anchorpay"):
            tx_id = str(uuid.uuid4())
            batch = (await client.rpc([rpc_error_tx(tx_id, 1), rpc_error_tx(tx_id, 2)])).json()
            assert len(batch) == 2
            assert_retry_rpc(batch[0], tx_id, 1)
            assert_retry_rpc(batch[1], tx_id, 2)
            for path in ("/transactions", f"/transactions/{tx_id}", "/payouts"):
                assert_503(await client.get(path))
            assert_503(await client.post("/transactions", json=deposit_body()))
            health = await client.get("/health")
            assert health.status_code == 503
        lines = [r for r in caplog.records if "database unavailable" in r.getMessage()]
        assert len(lines) == 6  # one line per refused request (2 RPC, 4 REST), no traceback
        assert all(r.exc_info is None for r in lines)
        assert "ConnectionRefusedError" in lines[0].getMessage()
