"""A business server for the event tests: a small Starlette app, served by uvicorn on a real
socket, that verifies each callback with `anchorpay.events.verify_callback` and answers what
the test scripts (2xx by default; 500 to some, 410 to others), recording every attempt."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from anchorpay.events import InvalidCallback, verify_callback
from support.payout_fixtures import served

SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtZXZlbnQtdGVzdHMtMzItYnl0ZXM="

# The answer to one verified callback: (status, headers).
Script = Callable[[dict[str, Any], int], tuple[int, dict[str, str]]]


def always_ok(payload: dict[str, Any], attempt: int) -> tuple[int, dict[str, str]]:
    return 204, {}


@dataclass
class Attempt:
    event_id: str
    status: int
    at: float  # time.monotonic() when it arrived


@dataclass
class Receiver:
    secret: str = SECRET
    script: Script = always_ok
    attempts: list[Attempt] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # payloads answered 2xx
    invalid: int = 0  # callbacks whose signature or timestamp did not verify
    # Awaited before answering (a receiver that hangs on some callbacks).
    hold: Callable[[dict[str, Any], int], Awaitable[None]] | None = None

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/event", self._event, methods=["POST"])])

    async def _event(self, request: Request) -> Response:
        try:
            body = verify_callback(await request.body(), request.headers, self.secret)
        except InvalidCallback:
            self.invalid += 1
            return Response(status_code=401)
        payload: dict[str, Any] = body["payload"]
        tries = sum(1 for a in self.attempts if a.event_id == payload["id"])
        if self.hold is not None:
            await self.hold(payload, tries + 1)
        status, headers = self.script(payload, tries + 1)
        self.attempts.append(Attempt(payload["id"], status, time.monotonic()))
        if 200 <= status < 300:
            self.accepted.append(payload)
        return Response(status_code=status, headers=headers)

    def first_arrivals(self, transaction_id: str) -> list[dict[str, Any]]:
        """The accepted events of one transaction, each id once, in arrival order."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        for payload in self.accepted:
            if payload["transaction"]["id"] == transaction_id and payload["id"] not in seen:
                seen.add(payload["id"])
                out.append(payload)
        return out

    async def until_accepted(
        self, transaction_id: str, count: int, timeout_s: float = 20.0
    ) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout_s):
            while True:
                arrived = self.first_arrivals(transaction_id)
                if len(arrived) >= count:
                    return arrived
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver, port: int) -> AsyncIterator[str]:
    """`receiver` served on `port` (fixed, so it can go down and come back at one URL)."""
    async with served(receiver.app(), port) as base:
        yield base
