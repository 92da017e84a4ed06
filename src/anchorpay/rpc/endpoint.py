"""`POST /`: the JSON-RPC endpoint (spec/rpc.md §1.1). HTTP 200 for every RPC outcome; 400
for a body that is not a request object or a batch of them. `GET /openrpc.json`: the OpenRPC
description of the same methods (what `rpc.discover` answers).

A database that cannot serve (locked past the busy timeout, unreachable, read-only, full) is
that element's -32603 "temporarily unavailable, retry": its database transaction failed, so
nothing changed and the same request can be sent again. The log line names the method, the
transaction and a reference."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from anchorpay.domain.errors import INTERNAL_ERROR, InternalError, RpcError
from anchorpay.rpc.envelope import BadBody, handle_body, new_reference
from anchorpay.rpc.openrpc import DISCOVER
from anchorpay.rpc.registry import ALL_METHODS, Registry
from anchorpay.store.unavailable import RETRY_MESSAGE, database_unavailable, describe
from anchorpay.workflow import Services

log = logging.getLogger("anchorpay.rpc")


def rpc_route(registry: Registry | None = None) -> Route:
    table = registry or Registry()

    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services

        async def dispatch(method: str, params: Any) -> Any:
            # A closed label set: the API's methods, rpc.discover, else "unknown".
            known = method if method in ALL_METHODS or method == DISCOVER else "unknown"
            with services.metrics.timed_rpc(known) as outcome:
                try:
                    return await call(method, params)
                except RpcError as exc:
                    outcome[0] = exc.code
                    raise
                except Exception:
                    outcome[0] = INTERNAL_ERROR
                    raise

        async def call(method: str, params: Any) -> Any:
            try:
                return await table.call(services, method, params)
            except RpcError:
                raise
            except Exception as exc:
                if not database_unavailable(exc):
                    raise  # the envelope logs it and answers "internal error, reference …"
                tx_id = params.get("transaction_id") if isinstance(params, dict) else None
                log.warning(
                    "RPC method %s (transaction %r): database unavailable (%s), reference %s; "
                    "answered -32603 retry",
                    method,
                    tx_id,
                    describe(exc),
                    new_reference(),
                )
                raise InternalError(RETRY_MESSAGE) from None

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
