"""The Fireblocks surfaces of the server on bad input and bad days, over the ASGI app (no
worker): `POST /webhooks/fireblocks` refusals are exact and record nothing, a legacy (v1)
event without an id is deduplicated by its body; a deposit address asked while Fireblocks is
down is a clear RPC error that changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy import func, select

from anchorpay.adapters.fireblocks.webhook_signature import sign_jws, sign_legacy
from anchorpay.app import create_app
from anchorpay.sandbox.fireblocks import (
    SANDBOX_FIREBLOCKS_WEBHOOK_KID,
    SANDBOX_FIREBLOCKS_WEBHOOK_PRIVATE_PEM,
)
from anchorpay.store.fireblocks_tables import FireblocksEventRow
from support.payout_fixtures import app_settings, create_withdrawal, onchain_funds_params

KEY = serialization.load_pem_private_key(SANDBOX_FIREBLOCKS_WEBHOOK_PRIVATE_PEM.encode(), None)
assert isinstance(KEY, RSAPrivateKey)
PATH = "/webhooks/fireblocks"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # Port 9 refuses connections: the JWKS (served by the sandbox on that port) is unreachable.
    settings = app_settings(tmp_path, custody_type="fireblocks", platform_server_port=9)
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://anchorpay") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


def legacy(body: bytes) -> dict[str, str]:
    return {"Fireblocks-Signature": sign_legacy(KEY, body)}


async def events(client: httpx.AsyncClient) -> int:
    sessions = client.app.state.services.sessions  # type: ignore[attr-defined]
    async with sessions() as session:
        result = await session.exec(select(func.count()).select_from(FireblocksEventRow))
        return int(result.scalar_one())


async def test_a_v1_event_is_recorded_once_by_its_body(client: httpx.AsyncClient) -> None:
    body = json.dumps(
        {"type": "TRANSACTION_STATUS_UPDATED", "data": {"id": "fb-1", "status": "CONFIRMING"}}
    ).encode()
    first = await client.post(PATH, content=body, headers=legacy(body))
    again = await client.post(PATH, content=body, headers=legacy(body))
    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert await events(client) == 1
    counted = client.app.state.services.metrics.fireblocks_webhooks  # type: ignore[attr-defined]
    assert [counted.labels(o)._value.get() for o in ("accepted", "duplicate")] == [1, 1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "The body must be a JSON object with a 'data' object"),
        (b"[1, 2]", "The body must be a JSON object with a 'data' object"),
        (b'{"id": "e1", "data": "x"}', "The body must be a JSON object with a 'data' object"),
    ],
)
async def test_a_signed_but_malformed_event_is_400(
    client: httpx.AsyncClient, body: bytes, message: str
) -> None:
    answer = await client.post(PATH, content=body, headers=legacy(body))
    assert (answer.status_code, answer.json()) == (400, {"error": message})
    assert await events(client) == 0


async def test_an_oversized_event_is_413(client: httpx.AsyncClient) -> None:
    body = b'{"data": {}, "pad": "' + b"x" * 1_000_001 + b'"}'
    answer = await client.post(PATH, content=body, headers=legacy(body))
    assert (answer.status_code, answer.json()) == (413, {"error": "The event is too large"})
    assert await events(client) == 0


async def test_a_jws_that_cannot_be_checked_now_is_503(client: httpx.AsyncClient) -> None:
    body = b'{"id": "e2", "data": {"id": "fb-2"}}'
    headers = {
        "Fireblocks-Webhook-Signature": sign_jws(KEY, SANDBOX_FIREBLOCKS_WEBHOOK_KID, body),
        **legacy(body),  # valid, but a JWS that is present must verify: no fallback
    }
    answer = await client.post(PATH, content=body, headers=headers)
    assert (answer.status_code, answer.json()) == (
        503,
        {"error": "The signature cannot be verified now; retry"},
    )
    assert await events(client) == 0


async def test_a_signature_of_another_body_is_401(client: httpx.AsyncClient) -> None:
    body = b'{"id": "e3", "data": {"id": "fb-3"}}'
    other = b'{"id": "e3", "data": {"id": "fb-4"}}'
    answer = await client.post(PATH, content=body, headers=legacy(other))
    assert (answer.status_code, answer.json()) == (
        401,
        {"error": "Invalid or missing Fireblocks signature"},
    )
    assert await events(client) == 0


async def test_deposit_address_with_fireblocks_down_is_a_clear_error(tmp_path: Path) -> None:
    """request_onchain_funds (DEPOSIT_INFO_GENERATOR=custody) while Fireblocks cannot be
    reached: -32603 with a sentence to act on, and the transaction is left as it was."""
    settings = app_settings(
        tmp_path,
        custody_type="fireblocks",
        deposit_info_generator="custody",
        fireblocks_base_url="http://127.0.0.1:9",
        fireblocks_timeout_s=2,
    )
    app = create_app(settings, run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://anchorpay") as c:
            created = await create_withdrawal(c)
            tx_id = created["id"]
            params = onchain_funds_params(tx_id)
            body = {"jsonrpc": "2.0", "id": 1, "method": "request_onchain_funds", "params": params}
            answer = (await c.post("/", json=body)).json()
            assert answer["error"] == {
                "id": tx_id,
                "code": -32603,
                "message": "Failed to get a deposit address from Fireblocks; retry the request",
            }
            assert (await c.get(f"/transactions/{tx_id}")).json() == created
            # With custody deposit addresses the custodian reports incoming payments.
            observer = (await c.get("/health")).json()["observer"]
            assert observer == {"healthy": True, "status": "off", "stall_after_s": 300.0}


async def test_health_shows_open_payouts_and_the_last_webhook(client: httpx.AsyncClient) -> None:
    from test_payouts_store import Intent, force_state, record

    from anchorpay.store import payouts as store

    sessions = client.app.state.services.sessions  # type: ignore[attr-defined]
    body = (await client.get("/health")).json()
    assert body["payouts"] == {
        "custody": "fireblocks",
        "open": {"queued": 0, "waiting_trust": 0, "submitting": 0, "submitted": 0},
        "oldest_in_flight_s": None,
        "last_fireblocks_webhook_at": None,
    }
    flying = await record(sessions, "tx-1", Intent(), "fireblocks")
    await record(sessions, "tx-2", Intent(), "fireblocks")
    await force_state(sessions, flying.id, store.SUBMITTED)
    event = b'{"id": "e9", "data": {"id": "fb-9"}}'
    assert (await client.post(PATH, content=event, headers=legacy(event))).status_code == 200
    answer = await client.get("/health")
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "ok"
    assert body["payouts"]["open"] == {
        "queued": 1,
        "waiting_trust": 0,
        "submitting": 0,
        "submitted": 1,
    }
    assert body["payouts"]["oldest_in_flight_s"] > 0  # recorded at 2026-01-01 (T0)
    assert body["payouts"]["last_fireblocks_webhook_at"].endswith("Z")
