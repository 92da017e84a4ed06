"""Signed webhooks of the sandbox Fireblocks: every event is serialised once, signed with both
of Fireblocks' schemes over those bytes, kept in an outbox (tests read and replay it) and
POSTed to the webhook URL in order per transaction, with retries.

- `Fireblocks-Webhook-Signature`: detached JWS, `<b64url(header)>..<b64url(signature)>`, RS512
  over `b64url(header) + "." + b64url(body)`, header `{"alg": "RS512", "kid", "typ": "JOSE"}`;
- `Fireblocks-Signature`: base64 of the RSASSA-PKCS1-v1_5 SHA-512 signature of the body.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from anchorpay import http
from anchorpay.sandbox.fireblocks.faults import FireblocksFaults

log = logging.getLogger("anchorpay.sandbox.fireblocks")

JWS_HEADER = "Fireblocks-Webhook-Signature"
LEGACY_HEADER = "Fireblocks-Signature"
RETRIES = 5  # after the first attempt
RETRY_DELAY_S = 0.2  # doubles after each failed attempt
TIMEOUT_S = 5.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


@functools.lru_cache(maxsize=16)
def load_private_key(pem: str | bytes) -> RSAPrivateKey:
    """An RSA private key from PEM (cached: loading checks the key, which is slow);
    ValueError for anything else."""
    key = serialization.load_pem_private_key(
        pem.encode() if isinstance(pem, str) else pem, password=None
    )
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


class WebhookSigner:
    def __init__(self, private_pem: str | bytes, kid: str) -> None:
        self._key, self.kid = load_private_key(private_pem), kid

    def _sign(self, data: bytes) -> bytes:
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA512())

    def headers(self, body: bytes) -> dict[str, str]:
        """Both signature headers for these exact body bytes."""
        header = {"alg": "RS512", "kid": self.kid, "typ": "JOSE"}
        protected = b64url(json.dumps(header, separators=(",", ":")).encode())
        signature = self._sign(f"{protected}.{b64url(body)}".encode())
        return {
            JWS_HEADER: f"{protected}..{b64url(signature)}",
            LEGACY_HEADER: base64.b64encode(self._sign(body)).decode(),
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        key = {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS512"}
        return {"keys": [key | {"n": _int_b64url(numbers.n), "e": _int_b64url(numbers.e)}]}


@dataclass(slots=True)
class WebhookEvent:
    number: int
    id: str
    event_type: str
    resource_id: str
    status: str  # the transaction's status in this event
    body: bytes
    headers: dict[str, str]
    delivery: str = "pending"  # pending, delivered, failed, dropped, skipped (no URL)
    attempts: int = 0
    last_error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "id": self.id,
            "eventType": self.event_type,
            "resourceId": self.resource_id,
            "status": self.status,
            "body": self.body.decode(),
            "headers": dict(self.headers),
            "delivery": self.delivery,
            "attempts": self.attempts,
            "lastError": self.last_error,
        }


@dataclass
class WebhookOutbox:
    """Every event ever made, and their delivery: one chain of deliveries per transaction,
    so a transaction's events arrive in order while transactions do not wait on each other."""

    signer: WebhookSigner
    faults: FireblocksFaults
    url: Callable[[], str | None]  # read at delivery time (settings may change it)
    workspace_id: str = "sandbox"
    retry_delay_s: float = RETRY_DELAY_S
    events: list[WebhookEvent] = field(default_factory=list)
    _queues: dict[str, deque[WebhookEvent]] = field(default_factory=dict)
    _chains: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _client: http.AsyncClient | None = None

    def emit(self, event_type: str, transaction: dict[str, Any], created_at: int) -> WebhookEvent:
        resource_id, event_id = str(transaction["id"]), str(uuid.uuid4())
        payload = {
            "id": event_id,
            "eventType": event_type,
            "eventVersion": 1,
            "resourceId": resource_id,
            "workspaceId": self.workspace_id,
            "createdAt": created_at,
            "data": transaction,
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        event = WebhookEvent(
            number=len(self.events) + 1,
            id=event_id,
            event_type=event_type,
            resource_id=resource_id,
            status=str(transaction["status"]),
            body=body,
            headers=self.signer.headers(body),
        )
        self.events.append(event)
        if self.faults.take("drop_webhooks"):
            event.delivery = "dropped"
            log.info("sandbox fireblocks: fault: dropped webhook %s", event.id)
            return event
        self._queues.setdefault(resource_id, deque()).append(event)
        self._kick(resource_id)
        return event

    def _kick(self, resource_id: str) -> None:
        if self._client is not None and resource_id not in self._chains:
            task = asyncio.create_task(self._chain(resource_id))
            self._chains[resource_id] = task

    async def _chain(self, resource_id: str) -> None:
        queue = self._queues[resource_id]
        try:
            while queue:
                await self._deliver(queue[0])
                queue.popleft()
        finally:
            self._chains.pop(resource_id, None)
            if not queue:
                self._queues.pop(resource_id, None)

    async def _deliver(self, event: WebhookEvent) -> None:
        delay = self.retry_delay_s
        while True:
            url, client = self.url(), self._client
            if url is None or client is None:
                event.delivery = "skipped"
                return
            event.attempts += 1
            headers = {"Content-Type": "application/json", **event.headers}
            try:
                response = await client.post(url, content=event.body, headers=headers)
                if 200 <= response.status_code < 300:
                    event.delivery, event.last_error = "delivered", ""
                    return
                event.last_error = f"HTTP {response.status_code}"
            except http.HttpError as exc:
                event.last_error = f"{type(exc).__name__}: {exc}"
            if event.attempts > RETRIES:
                event.delivery = "failed"
                log.warning(
                    "sandbox fireblocks: gave up delivering webhook %s (%s of %s) after %d "
                    "attempts: %s",
                    event.id,
                    event.event_type,
                    event.resource_id,
                    event.attempts,
                    event.last_error,
                )
                return
            await asyncio.sleep(delay)
            delay *= 2

    async def start(self) -> None:
        if self._client is None:
            self._client = http.make_client("", TIMEOUT_S)
            for resource_id in list(self._queues):
                self._kick(resource_id)

    async def stop(self) -> None:
        client, self._client = self._client, None
        chains = list(self._chains.values())
        for task in chains:
            task.cancel()
        for task in chains:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if client is not None:
            await client.aclose()
