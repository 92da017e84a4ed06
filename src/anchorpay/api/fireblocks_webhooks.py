"""`POST /webhooks/fireblocks`: Fireblocks' events, verified, recorded once, used as nudges.

1. The signature is checked on the raw request bytes (`Fireblocks-Webhook-Signature`, a
   detached JWS from Fireblocks' JWKS, or the legacy `Fireblocks-Signature`). Missing or
   wrong: 401 and nothing changes. The JWKS unreachable: 503, so Fireblocks retries.
2. The event id is recorded in `fireblocks_events`; a replay answers 200 and does nothing.
3. The event's content is NOT trusted as state: an outgoing payout it names is made due at
   once (the worker then asks Fireblocks and applies what Fireblocks says now), and an
   incoming transfer is fetched from Fireblocks before anything is credited. So duplicated,
   replayed or out-of-order events can never move a payout backwards or pay twice.

Fireblocks needs a quick 2xx; everything here is one database write and at most one GET.
A failure after the event is recorded is covered by the worker's poll.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from anchorpay.adapters.fireblocks.webhook_signature import (
    BadSignature,
    VerifierUnavailable,
    WebhookVerifier,
)
from anchorpay.fireblocks_transfers import IncomingTransfers
from anchorpay.store import fireblocks as fb_store
from anchorpay.store import payouts
from anchorpay.workflow import Services

log = logging.getLogger("anchorpay.fireblocks")

PATH = "/webhooks/fireblocks"  # also app.WEBHOOK_PATH
MAX_BODY = 1_000_000


class FireblocksWebhooks:
    def __init__(
        self, services: Services, verifier: WebhookVerifier, incoming: IncomingTransfers
    ) -> None:
        self.services = services
        self.verifier = verifier
        self.incoming = incoming

    async def aclose(self) -> None:
        await self.verifier.aclose()
        await self.incoming.aclose()

    async def receive(self, request: Request) -> JSONResponse:
        outcome, answer = await self._receive(request)
        self.services.metrics.fireblocks_webhooks.labels(outcome).inc()
        return answer

    async def _receive(self, request: Request) -> tuple[str, JSONResponse]:
        """The answer, and its outcome for the webhooks metric."""
        body = await request.body()
        if len(body) > MAX_BODY:
            return "too_large", _answer(413, error="The event is too large")
        try:
            scheme = await self.verifier.verify(body, request.headers)
        except BadSignature as exc:
            log.warning("fireblocks webhook refused: %s", exc)
            return "bad_signature", _answer(401, error="Invalid or missing Fireblocks signature")
        except VerifierUnavailable as exc:
            log.warning("fireblocks webhook not verifiable now: %s", exc)
            return "unverifiable", _answer(503, error="The signature cannot be verified now; retry")
        event = _parse(body)
        if event is None:
            return "bad_body", _answer(
                400, error="The body must be a JSON object with a 'data' object"
            )
        now = self.services.clock.now()
        external = event.external_tx_id
        async with self.services.sessions() as session, session.begin():
            first = await fb_store.record_event(
                session, event.id, event.type, event.resource, external, event.status, now
            )
            nudged = first and external is not None and await payouts.nudge(session, external, now)
        if not first:
            return "duplicate", _answer(200, status="duplicate")
        if nudged:
            self.services.wake_worker()
        elif event.resource is not None and external is None:
            await self._incoming(event.resource)
        log.info(
            "fireblocks webhook %s (%s, %s) for %s: %s",
            event.id,
            event.type,
            scheme,
            event.resource or "-",
            "payout nudged" if nudged else "recorded",
        )
        return "accepted", _answer(200, status="accepted")

    async def _incoming(self, fireblocks_id: str) -> None:
        """Maybe an incoming transfer to the vault: fetch it (the event is not trusted)."""
        try:
            found = await self.incoming.client.get_transaction(fireblocks_id)
            if found is not None:
                await self.incoming.handle(found)
        except Exception as exc:  # FireblocksError, the ledger...: the poll sees it later
            log.warning("fireblocks: incoming %s not handled now (%s)", fireblocks_id, exc)

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.receive, methods=["POST"])]


@dataclass(frozen=True, slots=True)
class Event:
    """What is kept of an event. Its transaction status is recorded, never acted upon."""

    id: str
    type: str
    resource: str | None  # the Fireblocks transaction id
    external_tx_id: str | None  # our payout id, for an outgoing transfer
    status: str | None


def _parse(body: bytes) -> Event | None:
    """A v2 or v1 event. The v1 shape has no id: the body's SHA-256 stands for it, so an
    identical redelivery is still recognised."""
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        return None
    data = event["data"]
    return Event(
        id=(_text(event.get("id")) or "sha256:" + hashlib.sha256(body).hexdigest())[:128],
        type=_text(event.get("eventType")) or _text(event.get("type")) or "unknown",
        resource=_text(data.get("id")) or _text(event.get("resourceId")),
        external_tx_id=_text(data.get("externalTxId")),
        status=_text(data.get("status")),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _answer(http_status: int, **body: str) -> JSONResponse:
    return JSONResponse(body, status_code=http_status)
