"""Serving the sandbox network: the routes under /sandbox (developer routes), /sandbox/horizon
(Horizon surface) and, when given one, /sandbox/fireblocks (the sandbox Fireblocks), for
mounting into anchorpay's app or serving alone (`anchorpay sandbox`) with a lifespan that runs
the ledger-closing task (and the sandbox Fireblocks' tasks)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from anchorpay.sandbox.dev_routes import dev_routes
from anchorpay.sandbox.horizon_routes import horizon_routes
from anchorpay.sandbox.network import Sandbox, SubmitAnswer, TimedOut

if TYPE_CHECKING:  # the Fireblocks modules load only when a sandbox Fireblocks is served
    from anchorpay.sandbox.fireblocks.service import FireblocksSandbox


def sandbox_routes(
    sandbox: Sandbox, fireblocks: FireblocksSandbox | None = None
) -> list[BaseRoute]:
    """Routes relative to the /sandbox mount point."""
    routes: list[BaseRoute] = [Mount("/horizon", routes=horizon_routes(sandbox))]
    if fireblocks is not None:
        from anchorpay.sandbox.fireblocks.routes import fireblocks_routes

        routes.append(Mount("/fireblocks", routes=fireblocks_routes(fireblocks)))
    return [*routes, *dev_routes(sandbox)]


# Open to anyone, as on a real network: the Horizon surface, the Fireblocks API (checked by
# its own RS256 JWT) and its webhook keys. Reads that reveal no secret stay open too.
_OPEN_PREFIXES = ("/horizon", "/fireblocks/v1")
_OPEN_READS = frozenset(
    {"/stats", "/fireblocks/state", "/fireblocks/webhooks", "/fireblocks/.well-known/jwks.json"}
)


def is_open_route(method: str, path: str) -> bool:
    """Whether a request (path relative to the /sandbox mount) needs no platform credentials.
    Every developer route that changes the network or reveals a secret (accounts and their
    keys, the distribution secret, faults, ledger closing, Fireblocks API keys and webhook
    URL) is not open: with platform auth on, it takes the API's credentials."""
    if any(path == p or path.startswith(p + "/") for p in _OPEN_PREFIXES):
        return True
    return method in ("GET", "HEAD") and path in _OPEN_READS


def create_sandbox_app(sandbox: Sandbox, fireblocks: FireblocksSandbox | None = None) -> Starlette:
    """The sandbox alone, so the ledger outlives worker processes that tests kill."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sandbox.start()
        try:
            if fireblocks is not None:
                await fireblocks.start()
            yield
        finally:
            if fireblocks is not None:
                await fireblocks.stop()
            await sandbox.stop()

    routes = [Mount("/sandbox", routes=sandbox_routes(sandbox, fireblocks))]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sandbox
    app.state.fireblocks = fireblocks
    return app


__all__ = [
    "Sandbox",
    "SubmitAnswer",
    "TimedOut",
    "create_sandbox_app",
    "is_open_route",
    "sandbox_routes",
]
