"""`POST /`: the JSON-RPC endpoint (spec/rpc.md §1.1). HTTP 200 for every RPC outcome; 400
for a body that is not a request object or a batch of them. `GET /openrpc.json`: the OpenRPC
description of the same methods (what `rpc.discover` answers)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from anchorpay.domain.errors import INTERNAL_ERROR, RpcError
from anchorpay.rpc.envelope import BadBody, handle_body
from anchorpay.rpc.openrpc import DISCOVER
from anchorpay.rpc.registry import ALL_METHODS, Registry
from anchorpay.workflow import Services


def rpc_route(registry: Registry | None = None) -> Route:
    table = registry or Registry()

    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services

        async def dispatch(method: str, params: Any) -> Any:
            # A closed label set: the API's methods, rpc.discover, else "unknown".
            known = method if method in ALL_METHODS or method == DISCOVER else "unknown"
            with services.metrics.timed_rpc(known) as outcome:
                try:
                    return await table.call(services, method, params)
                except RpcError as exc:
                    outcome[0] = exc.code
                    raise
                except Exception:
                    outcome[0] = INTERNAL_ERROR
                    raise

        body = await request.body()
        try:
            text = await handle_body(body, dispatch, services.settings.rpc_batch_size_limit)
        except BadBody as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return Response(text, media_type="application/json")

    return Route("/", endpoint, methods=["POST"], name="rpc")


def openrpc_route(registry: Registry) -> Route:
    async def endpoint(request: Request) -> Response:
        return JSONResponse(registry.description())

    return Route("/openrpc.json", endpoint, methods=["GET"], name="openrpc")
