"""Helpers for the payout end-to-end and crash tests (imported explicitly): the real app with
its sandbox network and worker served by uvicorn on a real socket, JSON-RPC calls, sandbox
accounts, ledger driving, and reading what the ledger paid."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from stellar_sdk import Account, Asset, IdMemo, Keypair, TransactionBuilder

from anchorpay.sandbox import (
    SANDBOX_DISTRIBUTION_ACCOUNT,
    SANDBOX_DISTRIBUTION_SECRET,
    SANDBOX_NETWORK_PASSPHRASE,
)
from anchorpay.settings import Settings
from support.sandbox_fixtures import free_port

REPO = Path(__file__).resolve().parents[2]
USDC_ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USDC = f"stellar:USDC:{USDC_ISSUER}"
XLM = "stellar:native"
USD = "iso4217:USD"
DIST = SANDBOX_DISTRIBUTION_ACCOUNT

# Fast worker timings: ticks and backoff in tens of milliseconds, so tests never sleep long.
FAST = {
    "worker_tick_s": 0.05,
    "payout_retry_base_s": 0.05,
    "payout_retry_max_s": 0.2,
    "payout_lease_s": 5.0,
    "trustline_check_interval_s": 3600,
    "observer_interval_s": 3600,
    "sandbox_ledger_close_s": 3600,  # the tests close ledgers by hand
    "sandbox_state": ":memory:",  # a test that restarts the network gives it a file
}


def app_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'anchorpay.db'}",
        "stellar_network": "sandbox",
        "assets_file": REPO / "config" / "assets.toml",
        **FAST,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Env:
    client: httpx.AsyncClient  # the app: RPC, /transactions, /payouts
    ledger: httpx.AsyncClient  # the sandbox's /sandbox routes (may be another process)

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        answer: dict[str, Any] = (await self.client.post("/", json=body)).json()
        return answer

    async def ok(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = await self.rpc(method, params)
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    async def tx(self, tx_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.client.get(f"/transactions/{tx_id}")).json()
        return body

    async def payouts(self, tx_id: str) -> list[dict[str, Any]]:
        response = await self.client.get("/payouts", params={"transaction_id": tx_id})
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["payouts"]
        return records

    async def account(self, xlm: str = "100", trust: tuple[str, ...] = (USDC,)) -> Keypair:
        response = await self.ledger.post("/accounts", json={"xlm": xlm, "trust": list(trust)})
        assert response.status_code == 201, response.text
        return Keypair.from_secret(response.json()["secret"])

    async def fault(self, **body: Any) -> None:
        response = await self.ledger.post("/faults", json=body)
        assert response.status_code in (200, 201, 204), response.text

    async def close_ledger(self) -> None:
        response = await self.ledger.post("/close_ledger")
        assert response.status_code in (200, 201), response.text

    async def drive(
        self, done: Callable[[], Awaitable[bool]], timeout_s: float = 15.0, step_s: float = 0.03
    ) -> None:
        """Close ledgers by hand until `done()`: what a 5 s ledger would do, in milliseconds."""
        async with asyncio.timeout(timeout_s):
            while not await done():
                await self.close_ledger()
                await asyncio.sleep(step_s)

    async def until_status(self, tx_id: str, *statuses: str, timeout_s: float = 15.0) -> str:
        async def reached() -> bool:
            return (await self.tx(tx_id))["status"] in statuses

        await self.drive(reached, timeout_s)
        status: str = (await self.tx(tx_id))["status"]
        return status

    async def payments_to(self, account: str) -> list[dict[str, Any]]:
        """Payments `account` received on the ledger, with their transaction (memo)."""
        response = await self.ledger.get(
            f"/horizon/accounts/{account}/payments", params={"join": "transactions", "limit": 200}
        )
        if response.status_code == 404:  # no such account: it received nothing
            return []
        assert response.status_code == 200, response.text
        records = response.json()["_embedded"]["records"]
        return [r for r in records if r.get("to") == account and r["transaction_successful"]]

    async def pay(
        self,
        source: Keypair,
        destination: str,
        amount: str,
        asset: str = USDC,
        memo_id: int | None = None,
    ) -> str:
        """A payment on the sandbox ledger, signed by `source`; returns its hash."""

        def ops(builder: TransactionBuilder) -> None:
            builder.append_payment_op(destination, _sdk_asset(asset), amount)
            if memo_id is not None:
                builder.add_memo(IdMemo(memo_id))

        return await submit_signed(self.ledger, source, ops, self.close_ledger)

    async def pay_distribution(self, payer: Keypair, amount: str, asset: str = USDC) -> str:
        """The user's on-ledger payment to the distribution account (a withdrawal)."""
        return await self.pay(payer, DIST, amount, asset)


def _sdk_asset(asset: str) -> Asset:
    return Asset.native() if asset == XLM else Asset(*asset.split(":")[1:])


