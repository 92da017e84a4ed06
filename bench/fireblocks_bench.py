"""Payouts through Fireblocks, end to end over real HTTP: the app with its worker, the
sandbox ledger (a ledger every 0.1 s) and the sandbox Fireblocks (a status step every
0.05 s) on one uvicorn socket. Measures the time for N deposits to complete by themselves,
the Fireblocks requests each payout cost (creates, lookups: the polling budget), and how
many signed webhooks per second the endpoint verifies and records."""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from anchorpay.adapters.fireblocks.webhook_signature import sign_jws, sign_legacy
from anchorpay.app import create_app
from anchorpay.sandbox.fireblocks import (
    SANDBOX_FIREBLOCKS_WEBHOOK_KID,
    SANDBOX_FIREBLOCKS_WEBHOOK_PRIVATE_PEM,
)
from anchorpay.settings import Settings

USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
CONFIG = Path(__file__).resolve().parent.parent / "config"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def _served(tmp: str) -> AsyncIterator[httpx.AsyncClient]:
    port = _port()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
        stellar_network="sandbox",
        custody_type="fireblocks",
        platform_server_port=port,
        assets_file=CONFIG / "assets.toml",
        sandbox_ledger_close_s=0.1,
        sandbox_fireblocks_step_s=0.05,
        worker_tick_s=0.05,
        payout_retry_base_s=0.05,
        observer_interval_s=3600,
        trustline_check_interval_s=3600,
        log_level="WARNING",
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            yield c
    finally:
        server.should_exit = True
        await task


async def _ok(client: httpx.AsyncClient, method: str, params: dict[str, Any]) -> None:
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    answer = (await client.post("/", json=body)).json()
    assert "result" in answer, answer


async def _deposit(client: httpx.AsyncClient, account: str) -> str:
    created = await client.post(
        "/transactions",
        json={
            "sep": "24",
            "kind": "deposit",
            "amount_expected": {"asset": USDC},
            "destination_account": account,
        },
    )
    tx_id: str = created.json()["id"]
    await _ok(
        client,
        "request_offchain_funds",
        {
            "transaction_id": tx_id,
            "amount_in": {"amount": "10", "asset": "iso4217:USD"},
            "amount_out": {"amount": "9", "asset": USDC},
            "fee_details": {"total": "1", "asset": "iso4217:USD"},
        },
    )
    await _ok(client, "notify_offchain_funds_received", {"transaction_id": tx_id})
    return tx_id


async def _payouts(client: httpx.AsyncClient, n: int) -> dict[str, float]:
    accounts = []
    for _ in range(n):
        made = await client.post("/sandbox/accounts", json={"xlm": "10", "trust": [USDC]})
        accounts.append(made.json()["account_id"])
    tx_ids = [await _deposit(client, a) for a in accounts]
    before = (await client.get("/sandbox/fireblocks/state")).json()["counters"]
    start = time.perf_counter()
    for tx_id in tx_ids:
        await _ok(client, "do_stellar_payment", {"transaction_id": tx_id})
    pending = set(tx_ids)
    while pending:
        await asyncio.sleep(0.05)
        for tx_id in list(pending):
            if (await client.get(f"/transactions/{tx_id}")).json()["status"] == "completed":
                pending.discard(tx_id)
    elapsed = time.perf_counter() - start
    after = (await client.get("/sandbox/fireblocks/state")).json()["counters"]

    def spent(route: str) -> float:
        return (after.get(route, 0) - before.get(route, 0)) / n

    payments = 0
    for account in accounts:
        page = (await client.get(f"/sandbox/horizon/accounts/{account}/payments")).json()
        payments += sum(1 for r in page["_embedded"]["records"] if r.get("to") == account)
    assert payments == n, f"{payments} payments for {n} payouts"
    return {
        "seconds": elapsed,
        "creates": spent("POST /v1/transactions"),
        "lookups": spent("GET /v1/transactions/external_tx_id/{external_tx_id}"),
    }


async def _webhooks(client: httpx.AsyncClient, n: int) -> float:
    key = serialization.load_pem_private_key(SANDBOX_FIREBLOCKS_WEBHOOK_PRIVATE_PEM.encode(), None)
    assert isinstance(key, RSAPrivateKey)
    bodies = []
    for _ in range(n):
        event = {
            "id": str(uuid.uuid4()),
            "eventType": "transaction.status.updated",
            "data": {"id": str(uuid.uuid4()), "externalTxId": str(uuid.uuid4()), "status": "X"},
        }
        body = json.dumps(event).encode()
        headers = {
            "Fireblocks-Webhook-Signature": sign_jws(key, SANDBOX_FIREBLOCKS_WEBHOOK_KID, body),
            "Fireblocks-Signature": sign_legacy(key, body),
        }
        bodies.append((body, headers))
    start = time.perf_counter()
    for body, headers in bodies:
        answer = await client.post("/webhooks/fireblocks", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    return n / (time.perf_counter() - start)


async def main(n: int = 40, hooks: int = 300) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with _served(tmp) as client:
            paid = await _payouts(client, n)
            rate = await _webhooks(client, hooks)
    print(
        f"fireblocks: {n} deposit payouts completed in {paid['seconds']:.1f} s "
        f"(sandbox: 0.1 s ledgers, 0.05 s steps), {paid['creates']:.2f} creates and "
        f"{paid['lookups']:.2f} lookups per payout; one payment each on the ledger"
    )
    print(f"fireblocks webhooks: {rate:.0f} verified (JWS) and recorded per second")


if __name__ == "__main__":
    asyncio.run(main())
