"""Shared fixtures: settings for a fresh database (a temp SQLite file, and again a fresh
PostgreSQL database when ANCHORPAY_TEST_POSTGRES_URL is set), and the app over httpx's ASGI
transport with its lifespan run (migrations included).

Migrating is the costly part of a fresh database, so it is done once per session
(support/databases.py): a fresh SQLite file "migrated" in process is a copy of a template
file Alembic made, and a PostgreSQL test's database is a copy of a migrated template made
ahead of time in a background thread. Under pytest-xdist (`make pytest` runs `-n 2`) each
worker process has its own templates and databases, all named with a random suffix.

By default the sandbox is off (STELLAR_NETWORK=testnet, HORIZON_URL unused, CUSTODY_TYPE=none),
the worker does not run, and the ledger is `FakeLedger`; a test asks for anything else.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.settings import Settings
from support.app import (
    CONFIG_DIR,
    POSTGRES_ENV,
    AppClient,
    ClientFactory,
    FakeLedger,
    SettingsFactory,
    _pg_admin,
)
from support.databases import PostgresClones, sqlite_templates

TIERS = ("unit", "integration", "e2e", "crash")


def pytest_configure(config: pytest.Config) -> None:
    os.environ["ANCHORPAY_CONFIG_DIR"] = str(CONFIG_DIR)
    # Subprocesses inherit this: the tests read their logs as text lines (LOG_FORMAT=auto
    # would be json off a terminal); the JSON format has tests of its own.
    os.environ.setdefault("LOG_FORMAT", "text")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries the marker of its tier folder (tests/unit, tests/integration, ...)."""
    for item in items:
        tier = next((part for part in item.path.parts if part in TIERS), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session", autouse=True)
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """In this process, `migrate.upgrade` of a SQLite file that does not exist yet copies a
    template Alembic migrated once (made on first use); an existing file is migrated as
    before. Processes a test starts migrate for themselves."""
    with sqlite_templates(lambda: tmp_path_factory.mktemp("sqlite-template")):
        yield


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[URL]:
    """A database migrated once per session; each test copies it (CREATE DATABASE … TEMPLATE)."""
    raw = os.environ.get(POSTGRES_ENV)
    if not raw:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV}=postgresql+asyncpg://user@host:port/db; "
            ".ci/run starts a throwaway cluster"
        )
    from anchorpay.store import migrate

    admin = make_url(raw)
    template = admin.set(database=f"anchorpay_tpl_{uuid.uuid4().hex[:12]}")
    _pg_admin(admin, f'CREATE DATABASE "{template.database}"')
    try:
        migrate.upgrade_sync(template.render_as_string(False))
        yield template
    finally:
        _pg_admin(admin, f'DROP DATABASE IF EXISTS "{template.database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_clones(postgres_template: URL) -> Iterator[PostgresClones]:
    """Fresh copies of `postgres_template`, made ahead in the background; dropped after use."""
    clones = PostgresClones(make_url(os.environ[POSTGRES_ENV]), postgres_template)
    try:
        yield clones
    finally:
        clones.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """This test's own empty, migrated-on-start (SQLite) or migrated (PostgreSQL) database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'anchorpay.db'}"
        return
    clones: PostgresClones = request.getfixturevalue("postgres_clones")
    name = clones.take()
    try:
        yield clones.url(name)
    finally:
        clones.give_back(name)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on this test's database (`db_url`), migrated; for repository tests."""
    from anchorpay.store.db import create_engine, session_factory
    from anchorpay.store.migrate import upgrade

    if db_url.startswith("sqlite"):
        await upgrade(db_url)
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def settings_factory(db_url: str) -> SettingsFactory:
    """Settings for this test: its own database, no dev.env, sandbox off; keywords win."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": db_url,
            "stellar_network": "testnet",
            "horizon_url": "http://horizon.invalid",
            "custody_type": "none",
            "assets_file": CONFIG_DIR / "assets.toml",
            "sandbox_state": ":memory:",  # a test that enables the sandbox keeps it in memory
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


@pytest.fixture
def client_factory(settings_factory: SettingsFactory, ledger: FakeLedger) -> ClientFactory:
    from anchorpay.app import create_app

    @contextlib.asynccontextmanager
    async def make(
        settings: Settings | None = None, *, run_worker: bool = False, **kwargs: Any
    ) -> AsyncIterator[AppClient]:
        extra = {"clock": kwargs["clock"]} if "clock" in kwargs else {}
        app = create_app(
            settings or settings_factory(),
            run_worker=run_worker,
            ledger=kwargs.get("ledger", ledger),
            **extra,
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with AppClient(transport=transport, base_url="http://anchorpay.test") as client:
                client.app = app
                yield client

    return make


@pytest.fixture
async def app_client(client_factory: ClientFactory) -> AsyncIterator[AppClient]:
    async with client_factory() as client:
        yield client