async def submit_signed(
    ledger: httpx.AsyncClient,
    source: Keypair,
    add_ops: Callable[[TransactionBuilder], None],
    close_ledger: Callable[[], Awaitable[None]] | None = None,
) -> str:
    """Build a transaction of `source` (its next sequence, operations from `add_ops`), sign
    it and submit it through the sandbox's Horizon (`ledger`: a client of /sandbox), closing
    ledgers by hand meanwhile when `close_ledger` is given. Returns the hash."""
    account = (await ledger.get(f"/horizon/accounts/{source.public_key}")).json()
    builder = TransactionBuilder(
        Account(source.public_key, int(account["sequence"])), SANDBOX_NETWORK_PASSPHRASE, 100
    )
    add_ops(builder)
    envelope = builder.set_timeout(300).build()
    envelope.sign(source)
    submit = asyncio.create_task(
        ledger.post("/horizon/transactions", data={"tx": envelope.to_xdr()})
    )
    while not submit.done():
        if close_ledger is not None:
            await close_ledger()
        await asyncio.sleep(0.02)
    response = submit.result()
    assert response.status_code == 200, response.text
    return str(response.json()["hash"])


@contextlib.asynccontextmanager
async def served(app: Any, port: int) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def running_app(
    tmp_path: Path, *, run_worker: bool = True, sandbox_url: str | None = None, **overrides: Any
) -> AsyncIterator[Env]:
    """`anchorpay serve` in-process: app + embedded sandbox + worker, on a real port, so the
    worker's signer reaches the sandbox's Horizon surface over real HTTP. With `sandbox_url`
    (another process's `http://host:port`), the app and `Env.ledger` use that network."""
    from anchorpay.app import create_app

    port = free_port()
    if sandbox_url is not None:
        overrides["horizon_url"] = f"{sandbox_url}/sandbox/horizon"
    settings = app_settings(tmp_path, platform_server_port=port, **overrides)
    app = create_app(settings, run_worker=run_worker)
    async with served(app, port) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as client,
            httpx.AsyncClient(base_url=f"{sandbox_url or base}/sandbox", timeout=30) as ledger,
        ):
            yield Env(client, ledger)


async def funded_deposit(
    env: Env,
    account: str,
    *,
    asset: str = USDC,
    amount_out: str = "9",
    memo: tuple[str, str] | None = None,
) -> str:
    """A deposit in `pending_anchor` with funds received: ready for do_stellar_payment."""
    body: dict[str, Any] = {
        "sep": "24",
        "kind": "deposit",
        "amount_expected": {"asset": asset},
        "destination_account": account,
    }
    if memo is not None:
        body["memo"], body["memo_type"] = memo
    created = await env.client.post("/transactions", json=body)
    assert created.status_code == 201, created.text
    tx_id: str = created.json()["id"]
    await env.ok(
        "request_offchain_funds",
        {
            "transaction_id": tx_id,
            "amount_in": {"amount": "10", "asset": USD},
            "amount_out": {"amount": amount_out, "asset": asset},
            "fee_details": {"total": "1", "asset": USD},
        },
    )
    await env.ok("notify_offchain_funds_received", {"transaction_id": tx_id})
    return tx_id


async def create_accounts(
    ledger: httpx.AsyncClient,
    accounts: list[str],
    close_ledger: Callable[[], Awaitable[None]] | None = None,
    xlm: str = "50",
) -> None:
    """Create `accounts` (chosen keys, e.g. channel accounts) on the sandbox with one
    CreateAccount each from the distribution account."""
    if not accounts:
        return

    def ops(builder: TransactionBuilder) -> None:
        for account in accounts:
            builder.append_create_account_op(account, xlm)

    await submit_signed(ledger, Keypair.from_secret(SANDBOX_DISTRIBUTION_SECRET), ops, close_ledger)


async def create_withdrawal(
    client: httpx.AsyncClient, source_account: str | None = None, asset: str = USDC
) -> dict[str, Any]:
    """`POST /transactions`: a SEP-24 withdrawal of `asset`; returns the created record."""
    body: dict[str, Any] = {"sep": "24", "kind": "withdrawal", "amount_expected": {"asset": asset}}
    if source_account is not None:
        body["source_account"] = source_account
    created = await client.post("/transactions", json=body)
    assert created.status_code == 201, created.text
    record: dict[str, Any] = created.json()
    return record


def onchain_funds_params(tx_id: str, asset: str = USDC) -> dict[str, Any]:
    """`request_onchain_funds` for a withdrawal: 10 of `asset` in (1 fee), 9 USD out."""
    return {
        "transaction_id": tx_id,
        "amount_in": {"amount": "10", "asset": asset},
        "amount_out": {"amount": "9", "asset": USD},
        "fee_details": {"total": "1", "asset": asset},
    }
