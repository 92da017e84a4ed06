"""`GET /health` (open, no auth): is the service up and can it reach its database.

`{"status": "ok", "database": "ok"}` with 200; when the database does not answer,
`{"status": "unavailable", "database": "unavailable"}` with 503. Other parts of the service
add their own members through `HEALTH_CHECKS`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from anchorpay.workflow import Services

log = logging.getLogger("anchorpay.health")

# (member name, check) pairs; a check returns its member and whether it is healthy.
HealthCheck = Callable[[Services], Awaitable[tuple[Any, bool]]]
HEALTH_CHECKS: list[tuple[str, HealthCheck]] = []


async def database_ok(services: Services) -> bool:
    try:
        async with services.sessions() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as exc:
        log.warning("health: the database does not answer: %s", exc)
        return False
    return True


async def health(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    healthy = await database_ok(services)
    body: dict[str, Any] = {"status": "ok", "database": "ok" if healthy else "unavailable"}
    for name, check in HEALTH_CHECKS:
        member, ok = await check(services)
        body[name] = member
        healthy = healthy and ok
    if not healthy:
        body["status"] = "unavailable"
    return JSONResponse(body, status_code=200 if healthy else 503)


def routes() -> list[BaseRoute]:
    return [Route("/health", health, methods=["GET"])]
