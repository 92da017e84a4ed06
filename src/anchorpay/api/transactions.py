"""The REST transaction routes (behind the platform API auth):

- `POST /transactions`: create a SEP-24 transaction in `incomplete` (201). A repeated create
  with the same `id` and body answers the stored transaction (200); a different body, 409.
- `GET /transactions/{id}`: the transaction object (spec/rpc.md §5.2), 404 when unknown.
- `GET /transactions?sep=24&order_by=created_at&order=asc&statuses=a,b&page_number=0&page_size=20`.
Bad input is HTTP 400 `{"error": "<exact reason>"}` and changes nothing: a body that is not
UTF-8 JSON nested at most 32 levels, a string holding NUL or a lone surrogate (the field is
named), a page past the limits.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from anchorpay.api.create_request import CreateError, CreateRequest, parse_create
from anchorpay.domain.errors import RpcError
from anchorpay.rpc.envelope import bad_string, decode_json
from anchorpay.rpc.methods.reads import ListQuery, list_transactions
from anchorpay.rpc.result import transaction_result
from anchorpay.store import transactions as repo
from anchorpay.workflow import Services


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def create_transaction(request: Request) -> JSONResponse:
    services = _services(request)
    try:
        body = decode_json(await request.body())
    except ValueError:
        return _error(400, "request body must be a JSON object")
    refused = bad_string(body)
    if refused is not None:
        return _error(400, refused)
    try:
        create = parse_create(
            body, services.assets, new_id=str(uuid.uuid4()), now=services.clock.now()
        )
    except CreateError as exc:
        return _error(400, str(exc))
    existing = await _existing(services, create)
    if existing is not None:
        return existing
    try:
        async with services.sessions() as session, session.begin():
            await repo.insert(session, create.transaction, create.fingerprint)
    except IntegrityError:  # a concurrent create with the same id won the insert
        existing = await _existing(services, create)
        if existing is not None:
            return existing
        raise
    return JSONResponse(transaction_result(create.transaction, services.assets), status_code=201)


async def _existing(services: Services, create: CreateRequest) -> JSONResponse | None:
    """The answer for an id that is already taken, or None when it is free."""
    if not create.client_chose_id:
        return None
    tx_id = create.transaction.id
    async with services.sessions() as session:
        stored = await repo.get(session, tx_id)
        if stored is None:
            return None
        fingerprint = await repo.get_fingerprint(session, tx_id)
    if fingerprint != create.fingerprint:
        return _error(409, f"transaction {tx_id} already exists with a different body")
    return JSONResponse(transaction_result(stored, services.assets), status_code=200)


async def get_transaction(request: Request) -> JSONResponse:
    services = _services(request)
    tx_id = request.path_params["transaction_id"]
    refused = bad_string(tx_id, "transaction_id")
    if refused is not None:
        return _error(400, refused)
    tx = await repo.read(services.sessions, tx_id)
    if tx is None:
        return _error(404, f"transaction {tx_id} not found")
    return JSONResponse(transaction_result(tx, services.assets))


async def list_transactions_route(request: Request) -> JSONResponse:
    services = _services(request)
    query = request.query_params
    values: dict[str, Any] = {k: query[k] for k in query if k != "statuses"}
    statuses = query.getlist("statuses")
    if statuses:
        values["statuses"] = ",".join(statuses)
    try:
        parsed = ListQuery.parse(values, from_query=True)
    except RpcError as exc:
        return _error(400, exc.message)
    return JSONResponse({"records": await list_transactions(services, parsed)})


def routes() -> list[BaseRoute]:
    return [
        Route("/transactions", create_transaction, methods=["POST"]),
        Route("/transactions", list_transactions_route, methods=["GET"]),
        Route("/transactions/{transaction_id}", get_transaction, methods=["GET"]),
    ]
