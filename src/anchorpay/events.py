"""Business events for business developers: verify a callback from anchorpay and read it.

anchorpay POSTs every change of a transaction to `<BUSINESS_CALLBACK_URL>/event` with the
Anchor Platform 2.x body `{"timestamp": <unix seconds>, "payload": {"id", "type", "sep",
"transaction"}}` and Standard Webhooks headers:

    webhook-id:        the event id (deduplicate by it: delivery is at least once)
    webhook-timestamp: unix seconds of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>">

The HMAC key is BUSINESS_CALLBACK_SECRET: with the Standard Webhooks `whsec_` prefix, the
base64 after it; otherwise the secret's UTF-8 bytes. A minimal receiver:

    from anchorpay.events import InvalidCallback, verify_callback

    async def event(request):
        try:
            event = verify_callback(await request.body(), request.headers, SECRET)
        except InvalidCallback:
            return Response(status_code=401)
        handle(event["payload"])  # idempotent by event["payload"]["id"]
        return Response(status_code=204)

This module imports nothing else of anchorpay, so a receiver can vendor it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

DEFAULT_TOLERANCE_S = 300


class InvalidCallback(Exception):
    """The callback is not from the holder of the secret, or too old/new to accept."""


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidCallback("the whsec_ secret is not valid base64") from None
    return secret.encode("utf-8")


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one delivery."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for `body` (what anchorpay sends)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


def verify_callback(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Check the signature of `body` (the raw bytes, before any JSON parsing) and that its
    timestamp is within `tolerance_s` of `now` (replays); return the parsed body
    `{"timestamp", "payload"}`. Raises InvalidCallback. `headers` lookups must be
    case-insensitive, as Starlette's and httpx's are, or use lower-case keys."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise InvalidCallback("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise InvalidCallback("webhook-timestamp is not unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise InvalidCallback("webhook-timestamp is outside the tolerance")
    expected = signature(secret, msg_id, timestamp, body)
    # Several space-separated signatures may be sent during a secret rotation.
    if not any(hmac.compare_digest(expected, given) for given in signatures.split()):
        raise InvalidCallback("no webhook-signature matches")
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidCallback("the body is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("payload"), dict):
        raise InvalidCallback("the body is not an event callback")
    if parsed["payload"].get("id") != msg_id:
        raise InvalidCallback("webhook-id is not the event's id")
    return parsed
