"""The Starlette application: the JSON-RPC endpoint, the REST routes, health, the embedded
sandbox network (STELLAR_NETWORK=sandbox) and, in the same process, the worker.

`create_app` checks the configuration at once (assets, auth) and raises ConfigError; the
lifespan migrates SQLite, starts the sandbox and the worker, and stops them in reverse order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from anchorpay import network_guard, runtime
from anchorpay.adapters.ledger import LedgerClient, LedgerError, LedgerNetwork
from anchorpay.api import events, health, observer, payouts, transactions
from anchorpay.api import metrics as metrics_api
from anchorpay.api.limits import CatchAll, RequestLimits, json_http_error
from anchorpay.api.request_ids import RequestIds
from anchorpay.clock import SYSTEM, Clock
from anchorpay.domain.assets import AssetList
from anchorpay.rpc.auth import PlatformAuth, build_check
from anchorpay.rpc.endpoint import openrpc_route, rpc_route
from anchorpay.rpc.registry import Registry
from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET
from anchorpay.sandbox.app import Sandbox, is_open_route, sandbox_routes
from anchorpay.sandbox.persist import MEMORY, SandboxStateError
from anchorpay.settings import ConfigError, Settings
from anchorpay.store import migrate
from anchorpay.store.db import create_engine, is_sqlite, session_factory
from anchorpay.workflow import Services

if TYPE_CHECKING:
    from anchorpay.adapters.fireblocks.config import FireblocksConfig
    from anchorpay.api.fireblocks_webhooks import FireblocksWebhooks
    from anchorpay.sandbox.fireblocks.service import FireblocksSandbox

log = logging.getLogger("anchorpay")

WEBHOOK_PATH = "/webhooks/fireblocks"  # api/fireblocks_webhooks.py (imported only when used)


def safe_database_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def default_ledger(settings: Settings) -> LedgerClient:
    """Horizon (or the sandbox's Horizon surface) over HTTP."""
    from anchorpay.adapters.horizon import HorizonLedgerClient

    return HorizonLedgerClient(
        settings.horizon_base_url(),
        settings.horizon_timeout_s,
        network_passphrase=settings.network_passphrase,
    )


def build_sandbox(
    settings: Settings,
    assets: AssetList,
    clock: Clock = SYSTEM,
    *,
    is_the_ledger: bool | None = None,
) -> Sandbox | None:
    """The embedded sandbox network (STELLAR_NETWORK=sandbox), served under /sandbox. It keeps
    its ledger in SANDBOX_STATE when it is the ledger this process uses (by default: no
    HORIZON_URL points elsewhere; `anchorpay sandbox` always); else in memory, so that servers
    following another process's sandbox never touch that sandbox's file."""
    if not settings.sandbox_enabled:
        return None
    if is_the_ledger is None:
        is_the_ledger = not settings.horizon_url
    try:
        return Sandbox(
            assets=assets,
            network_passphrase=settings.network_passphrase,
            distribution_secret=SANDBOX_DISTRIBUTION_SECRET,
            ledger_close_s=settings.sandbox_ledger_close_s,
            clock=clock.now,
            state=settings.sandbox_state_path() if is_the_ledger else MEMORY,
        )
    except SandboxStateError as exc:
        raise ConfigError(str(exc)) from None


def sandbox_network(sandbox: Sandbox) -> LedgerNetwork:
    """The embedded sandbox's identity, read in process (its Horizon is not served yet)."""
    genesis, latest = sandbox.ledger.headers[0], sandbox.ledger.latest
    return LedgerNetwork(
        sandbox.network_passphrase, genesis.hash, genesis.closed_at, latest.sequence
    )


async def preflight(settings: Settings, sandbox: Sandbox | None) -> None:
    """Before `serve` or `worker` start anything: migrate SQLite, then check that the ledger
    is the network this database follows (`network_guard`: NetworkChanged, one line, when
    not). An unreachable Horizon is only a warning: the observer checks again at each run."""
    if is_sqlite(settings.database_url):
        await migrate.upgrade(settings.database_url)
    if sandbox is not None and not settings.horizon_url:
        current, source = sandbox_network(sandbox), f"the sandbox (state {sandbox.state})"
    else:
        source = f"Horizon at {settings.horizon_base_url()}"
        client = default_ledger(settings)
        try:
            current = await client.network()
        except (LedgerError, KeyError, ValueError) as exc:
            log.warning("cannot read which network %s is (%s); not checked", source, exc)
            return
        finally:
            await client.aclose()
    engine = create_engine(settings.database_url)
    try:
        await network_guard.check(session_factory(engine), current, source, SYSTEM.now())
    finally:
        await engine.dispose()


def build_sandbox_fireblocks(
    settings: Settings,
    sandbox: Sandbox | None,
    config: FireblocksConfig | None,
    *,
    standalone: bool = False,
    clock: Clock = SYSTEM,
) -> FireblocksSandbox | None:
    """The sandbox Fireblocks (under /sandbox/fireblocks) when the sandbox pays through
    Fireblocks: it knows the configured API key and sends its webhooks to this server (when
    served alone, to whatever `POST /sandbox/fireblocks/settings` names)."""
    if sandbox is None or config is None or (settings.fireblocks_base_url and not standalone):
        return None
    from cryptography.hazmat.primitives import serialization

    from anchorpay.sandbox.fireblocks.service import FireblocksSandbox

    fireblocks = FireblocksSandbox(
        sandbox,
        config.asset_ids,
        vault_account_id=config.vault_account_id,
        step_s=settings.sandbox_fireblocks_step_s,
        webhook_url=None if standalone else f"{settings.local_base_url()}{WEBHOOK_PATH}",
        clock=clock.time,
    )
    public_pem = config.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fireblocks.register_api_key(config.api_key, public_pem)
    return fireblocks


def build_fireblocks(services: Services, config: FireblocksConfig) -> FireblocksWebhooks:
    """The server's side of Fireblocks: webhooks, incoming transfers, deposit addresses."""
    from anchorpay.adapters.fireblocks import build_client
    from anchorpay.adapters.fireblocks.webhook_signature import WebhookVerifier
    from anchorpay.api.fireblocks_webhooks import FireblocksWebhooks
    from anchorpay.custody_deposit_info import FireblocksDepositAddresses
    from anchorpay.fireblocks_transfers import IncomingTransfers

    client = build_client(config, services.clock, services.metrics)
    if services.settings.deposit_info_generator == "custody":
        services.custody_deposit_info = FireblocksDepositAddresses(config, client)
    verifier = WebhookVerifier(
        legacy_key=config.webhook_key,
        jwks_url=config.jwks_url,
        timeout_s=config.timeout_s,
        clock=services.clock.monotonic,
    )
    return FireblocksWebhooks(services, verifier, IncomingTransfers(services, config, client))


def create_app(
    settings: Settings,
    *,
    run_worker: bool = True,
    ledger: LedgerClient | None = None,
    clock: Clock = SYSTEM,
) -> Starlette:
    """The composition root of `anchorpay serve`: everything is built here, once, and
    handed down (`Services`); `clock` is where every part of the process reads the time."""
    assets = settings.load_assets()
    build_check(settings)  # refuse a bad auth configuration now, not at the first request
    engine = create_engine(settings.database_url, settings.database_busy_timeout_s)
    owns_ledger = ledger is None
    services = Services(
        settings=settings,
        assets=assets,
        sessions=session_factory(engine),
        ledger=ledger if ledger is not None else default_ledger(settings),
        distribution_secret_default=runtime.distribution_secret_default(settings),
        clock=clock,
    )
    sandbox = build_sandbox(settings, assets, clock)
    if settings.effective_custody_type == "fireblocks":
        # Read and checked once, here: ConfigError now, not at a payout; the worker, the
        # webhooks and the incoming poll all use this one.
        services.fireblocks = runtime.load_fireblocks(settings, assets)
    fb_config = services.fireblocks
    fb_sandbox = build_sandbox_fireblocks(settings, sandbox, fb_config, clock=clock)
    hooks = build_fireblocks(services, fb_config) if fb_config is not None else None

    checks = [("payouts", payouts.payouts_check), ("observer", observer.observer_check)]
    registry = Registry()  # one method table for the RPC and its OpenRPC description
    routes: list[BaseRoute] = [rpc_route(registry), openrpc_route(registry)]
    routes += [*transactions.routes(), *health.routes(checks)]
    routes += [*payouts.routes(), *observer.routes(), *events.routes(), *metrics_api.routes()]
    if hooks is not None:
        routes += hooks.routes()
    if sandbox is not None:
        routes.append(Mount("/sandbox", routes=sandbox_routes(sandbox, fb_sandbox)))

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
                await sandbox.start()
                stack.push_async_callback(sandbox.stop)
            if fb_sandbox is not None:
                await fb_sandbox.start()
                stack.push_async_callback(fb_sandbox.stop)
            if hooks is not None:
                stack.push_async_callback(hooks.aclose)
            if run_worker:
                from anchorpay.scheduler.worker import Worker

                worker = Worker(services)
                await worker.start()
                stack.push_async_callback(worker.stop)
                services.wake_worker = worker.wake
            yield

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestIds),
            Middleware(CatchAll),
            Middleware(PlatformAuth, settings=settings, sandbox_open=is_open_route),
            Middleware(RequestLimits, max_bytes=settings.max_request_bytes),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: json_http_error},
    )
    # `/transactions/` is an unknown path (404 JSON), not a redirect with an empty body.
    app.router.redirect_slashes = False
    app.state.services = services
    app.state.sandbox = sandbox
    app.state.sandbox_fireblocks = fb_sandbox
    return app
