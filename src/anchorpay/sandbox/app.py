"""Serving the sandbox network: the routes under /sandbox (developer routes) and
/sandbox/horizon (Horizon surface), for mounting into anchorpay's app or serving alone
(`anchorpay sandbox`) with a lifespan that runs the ledger-closing task."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from anchorpay.sandbox.dev_routes import dev_routes
from anchorpay.sandbox.horizon_routes import horizon_routes
from anchorpay.sandbox.network import Sandbox, SubmitAnswer, TimedOut


def sandbox_routes(sandbox: Sandbox) -> list[BaseRoute]:
    """Routes relative to the /sandbox mount point."""
    return [Mount("/horizon", routes=horizon_routes(sandbox)), *dev_routes(sandbox)]


def create_sandbox_app(sandbox: Sandbox) -> Starlette:
    """The sandbox alone, so the ledger outlives worker processes that tests kill."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sandbox.start()
        try:
            yield
        finally:
            await sandbox.stop()

    app = Starlette(routes=[Mount("/sandbox", routes=sandbox_routes(sandbox))], lifespan=lifespan)
    app.state.sandbox = sandbox
    return app


__all__ = ["Sandbox", "SubmitAnswer", "TimedOut", "create_sandbox_app", "sandbox_routes"]
