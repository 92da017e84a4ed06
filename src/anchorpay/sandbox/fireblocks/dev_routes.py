"""Developer routes of the sandbox Fireblocks (mounted at /sandbox/fireblocks, no JWT):
register API keys, inject and clear faults, change pacing and the webhook URL, read the
webhook outbox, the whole state and the webhook JWKS. Bad input answers 400 with
`{"error": "<sentence>"}`, like the sandbox network's developer routes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from anchorpay.sandbox.dev_routes import InputError, _body
from anchorpay.sandbox.faults import FaultError
from anchorpay.sandbox.fireblocks.service import FireblocksSandbox

MAX_STEP_S = 60.0


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _step(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 60:
        raise InputError("The field 'step_s' must be a number of seconds above 0, at most 60.")
    return float(value)


def _url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InputError("The field 'webhook_url' must be an http(s) URL or null.")
    return value


def dev_routes(fb: FireblocksSandbox) -> list[BaseRoute]:
    async def add_api_key(request: Request) -> Response:
        try:
            body = await _body(request)
            api_key = body.get("api_key")
            if not isinstance(api_key, str) or not api_key:
                raise InputError("The field 'api_key' must be a non-empty string.")
            pem = body.get("public_key_pem")
            if not isinstance(pem, str):
                raise InputError("The field 'public_key_pem' must be an RSA public key in PEM.")
            try:
                fb.register_api_key(api_key, pem)
            except ValueError:
                raise InputError(
                    "The field 'public_key_pem' must be an RSA public key in PEM."
                ) from None
        except InputError as exc:
            return _error(str(exc))
        return JSONResponse({"api_key": api_key}, status_code=201)

    async def add_fault(request: Request) -> Response:
        try:
            fb.faults.add(await _body(request))
        except (InputError, FaultError) as exc:
            return _error(str(exc))
        return Response(status_code=204)

    async def clear_faults(request: Request) -> Response:
        fb.faults.clear()
        return Response(status_code=204)

    async def settings(request: Request) -> Response:
        try:
            body = await _body(request)
            step_s = _step(body["step_s"]) if "step_s" in body else fb.step_s
            url = _url(body["webhook_url"]) if "webhook_url" in body else fb.webhook_url
        except InputError as exc:
            return _error(str(exc))
        fb.step_s, fb.webhook_url = step_s, url
        return JSONResponse({"step_s": fb.step_s, "webhook_url": fb.webhook_url})

    async def webhooks(request: Request) -> Response:
        return JSONResponse([event.to_json() for event in fb.outbox.events])

    async def state(request: Request) -> Response:
        return JSONResponse(fb.state())

    async def jwks(request: Request) -> Response:
        return JSONResponse(fb.signer.jwks())

    return [
        Route("/api_keys", add_api_key, methods=["POST"]),
        Route("/faults", add_fault, methods=["POST"]),
        Route("/faults", clear_faults, methods=["DELETE"]),
        Route("/settings", settings, methods=["POST"]),
        Route("/webhooks", webhooks, methods=["GET"]),
        Route("/state", state, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
    ]
