"""The sandbox's Horizon surface (mounted at /sandbox/horizon): the endpoints anchorpay's ledger
client uses, with Horizon's JSON, paging and problem shapes. Every request is counted and
passes the fault injector first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from anchorpay.sandbox import horizon_json as hj
from anchorpay.sandbox.network import Sandbox, TimedOut
from anchorpay.sandbox.state import OpRecord, Rejected

Handler = Callable[[Request], Awaitable[Response]]
MAX_LIMIT = 200


class BadRequest(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


def _json(body: Any, status: int = 200) -> JSONResponse:
    media = "application/problem+json" if status >= 400 else "application/hal+json"
    return JSONResponse(body, status_code=status, media_type=media)


def _base(request: Request) -> str:
    """This surface's own URL (for `_links`), whatever it is mounted under."""
    root = request.scope.get("root_path", "")
    return f"{request.url.scheme}://{request.url.netloc}{root}".rstrip("/")


def _paging(request: Request, default_limit: int = 10) -> dict[str, Any]:
    q = request.query_params
    order = q.get("order") or "asc"
    if order not in ("asc", "desc"):
        raise BadRequest("order", "order: must be asc or desc")
    try:
        limit = int(q.get("limit") or default_limit)
    except ValueError:
        raise BadRequest("limit", "limit: must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest("limit", f"limit: must be between 1 and {MAX_LIMIT}")
    cursor = q.get("cursor") or None
    if cursor is not None and cursor != "now" and not cursor.isdigit():
        raise BadRequest("cursor", "cursor: must be a paging token or now")
    return {"order": order, "limit": limit, "cursor": cursor}


def horizon_routes(sandbox: Sandbox) -> list[BaseRoute]:
    ledger = sandbox.ledger

    def guarded(route: str, handler: Handler, account_param: str | None = None) -> Handler:
        """Count the request, then let a fault answer it instead, then serve it."""

        async def endpoint(request: Request) -> Response:
            account = request.path_params.get(account_param) if account_param else None
            sandbox.count(route, account or "")
            status = sandbox.faults.failure_for(route, account)
            if status is not None:
                return _json(hj.problem(status), status)
            try:
                return await handler(request)
            except BadRequest as exc:
                extras = {"invalid_field": exc.field, "reason": exc.reason}
                return _json(hj.problem(400, "bad_request", extras), 400)

        return endpoint

    def not_found() -> JSONResponse:
        return _json(hj.problem(404), 404)

    def op_page(request: Request, records: list[OpRecord], params: dict[str, Any]) -> Response:
        base = _base(request)
        joined = request.query_params.get("join") == "transactions"
        rendered = [
            hj.operation(op, base, ledger.transactions.get(op.tx_hash) if joined else None)
            for op in records
        ]
        query = {"limit": str(params["limit"]), "order": params["order"]}
        if params["cursor"]:
            query["cursor"] = params["cursor"]
        if joined:
            query["join"] = "transactions"
        return _json(hj.page(rendered, str(request.url).split("?")[0], query))

    async def root(request: Request) -> Response:
        return _json(hj.root(ledger.latest, sandbox.network_passphrase, _base(request)))

    async def ledgers(request: Request) -> Response:
        p = _paging(request)
        headers = ledger.headers if p["order"] == "asc" else list(reversed(ledger.headers))
        if p["cursor"] == "now":
            headers = [] if p["order"] == "asc" else headers
        elif p["cursor"]:
            mark = int(p["cursor"])
            if p["order"] == "asc":
                headers = [h for h in headers if int(h.paging_token) > mark]
            else:
                headers = [h for h in headers if int(h.paging_token) < mark]
        base = _base(request)
        rendered = [hj.ledger(h, base) for h in headers[: p["limit"]]]
        query = {"limit": str(p["limit"]), "order": p["order"]}
        return _json(hj.page(rendered, f"{base}/ledgers", query))

    async def account(request: Request) -> Response:
        found = ledger.accounts.get(request.path_params["account_id"])
        return not_found() if found is None else _json(hj.account(found, _base(request)))

    def records_route(payments_only: bool, scope: str) -> Handler:
        async def handler(request: Request) -> Response:
            p = _paging(request)
            kwargs: dict[str, Any] = {}
            if scope == "account":
                kwargs["account"] = request.path_params["account_id"]
                if kwargs["account"] not in ledger.accounts:
                    return not_found()
            elif scope == "transaction":
                kwargs["tx_hash"] = request.path_params["tx_hash"]
                if kwargs["tx_hash"] not in ledger.transactions:
                    return not_found()
            include_failed = request.query_params.get("include_failed") == "true"
            records = ledger.records(
                payments_only=payments_only, include_failed=include_failed, **p, **kwargs
            )
            return op_page(request, records, p)

        return handler

    async def transaction(request: Request) -> Response:
        found = ledger.transactions.get(request.path_params["tx_hash"])
        return not_found() if found is None else _json(hj.transaction(found, _base(request)))

    async def submit(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        envelope = (form.get("tx") or [""])[0]
        if not envelope:
            raise BadRequest("tx", "tx: the form field tx must hold a base64 envelope")
        timeout_after_apply = sandbox.faults.take_timeout_after_apply()
        answer = await sandbox.submit(envelope)
        if isinstance(answer, TimedOut) or timeout_after_apply:
            return _json(hj.problem(504), 504)
        if isinstance(answer, Rejected):
            extras: dict[str, Any] = {"envelope_xdr": answer.envelope_xdr}
            if answer.malformed:
                return _json(hj.problem(400, "transaction_malformed", extras), 400)
            codes: dict[str, Any] = {"transaction": answer.transaction_code}
            if answer.operation_codes:
                codes["operations"] = list(answer.operation_codes)
            extras |= {"result_codes": codes, "hash": answer.hash}
            return _json(hj.problem(400, "transaction_failed", extras), 400)
        if not answer.successful:  # applied, operations failed: fee and sequence are spent
            codes = {"transaction": "tx_failed", "operations": list(answer.operation_codes)}
            extras = {"envelope_xdr": answer.envelope_xdr, "result_codes": codes}
            extras["hash"] = answer.hash
            return _json(hj.problem(400, "transaction_failed", extras), 400)
        return _json(hj.transaction(answer, _base(request)))

    account_id = "account_id"
    table: list[tuple[str, str, Handler, str | None]] = [
        ("GET", "/", root, None),
        ("GET", "/ledgers", ledgers, None),
        ("GET", "/accounts/{account_id}", account, account_id),
        ("GET", "/accounts/{account_id}/payments", records_route(True, "account"), account_id),
        ("GET", "/accounts/{account_id}/operations", records_route(False, "account"), account_id),
        ("POST", "/transactions", submit, None),
        ("GET", "/transactions/{tx_hash}", transaction, None),
        ("GET", "/transactions/{tx_hash}/payments", records_route(True, "transaction"), None),
        ("GET", "/transactions/{tx_hash}/operations", records_route(False, "transaction"), None),
        ("GET", "/payments", records_route(True, "all"), None),
        ("GET", "/operations", records_route(False, "all"), None),
    ]
    return [
        Route(path, guarded(route_key(method, path), handler, param), methods=[method])
        for method, path, handler, param in table
    ]


def route_key(method: str, path: str) -> str:
    """Counter and fault key in Horizon's placeholder style: "GET /accounts/{id}"."""
    return f"{method} {path.replace('{account_id}', '{id}').replace('{tx_hash}', '{hash}')}"
