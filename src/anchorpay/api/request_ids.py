"""Every HTTP request gets a request id: the caller's `X-Request-Id` when it is a short
token, else a new one. It is echoed in the response's `X-Request-Id` and carried by every
log line the request causes (anchorpay.logs), including the worker's lines about a payout
the request recorded."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from anchorpay import logs

HEADER = "X-Request-Id"


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = logs.request_id_from(Headers(scope=scope).get(HEADER))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with logs.bind(request_id=request_id):
            await self.app(scope, receive, send_with_id)
