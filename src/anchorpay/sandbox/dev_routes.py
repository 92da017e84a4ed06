"""Developer routes of the sandbox (mounted at /sandbox): make funded accounts and trustlines,
pay from one (a wallet's signed payment), read the distribution account's key, close a
ledger, inject faults, read request counters.
Bad input answers 400 with `{"error": "<sentence>"}`, never a traceback."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from anchorpay.sandbox.faults import FaultError
from anchorpay.sandbox.horizon_json import time_str
from anchorpay.sandbox.network import Sandbox, TimedOut
from anchorpay.sandbox.state import Queued, Rejected
from anchorpay.sandbox.wallet import WalletInputError, parse_request

MAX_XLM = Decimal("100000000000")


class InputError(ValueError):
    """The message is the exact sentence for the caller."""


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise InputError("The body must be valid JSON.") from None
    if not isinstance(body, dict):
        raise InputError("The body must be a JSON object.")
    return body


def _xlm(value: Any) -> Decimal:
    sentence = (
        "The field 'xlm' must be an amount of XLM from 1 to 100000000000 with at most 7 "
        'decimals, such as "100".'
    )
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(sentence)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InputError(sentence) from None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not 1 <= amount <= MAX_XLM:
        raise InputError(sentence)
    if isinstance(exponent, int) and exponent < -7:
        raise InputError(sentence)
    return amount


def _asset(sandbox: Sandbox, value: Any, field: str) -> str:
    allowed = sandbox.credit_assets()
    if not isinstance(value, str) or value not in allowed:
        shown = value if isinstance(value, str) else json.dumps(value)
        choices = ", ".join(allowed) if allowed else "none are configured"
        raise InputError(
            f"The {field} {shown} is not a configured Stellar asset with an issuer; "
            f"use one of: {choices}."
        )
    return value


def dev_routes(sandbox: Sandbox) -> list[BaseRoute]:
    async def create_account(request: Request) -> Response:
        try:
            body = await _body(request)
            xlm = _xlm(body.get("xlm", "100"))
            trust = body.get("trust", [])
            if not isinstance(trust, list):
                raise InputError(
                    "The field 'trust' must be a list of asset ids such as [\"stellar:USDC:G…\"]."
                )
            assets = tuple(dict.fromkeys(_asset(sandbox, a, "trust asset") for a in trust))
        except InputError as exc:
            return _error(str(exc))
        keypair = sandbox.create_account(xlm, assets)
        return JSONResponse(
            {"account_id": keypair.public_key, "secret": keypair.secret}, status_code=201
        )

    async def add_trustline(request: Request) -> Response:
        account_id = request.path_params["account_id"]
        try:
            body = await _body(request)
            asset = _asset(sandbox, body.get("asset"), "asset")
            authorized = body.get("authorized", True)
            if not isinstance(authorized, bool):
                raise InputError("The field 'authorized' must be true or false.")
        except InputError as exc:
            return _error(str(exc))
        if account_id not in sandbox.ledger.accounts:
            return _error(f"The account {account_id} does not exist in the sandbox.", 404)
        created = sandbox.ledger.add_trustline(account_id, asset, authorized)
        return JSONResponse(
            {"account_id": account_id, "asset": asset, "authorized": authorized},
            status_code=201 if created else 200,
        )

    async def distribution(request: Request) -> Response:
        keypair = sandbox.distribution
        return JSONResponse({"account_id": keypair.public_key, "secret": keypair.secret})

    async def close_ledger(request: Request) -> Response:
        header = await sandbox.close_ledger()
        return JSONResponse({"ledger": header.sequence, "closed_at": time_str(header.closed_at)})

    async def add_fault(request: Request) -> Response:
        try:
            sandbox.faults.add(await _body(request))
        except (InputError, FaultError) as exc:
            return _error(str(exc))
        return Response(status_code=204)

    async def clear_faults(request: Request) -> Response:
        sandbox.faults.clear()
        return Response(status_code=204)

    async def pay(request: Request) -> Response:
        """Sign and submit a payment for a wallet: the hash once a ledger applied it (or at
        once with "wait": false), the ledger's result codes when it refused it."""
        try:
            body = await _body(request)
            wait = body.pop("wait", True)
            if not isinstance(wait, bool):
                raise InputError("The field 'wait' must be true or false.")
            payment = parse_request(body, sandbox.keys)
            outcome = await sandbox.pay(payment, wait)
        except (InputError, WalletInputError) as exc:
            return _error(str(exc))
        if isinstance(outcome, Queued):
            return JSONResponse({"hash": outcome.hash, "status": "queued"}, status_code=202)
        if isinstance(outcome, TimedOut):
            return JSONResponse(
                {
                    "error": f"No ledger applied the payment within {sandbox.submit_timeout_s:g}"
                    " s; it is still queued and may be applied later.",
                    "hash": outcome.hash,
                },
                status_code=504,
            )
        if isinstance(outcome, Rejected):
            codes: dict[str, Any] = {"transaction": outcome.transaction_code}
            if outcome.operation_codes:
                codes["operations"] = list(outcome.operation_codes)
            sentence = f"The ledger refused the payment: {outcome.transaction_code}"
            if outcome.operation_codes:
                sentence += f" ({', '.join(outcome.operation_codes)})"
            body = {"error": sentence + ".", "hash": outcome.hash, "result_codes": codes}
            return JSONResponse(body, status_code=400)
        if not outcome.successful:
            codes = {"transaction": "tx_failed", "operations": list(outcome.operation_codes)}
            sentence = f"The payment failed in ledger {outcome.ledger}: " + ", ".join(
                outcome.operation_codes
            )
            return JSONResponse(
                {
                    "error": sentence + ".",
                    "hash": outcome.hash,
                    "ledger": outcome.ledger,
                    "result_codes": codes,
                },
                status_code=400,
            )
        return JSONResponse({"hash": outcome.hash, "ledger": outcome.ledger, "successful": True})

    async def stats(request: Request) -> Response:
        return JSONResponse(sandbox.stats())

    return [
        Route("/accounts", create_account, methods=["POST"]),
        Route("/accounts/{account_id}/trustlines", add_trustline, methods=["POST"]),
        Route("/distribution", distribution, methods=["GET"]),
        Route("/payments", pay, methods=["POST"]),
        Route("/close_ledger", close_ledger, methods=["POST"]),
        Route("/faults", add_fault, methods=["POST"]),
        Route("/faults", clear_faults, methods=["DELETE"]),
        Route("/stats", stats, methods=["GET"]),
    ]
