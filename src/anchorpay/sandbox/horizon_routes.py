"""The sandbox's Horizon surface (mounted at /sandbox/horizon): what anchorpay's ledger client
and stellar-sdk's `Server` / `ServerAsync` call for the root, accounts, payments, operations,
transactions (by account, ledger, hash; submit, async submit), ledgers and fee stats, with
Horizon's JSON, paging (`cursor`, `order`, `limit`, `_links`) and problem+json shapes. Every
request is counted and passes the fault injector first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from anchorpay.sandbox import horizon_json as hj
from anchorpay.sandbox.network import Sandbox, TimedOut
from anchorpay.sandbox.paging import pick
from anchorpay.sandbox.results import result_xdr
from anchorpay.sandbox.state import BASE_FEE, OpRecord, Rejected, TxRecord, toid

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

    def page_query(request: Request, params: dict[str, Any]) -> dict[str, str]:
        """The query the page's `_links` repeat (filters included, so `next` keeps them)."""
        query = {"limit": str(params["limit"]), "order": params["order"]}
        if params["cursor"]:
            query["cursor"] = params["cursor"]
        for name in ("include_failed", "join"):
            if request.query_params.get(name):
                query[name] = request.query_params[name]
        return query

    def op_page(request: Request, records: list[OpRecord], params: dict[str, Any]) -> Response:
        base = _base(request)
        joined = request.query_params.get("join") == "transactions"
        rendered = [
            hj.operation(op, base, ledger.transactions.get(op.tx_hash) if joined else None)
            for op in records
        ]
        query = page_query(request, params)
        return _json(hj.page(rendered, str(request.url).split("?")[0], query))

    def tx_page(request: Request, records: list[TxRecord], params: dict[str, Any]) -> Response:
        rendered = [hj.transaction(t, _base(request)) for t in records]
        query = page_query(request, params)
        return _json(hj.page(rendered, str(request.url).split("?")[0], query))

    async def root(request: Request) -> Response:
        latest, passphrase = ledger.latest, sandbox.network_passphrase
        return _json(hj.root(latest, passphrase, _base(request), ledger.network_id))

    async def ledgers(request: Request) -> Response:
        p = _paging(request)
        found = pick(
            ledger.headers, lambda h: int(h.paging_token), now=toid(ledger.latest.sequence + 1),
            **p,
        )  # fmt: skip
        base = _base(request)
        query = {"limit": str(p["limit"]), "order": p["order"]}
        if p["cursor"]:
            query["cursor"] = p["cursor"]
        return _json(hj.page([hj.ledger(h, base) for h in found], f"{base}/ledgers", query))

    def _sequence(request: Request) -> int | None:
        raw = request.path_params["sequence"]
        return int(raw) if raw.isdigit() and len(raw) <= 10 else None

    async def one_ledger(request: Request) -> Response:
        sequence = _sequence(request)
        found = ledger.header(sequence) if sequence is not None else None
        return not_found() if found is None else _json(hj.ledger(found, _base(request)))

    async def account(request: Request) -> Response:
        found = ledger.accounts.get(request.path_params["account_id"])
        return not_found() if found is None else _json(hj.account(found, _base(request)))

    async def accounts(request: Request) -> Response:
        """GET /accounts?signer=G… or ?asset=CODE:ISSUER (sandbox accounts have one signer,
        their master key; sponsors and liquidity pools do not exist here)."""
        p = _paging(request)
        q = request.query_params
        filters = [k for k in ("signer", "asset", "sponsor", "liquidity_pool") if q.get(k)]
        if len(filters) != 1:
            raise BadRequest(
                "signer", "exactly one of signer, asset, sponsor or liquidity_pool is required"
            )
        if filters[0] == "signer":
            ids = [q["signer"]] if q["signer"] in ledger.accounts else []
        elif filters[0] == "asset":
            wanted = f"stellar:{q['asset']}"
            ids = sorted(a for a, s in ledger.accounts.items() if wanted in s.trustlines)
        else:
            ids = []
        if p["cursor"] == "now":
            raise BadRequest("cursor", "cursor: must be an account id")
        if p["order"] == "desc":
            ids.reverse()
        if p["cursor"]:
            after = p["cursor"]
            ids = [i for i in ids if (i > after if p["order"] == "asc" else i < after)]
        base = _base(request)
        rendered = [hj.account(ledger.accounts[i], base) for i in ids[: p["limit"]]]
        query = {"limit": str(p["limit"]), "order": p["order"], filters[0]: q[filters[0]]}
        return _json(hj.page(rendered, f"{base}/accounts", query))

    async def account_data(request: Request) -> Response:
        if request.path_params["account_id"] not in ledger.accounts:
            return not_found()
        return not_found()  # sandbox accounts hold no data entries

    def scope_of(request: Request, scope: str) -> dict[str, Any] | None:
        """The filter of a scoped collection, or None when its owner does not exist."""
        if scope == "account":
            found = request.path_params["account_id"]
            return {"account": found} if found in ledger.accounts else None
        if scope == "transaction":
            tx_hash = request.path_params["tx_hash"]
            return {"tx_hash": tx_hash} if tx_hash in ledger.transactions else None
        if scope == "ledger":
            sequence = _sequence(request)
            known = sequence is not None and ledger.header(sequence) is not None
            return {"ledger": sequence} if known else None
        return {}

    def _include_failed(request: Request) -> bool:
        raw = request.query_params.get("include_failed") or "false"
        if raw not in ("true", "false"):
            raise BadRequest("include_failed", "include_failed: must be true or false")
        return raw == "true"

    def records_route(payments_only: bool, scope: str) -> Handler:
        async def handler(request: Request) -> Response:
            p = _paging(request)
            kwargs = scope_of(request, scope)
            if kwargs is None:
                return not_found()
            records = ledger.records(
                payments_only=payments_only,
                include_failed=_include_failed(request),
                **p,
                **kwargs,
            )
            return op_page(request, records, p)

        return handler

    def transactions_route(scope: str) -> Handler:
        async def handler(request: Request) -> Response:
            p = _paging(request)
            kwargs = scope_of(request, scope)
            if kwargs is None:
                return not_found()
            records = ledger.transaction_records(
                include_failed=_include_failed(request), **p, **kwargs
            )
            return tx_page(request, records, p)

        return handler

    async def transaction(request: Request) -> Response:
        found = ledger.transactions.get(request.path_params["tx_hash"])
        return not_found() if found is None else _json(hj.transaction(found, _base(request)))

    async def operation(request: Request) -> Response:
        raw = request.path_params["op_id"]
        found = ledger.operation(int(raw)) if raw.isdigit() and len(raw) <= 19 else None
        if found is None:
            return not_found()
        joined = request.query_params.get("join") == "transactions"
        tx = ledger.transactions.get(found.tx_hash) if joined else None
        return _json(hj.operation(found, _base(request), tx))

    async def fee_stats(request: Request) -> Response:
        return _json(hj.fee_stats(ledger.latest, BASE_FEE))

    async def envelope_of(request: Request) -> str:
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        envelope = (form.get("tx") or [""])[0]
        if not envelope:
            raise BadRequest("tx", "tx: the form field tx must hold a base64 envelope")
        return envelope

    async def submit(request: Request) -> Response:
        envelope = await envelope_of(request)
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
            extras["result_xdr"] = result_xdr(answer.transaction_code)
            return _json(hj.problem(400, "transaction_failed", extras), 400)
        if not answer.successful:  # applied, operations failed: fee and sequence are spent
            codes = {"transaction": "tx_failed", "operations": list(answer.operation_codes)}
            extras = {"envelope_xdr": answer.envelope_xdr, "result_codes": codes}
            extras["hash"] = answer.hash
            extras["result_xdr"] = result_xdr("tx_failed", answer.fee_charged)
            return _json(hj.problem(400, "transaction_failed", extras), 400)
        return _json(hj.transaction(answer, _base(request)))

    async def submit_async(request: Request) -> Response:
        """Horizon's POST /transactions_async: stellar-core's verdict at once (PENDING 201,
        DUPLICATE 409, ERROR 400 with the result XDR); the ledger applies it later."""
        envelope = await envelope_of(request)
        status, outcome = sandbox.submit_async(envelope)
        if isinstance(outcome, Rejected) and outcome.malformed:
            extras = {"envelope_xdr": outcome.envelope_xdr}
            return _json(hj.problem(400, "transaction_malformed", extras), 400)
        error_xdr = None
        if isinstance(outcome, Rejected):
            error_xdr = result_xdr(outcome.transaction_code)
        http = {"PENDING": 201, "DUPLICATE": 409, "ERROR": 400}[status]
        body = hj.async_submission(status, outcome.hash, error_xdr)
        return JSONResponse(body, status_code=http, media_type="application/hal+json")

    account_id = "account_id"
    table: list[tuple[str, str, Handler, str | None]] = [
        ("GET", "/", root, None),
        ("GET", "/fee_stats", fee_stats, None),
        ("GET", "/ledgers", ledgers, None),
        ("GET", "/ledgers/{sequence}", one_ledger, None),
        ("GET", "/ledgers/{sequence}/transactions", transactions_route("ledger"), None),
        ("GET", "/ledgers/{sequence}/payments", records_route(True, "ledger"), None),
        ("GET", "/ledgers/{sequence}/operations", records_route(False, "ledger"), None),
        ("GET", "/accounts", accounts, None),
        ("GET", "/accounts/{account_id}", account, account_id),
        ("GET", "/accounts/{account_id}/data/{key}", account_data, account_id),
        ("GET", "/accounts/{account_id}/payments", records_route(True, "account"), account_id),
        ("GET", "/accounts/{account_id}/operations", records_route(False, "account"), account_id),
        (
            "GET",
            "/accounts/{account_id}/transactions",
            transactions_route("account"),
            account_id,
        ),
        ("GET", "/transactions", transactions_route("all"), None),
        ("POST", "/transactions", submit, None),
        ("POST", "/transactions_async", submit_async, None),
        ("GET", "/transactions/{tx_hash}", transaction, None),
        ("GET", "/transactions/{tx_hash}/payments", records_route(True, "transaction"), None),
        ("GET", "/transactions/{tx_hash}/operations", records_route(False, "transaction"), None),
        ("GET", "/payments", records_route(True, "all"), None),
        ("GET", "/operations", records_route(False, "all"), None),
        ("GET", "/operations/{op_id}", operation, None),
    ]
    return [
        Route(path, guarded(route_key(method, path), handler, param), methods=[method])
        for method, path, handler, param in table
    ]


def route_key(method: str, path: str) -> str:
    """Counter and fault key in Horizon's placeholder style: "GET /accounts/{id}"."""
    return f"{method} {path.replace('{account_id}', '{id}').replace('{tx_hash}', '{hash}')}"
