"""`GET /health` (open, no auth): is the service up and can it reach its database.

`{"status": "ok", "database": "ok"}` with 200; when the database does not answer,
`{"status": "unavailable", "database": "unavailable"}` with 503. The composition root hands
in the other members (payouts, observer) as named checks: no module-level registry.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from anchorpay.workflow import Services

log = logging.getLogger("anchorpay.health")

# (member name, check) pairs; a check returns its member and whether it is healthy.
HealthCheck = Callable[[Services], Awaitable[tuple[Any, bool]]]


async def database_ok(services: Services) -> bool:
    try:
        async with services.sessions() as session:
            # A real table: `SELECT 1` answers without touching the database file.
            await session.exec(text("SELECT count(*) FROM job_leases"))  # type: ignore[call-overload]
    except Exception as exc:
        log.warning("health: the database does not answer: %s", exc)
        return False
    return True


def routes(checks: Sequence[tuple[str, HealthCheck]] = ()) -> list[BaseRoute]:
    """`GET /health` with the database and each named check as a member."""

    async def health(request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        healthy = await database_ok(services)
        body: dict[str, Any] = {"status": "ok", "database": "ok" if healthy else "unavailable"}
        for name, check in checks:
            try:
                member, ok = await check(services)
            except Exception as exc:  # a member that cannot even be read is down, not a 500
                log.warning("health: %s could not be checked: %s", name, exc)
                member, ok = {"status": "unavailable"}, False
            body[name] = member
            healthy = healthy and ok
        if not healthy:
            body["status"] = "unavailable"
        return JSONResponse(body, status_code=200 if healthy else 503)

    return [Route("/health", health, methods=["GET"])]
