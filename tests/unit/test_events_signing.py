"""The receiver helper (`anchorpay.events`): what the dispatcher signs verifies, anything
else is refused; and how the dispatcher reads an answer (scheduler/event_delivery.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from anchorpay.domain.events import EventType, change_type
from anchorpay.domain.statuses import Status
from anchorpay.events import InvalidCallback, sign_headers, signature, verify_callback
from anchorpay.scheduler.event_delivery import Verdict, judge, retry_after_s

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NOW = 1_800_000_000
BODY = json.dumps({"timestamp": NOW, "payload": {"id": "ev-1", "type": "x"}}).encode()


def test_signature_is_the_standard_webhooks_hmac() -> None:
    expected = hmac.new(b"k" * 32, b"ev-1.1800000000." + BODY, hashlib.sha256).digest()
    assert signature(SECRET, "ev-1", NOW, BODY) == "v1," + base64.b64encode(expected).decode()
    plain = hmac.new(b"plain-secret", b"ev-1.1800000000." + BODY, hashlib.sha256).digest()
    assert signature("plain-secret", "ev-1", NOW, BODY) == "v1," + base64.b64encode(plain).decode()


def test_a_signed_callback_verifies_and_parses() -> None:
    headers = sign_headers(SECRET, "ev-1", NOW, BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert verify_callback(BODY, headers, SECRET, now=NOW + 299) == json.loads(BODY)
    rotated = {**headers, "webhook-signature": "v1,b2xk " + headers["webhook-signature"]}
    assert verify_callback(BODY, rotated, SECRET, now=NOW) == json.loads(BODY)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": BODY.replace(b"ev-1", b"ev-2")}, "no webhook-signature matches"),
        ({"secret": "whsec_" + base64.b64encode(b"x" * 32).decode()}, "no webhook-signature"),
        ({"now": NOW + 301}, "outside the tolerance"),
        ({"now": NOW - 301}, "outside the tolerance"),
        ({"drop": "webhook-signature"}, "missing"),
        ({"header": ("webhook-timestamp", "soon")}, "not unix seconds"),
        ({"header": ("webhook-id", "ev-9")}, "no webhook-signature matches"),
    ],
)
def test_anything_else_is_refused(change: dict[str, object], reason: str) -> None:
    headers = sign_headers(SECRET, "ev-1", NOW, BODY)
    if "drop" in change:
        del headers[str(change["drop"])]
    if "header" in change:
        name, value = change["header"]  # type: ignore[misc]
        headers[name] = value
    body = change.get("body", BODY)
    secret = change.get("secret", SECRET)
    now = change.get("now", NOW)
    with pytest.raises(InvalidCallback, match=reason):
        verify_callback(body, headers, secret, now=now)  # type: ignore[arg-type]


def test_the_id_header_must_name_the_event() -> None:
    headers = sign_headers(SECRET, "ev-other", NOW, BODY)  # validly signed, wrong event
    with pytest.raises(InvalidCallback, match="webhook-id is not the event's id"):
        verify_callback(BODY, headers, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (299, "delivered"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (301, "failed"),
        (400, "failed"),
        (401, "failed"),
        (404, "failed"),
        (410, "failed"),
    ],
)
def test_answers(status: int, kind: str) -> None:
    assert judge(status, None, datetime.now(UTC)).kind == kind


def test_retry_after_is_a_minimum_delay() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert judge(429, "7", now) == Verdict("retry", "HTTP 429", 7.0)
    assert retry_after_s("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30.0
    assert retry_after_s("Wed, 31 Dec 2025 00:00:30 GMT", now) == 0.0
    assert retry_after_s("tomorrow", now) == 0.0
    assert retry_after_s(None, now) == 0.0


def test_change_types() -> None:
    assert change_type(None, Status.INCOMPLETE) is EventType.TRANSACTION_CREATED
    assert change_type(Status.PENDING_ANCHOR, Status.ERROR) is EventType.TRANSACTION_ERROR
    assert change_type(Status.ERROR, Status.ERROR) is EventType.TRANSACTION_STATUS_CHANGED
    assert (
        change_type(Status.PENDING_ANCHOR, Status.COMPLETED) is EventType.TRANSACTION_STATUS_CHANGED
    )
