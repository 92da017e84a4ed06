"""The request guards in front of every route (ASGI middlewares, installed by `create_app`):

- `RequestLimits`: a body larger than `MAX_REQUEST_BYTES` is HTTP 413 before anything parses
  it (a `Content-Length` over the limit is refused before reading; otherwise the body is read
  in chunks and reading stops at the limit); a body declared with a `Content-Type` other than
  `application/json` (parameters such as `; charset=utf-8` accepted) is HTTP 415. A request
  without a `Content-Type` is read as JSON. The Fireblocks webhook keeps its own limit and
  signature checks and the sandbox (a simulated network taking Horizon's form posts) is not
  held to the content type.
- `CatchAll`: an exception no route handled is logged with its traceback and a reference,
  and answered HTTP 500 `{"error": "internal error", "reference": "<id>"}` (never a
  traceback). A last resort: routes answer their own errors. The one place where REST routes
  meet a database that cannot serve (locked, unreachable, read-only, full): HTTP 503 with
  `Retry-After` and `{"error": "temporarily unavailable, retry", "reference": "<id>"}`, one
  warning line without a traceback; the failed database transaction changed nothing.

Both answer JSON `{"error": "<sentence>"}` like the REST routes.
"""

from __future__ import annotations

import json
import logging
import uuid

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anchorpay.store.unavailable import (
    RETRY_AFTER_S,
    RETRY_MESSAGE,
    database_unavailable,
    describe,
)

log = logging.getLogger("anchorpay.api")

JSON_TYPE = "application/json"
WEBHOOK_PATH = "/webhooks/fireblocks"  # checked by its own size limit and signature
SANDBOX_PREFIX = "/sandbox"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _answer(
    send: Send, status: int, body: dict[str, str], headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def too_large_message(limit: int) -> str:
    return f"request body too large: at most {limit} bytes (MAX_REQUEST_BYTES)"


UNSUPPORTED_TYPE = "Content-Type must be application/json"


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class RequestLimits:
    """HTTP 413 for a body over the limit, 415 for a body that is not declared JSON."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == WEBHOOK_PATH:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type")
        in_sandbox = path == SANDBOX_PREFIX or path.startswith(SANDBOX_PREFIX + "/")
        if (
            content_type is not None
            and not in_sandbox
            and scope["method"] in _BODY_METHODS
            and media_type(content_type) != JSON_TYPE
        ):
            await _answer(send, 415, {"error": UNSUPPORTED_TYPE})
            return
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit() or not declared.isascii():
                await _answer(send, 400, {"error": "Content-Length must be a number of bytes"})
                return
            if int(declared) > self.max_bytes:
                await _answer(send, 413, {"error": too_large_message(self.max_bytes)})
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _answer(send, 413, {"error": too_large_message(self.max_bytes)})
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class CatchAll:
    """Any unhandled exception: a log line with the traceback and a reference, and a JSON 500
    carrying only that reference."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            reference = uuid.uuid4().hex[:16]
            if database_unavailable(exc):
                log.warning(
                    "%s %s: database unavailable (%s), reference %s; answered 503",
                    scope.get("method"),
                    scope.get("path"),
                    describe(exc),
                    reference,
                )
                if not started:
                    await _answer(
                        send,
                        503,
                        {"error": RETRY_MESSAGE, "reference": reference},
                        ((b"retry-after", str(RETRY_AFTER_S).encode()),),
                    )
                return
            log.exception(
                "unexpected error on %s %s, reference %s",
                scope.get("method"),
                scope.get("path"),
                reference,
            )
            if not started:
                await _answer(send, 500, {"error": "internal error", "reference": reference})


async def json_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (404 unknown path, 405 wrong method) as JSON like every other
    answer, keeping their headers (`Allow`)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
