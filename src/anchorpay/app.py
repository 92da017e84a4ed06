"""The Starlette application: the JSON-RPC endpoint, the REST routes, health, the embedded
sandbox network (STELLAR_NETWORK=sandbox) and, in the same process, the worker.

`create_app` checks the configuration at once (assets, auth) and raises ConfigError; the
lifespan migrates SQLite, starts the sandbox and the worker, and stops them in reverse order.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from anchorpay.adapters.ledger import LedgerClient, LedgerUnavailable
from anchorpay.api import health, payouts, transactions
from anchorpay.rpc.auth import PlatformAuth, build_check
from anchorpay.rpc.endpoint import rpc_route
from anchorpay.settings import Settings
from anchorpay.store import migrate
from anchorpay.store.db import create_engine, is_sqlite, session_factory
from anchorpay.workflow import Services

log = logging.getLogger("anchorpay")

# Route modules mounted when installed (each has `routes() -> list[BaseRoute]`).
OPTIONAL_ROUTE_MODULES = ("anchorpay.api.observer",)


def optional_module(name: str) -> ModuleType | None:
    """The module, or None when it is not installed (an error inside it still raises)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None
        raise


def safe_database_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class NoLedger:
    """Stands in when the Horizon client is not installed: every read is unavailable."""

    async def _unavailable(self, *_args: Any, **_kwargs: Any) -> Any:
        raise LedgerUnavailable("no ledger client is installed")

    get_account = get_transaction = submit = payments = latest_ledger = _unavailable

    async def aclose(self) -> None:
        return None


def default_ledger(settings: Settings) -> LedgerClient:
    module = optional_module("anchorpay.adapters.horizon")
    if module is None:
        log.warning("the Horizon client is not installed: ledger reads will fail")
        return NoLedger()
    client: LedgerClient = module.HorizonLedgerClient(
        settings.horizon_base_url(), settings.horizon_timeout_s
    )
    return client


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


def sandbox_distribution_secret() -> str:
    """The sandbox's own distribution account secret (public by design: sandbox only)."""
    return str(importlib.import_module("anchorpay.sandbox").SANDBOX_DISTRIBUTION_SECRET)


def build_sandbox(settings: Settings, services: Services) -> Any | None:
    """The embedded sandbox network, or None when it is off or not installed."""
    if not settings.sandbox_enabled:
        return None
    module = optional_module("anchorpay.sandbox.app")
    if module is None:
        log.warning("STELLAR_NETWORK=sandbox but the sandbox network is not installed")
        return None
    return module.Sandbox(
        assets=services.assets,
        network_passphrase=settings.network_passphrase,
        distribution_secret=sandbox_distribution_secret(),
        ledger_close_s=settings.sandbox_ledger_close_s,
    )


def create_app(
    settings: Settings, *, run_worker: bool = True, ledger: LedgerClient | None = None
) -> Starlette:
    assets = settings.load_assets()
    build_check(settings)  # refuse a bad auth configuration now, not at the first request
    engine = create_engine(settings.database_url)
    owns_ledger = ledger is None
    services = Services(
        settings=settings,
        assets=assets,
        sessions=session_factory(engine),
        ledger=ledger if ledger is not None else default_ledger(settings),
    )
    sandbox = build_sandbox(settings, services)

    routes: list[BaseRoute] = [rpc_route(), *transactions.routes(), *health.routes()]
    routes += payouts.routes()
    for name in OPTIONAL_ROUTE_MODULES:
        module = optional_module(name)
        if module is not None:
            routes += module.routes()
    if sandbox is not None:
        sandbox_module = importlib.import_module("anchorpay.sandbox.app")
        routes.append(Mount("/sandbox", routes=sandbox_module.sandbox_routes(sandbox)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if is_sqlite(settings.database_url):
            await migrate.upgrade(settings.database_url)
        log.info(
            "anchorpay serving on port %s: database %s, network %s, custody %s%s",
            settings.platform_server_port,
            safe_database_url(settings.database_url),
            settings.stellar_network,
            settings.effective_custody_type,
            "" if run_worker else " (no worker)",
        )
        worker = None
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            if owns_ledger:
                stack.push_async_callback(services.ledger.aclose)
            if sandbox is not None:
                await _maybe_await(sandbox.start())
                stack.push_async_callback(lambda: _maybe_await(sandbox.stop()))
            if run_worker:
                from anchorpay.scheduler.worker import Worker

                worker = Worker(services)
                await worker.start()
                stack.push_async_callback(worker.stop)
                services.wake_worker = worker.wake
            yield

    app = Starlette(
        routes=routes,
        middleware=[Middleware(PlatformAuth, settings=settings)],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.sandbox = sandbox
    return app
