"""The sandbox Fireblocks' HTTP surface (mounted at /sandbox/fireblocks): the /v1 API of
docs/fireblocks-wire.md, every request counted and checked for its JWT first, plus the
developer routes. Errors are `{"message", "code"}` as Fireblocks answers them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from anchorpay.adapters.fireblocks.models import STATUSES
from anchorpay.sandbox.fireblocks import listings
from anchorpay.sandbox.fireblocks.auth import Unauthorized, request_uris
from anchorpay.sandbox.fireblocks.dev_routes import dev_routes
from anchorpay.sandbox.fireblocks.model import ApiError, bad_request
from anchorpay.sandbox.fireblocks.service import MAX_LIST_LIMIT, FireblocksSandbox

Handler = Callable[[Request, bytes], Awaitable[Any]]


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "code": code}, status_code=status)


def _json_body(raw: bytes) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise bad_request("The request body must be valid JSON") from None


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}")
    return int(text)


def api_routes(fb: FireblocksSandbox) -> list[BaseRoute]:
    def guarded(method: str, path: str, handler: Handler) -> Route:
        """Count, authenticate, then serve; the handler's value is the JSON answer."""
        route_key = f"{method} {path}"

        async def endpoint(request: Request) -> Response:
            fb.counters[route_key] += 1
            body = await request.body()
            try:
                fb.authenticate(
                    request.headers.get("x-api-key"),
                    request.headers.get("authorization"),
                    request_uris(request.scope),
                    body,
                )
            except Unauthorized as exc:
                return _error(401, -7, f"Unauthorized: {exc}")
            try:
                return JSONResponse(await handler(request, body))
            except ApiError as exc:
                return _error(exc.status, exc.code, exc.message)

        return Route(path, endpoint, methods=[method])

    async def create(request: Request, body: bytes) -> Any:
        key = request.headers.get("idempotency-key")
        return await fb.create_transfer(_json_body(body), key)

    async def one(request: Request, body: bytes) -> Any:
        return fb.get(request.path_params["tx_id"]).to_json()

    async def by_external_id(request: Request, body: bytes) -> Any:
        return fb.get_by_external_id(request.path_params["external_tx_id"]).to_json()

    async def listing(request: Request, body: bytes) -> Any:
        q = request.query_params
        after = _int_param(request, "after", -1, 0, 2**63 - 1)
        limit = _int_param(request, "limit", 200, 1, MAX_LIST_LIMIT)
        if q.get("orderBy", "createdAt") != "createdAt":
            raise bad_request("orderBy must be createdAt")
        sort = q.get("sort", "DESC")
        if sort not in ("ASC", "DESC"):
            raise bad_request("sort must be ASC or DESC")
        statuses = None
        if q.get("status"):
            statuses = q["status"].split(",")
            if any(s not in STATUSES for s in statuses):
                raise bad_request(f"status must be one of: {', '.join(STATUSES)}")
        found = fb.list_transactions(
            after=None if after < 0 else after,
            limit=limit,
            ascending=sort == "ASC",
            statuses=statuses,
        )
        return [tx.to_json() for tx in found]

    async def vault_account(request: Request, body: bytes) -> Any:
        return fb.vault_account(request.path_params["vault_id"])

    async def vault_asset(request: Request, body: bytes) -> Any:
        p = request.path_params
        return fb.vault_asset(p["vault_id"], p["asset_id"])

    async def new_address(request: Request, body: bytes) -> Any:
        p = request.path_params
        payload = _json_body(body)
        if not isinstance(payload, dict):
            raise bad_request("The request body must be a JSON object")
        description = payload.get("description", "")
        if not isinstance(description, str):
            raise bad_request("description must be a string")
        return fb.new_deposit_address(p["vault_id"], p["asset_id"], description)

    async def addresses(request: Request, body: bytes) -> Any:
        p = request.path_params
        return fb.vault_addresses(p["vault_id"], p["asset_id"])

    async def vaults_paged(request: Request, body: bytes) -> Any:
        return listings.accounts_paged(fb, request.query_params.get("assetId"))

    async def wallets(request: Request, body: bytes) -> Any:
        return listings.asset_wallets(fb, request.query_params.get("assetId"))

    vault = "/v1/vault/accounts/{vault_id}"
    return [
        guarded("POST", "/v1/transactions", create),
        guarded("GET", "/v1/transactions", listing),
        guarded("GET", "/v1/transactions/external_tx_id/{external_tx_id}", by_external_id),
        guarded("GET", "/v1/transactions/{tx_id}", one),
        guarded("GET", "/v1/vault/accounts_paged", vaults_paged),
        guarded("GET", "/v1/vault/asset_wallets", wallets),
        guarded("GET", vault, vault_account),
        guarded("GET", vault + "/{asset_id}", vault_asset),
        guarded("POST", vault + "/{asset_id}/addresses", new_address),
        guarded("GET", vault + "/{asset_id}/addresses_paginated", addresses),
    ]


def fireblocks_routes(fb: FireblocksSandbox) -> list[BaseRoute]:
    """Routes relative to the /sandbox/fireblocks mount point."""
    return [*api_routes(fb), *dev_routes(fb)]
