"""Helpers for the Fireblocks end-to-end tests (imported explicitly): the app with
CUSTODY_TYPE=fireblocks, its embedded sandbox network and sandbox Fireblocks, all over real
HTTP on a real port; user payments with memos; and what the ledger and Fireblocks hold."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from stellar_sdk import Keypair

from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET
from anchorpay.sandbox.fireblocks import SANDBOX_FIREBLOCKS_VAULT_ACCOUNT
from support.payout_fixtures import Env, running_app

VAULT = SANDBOX_FIREBLOCKS_VAULT_ACCOUNT
FB_FAST = {
    "custody_type": "fireblocks",
    "sandbox_fireblocks_step_s": 0.02,
    "payout_poll_max_s": 0.5,
}


@contextlib.asynccontextmanager
async def fireblocks_app(tmp_path: Path, **overrides: Any) -> AsyncIterator[Env]:
    async with running_app(tmp_path, **{**FB_FAST, **overrides}) as env:
        yield env


async def fb_state(env: Env) -> dict[str, Any]:
    response = await env.ledger.get("/fireblocks/state")
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


async def fb_transactions(env: Env, external_tx_id: str | None = None) -> list[dict[str, Any]]:
    txs: list[dict[str, Any]] = (await fb_state(env))["transactions"]
    if external_tx_id is None:
        return txs
    return [t for t in txs if t.get("externalTxId") == external_tx_id]


async def fb_fault(env: Env, **body: Any) -> None:
    response = await env.ledger.post("/fireblocks/faults", json=body)
    assert response.status_code in (200, 201, 204), response.text


async def webhooks(env: Env) -> list[dict[str, Any]]:
    response = await env.ledger.get("/fireblocks/webhooks")
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()
    return events


async def give_usdc(env: Env, user: Keypair, amount: str) -> None:
    """The user's USDC, straight from the sandbox's distribution account."""
    await env.pay(Keypair.from_secret(SANDBOX_DISTRIBUTION_SECRET), user.public_key, amount)


async def vault_payments_to(env: Env, account: str) -> list[tuple[str, Decimal]]:
    """(hash, amount) of each payment the vault made to `account`."""
    return [
        (p["transaction_hash"], Decimal(p["amount"]))
        for p in await env.payments_to(account)
        if p["from"] == VAULT
    ]
