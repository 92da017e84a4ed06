"""End to end over the sandbox network on a real socket: a SEP-24 withdrawal gets a generated
memo, a sandbox account pays it with a transaction built and signed by stellar-sdk, and the
observer job (called directly, no sleeps; ledgers closed by hand) credits it through the
state machine. Also: an unknown memo, and a crash in the middle of a page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair

from anchorpay.adapters.horizon import HorizonLedgerClient
from anchorpay.adapters.ledger import SubmitResult
from anchorpay.incoming import IncomingPayments
from anchorpay.sandbox.app import Sandbox
from anchorpay.scheduler.observer import PaymentObserver
from support.app import AppClient, ClientFactory
from support.sandbox_fixtures import (
    DIST,
    DIST_KP,
    USDC,
    USDC_SDK,
    make_sandbox,
    payment,
    served_sandbox,
)


@dataclass
class Net:
    sandbox: Sandbox
    ledger: HorizonLedgerClient
    dev: httpx.AsyncClient  # base URL /sandbox
    app: AppClient

    async def submit_and_close(self, xdr: str) -> SubmitResult:
        task = asyncio.create_task(self.ledger.submit(xdr))
        await self.sandbox.wait_queued()
        await self.sandbox.close_ledger()
        result = await task
        assert result.successful, result
        return result

    async def funded_user(self, usdc: str = "100") -> Keypair:
        response = await self.dev.post("/accounts", json={"xlm": "50", "trust": [USDC]})
        assert response.status_code == 201, response.text
        user = Keypair.from_secret(response.json()["secret"])
        await self.submit_and_close(payment(self.sandbox, DIST_KP, user.public_key, usdc, USDC_SDK))
        return user

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        answer: dict[str, Any] = (await self.app.rpc(body)).json()
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    async def withdrawal(self, user: Keypair, amount: str = "10") -> dict[str, Any]:
        body = {
            "kind": "withdrawal",
            "amount_expected": {"asset": USDC, "amount": amount},
            "source_account": user.public_key,
        }
        response = await self.app.post("/transactions", json=body)
        assert response.status_code == 201, response.text
        return await self.rpc(
            "request_onchain_funds",
            {
                "transaction_id": response.json()["id"],
                "amount_in": {"amount": amount, "asset": USDC},
                "amount_out": {"amount": str(int(amount) - 1), "asset": "iso4217:USD"},
                "fee_details": {"total": "1", "asset": USDC},
            },
        )

    async def get(self, tx_id: str) -> dict[str, Any]:
        found: dict[str, Any] = (await self.app.get(f"/transactions/{tx_id}")).json()
        return found

    def observer(self) -> PaymentObserver:
        return PaymentObserver(self.app.services)


@pytest.fixture
async def net(client_factory: ClientFactory) -> AsyncIterator[Net]:
    sandbox = make_sandbox()
    async with served_sandbox(sandbox) as horizon_url:
        ledger = HorizonLedgerClient(horizon_url, timeout_s=5)
        async with (
            httpx.AsyncClient(base_url=horizon_url.removesuffix("/horizon")) as dev,
            client_factory(ledger=ledger) as app,
        ):
            yield Net(sandbox, ledger, dev, app)
        await ledger.aclose()


async def test_withdrawal_completes_from_the_users_payment(net: Net) -> None:
    user = await net.funded_user()
    tx = await net.withdrawal(user)
    assert tx["status"] == "pending_user_transfer_start"
    assert tx["destination_account"] == DIST and tx["memo_type"] == "id"
    assert "transfer_received_at" not in tx  # no funds yet
    memo = int(tx["memo"])
    assert 0 < memo < 2**63

    # Nothing paid yet: the observer reads the history (the funding payment is outgoing).
    first = await net.observer().run_once()
    assert first.error is None and first.credited == [] and first.unmatched == []

    pay = payment(net.sandbox, user, DIST, "10", USDC_SDK, memo_id=memo)
    paid = await net.submit_and_close(pay)

    run = await net.observer().run_once()
    assert run.error is None and run.credited == [tx["id"]] and run.caught_up
    stored = await net.get(tx["id"])
    assert stored["status"] == "pending_anchor"
    assert stored["message"] == "Received an incoming payment"
    assert stored["amount_in"] == {"amount": "10.0000000", "asset": USDC}
    (entry,) = stored["stellar_transactions"]
    assert entry["id"] == paid.hash
    assert entry["payments"][0]["amount"]["amount"] == "10.0000000"
    assert entry["payments"][0]["destination_account"] == DIST
    # funds received when the ledger closed the user's payment, and returned
    assert stored["transfer_received_at"] == entry["created_at"] != tx["started_at"]

    done = await net.rpc(
        "notify_offchain_funds_sent",
        {"transaction_id": tx["id"], "external_transaction_id": "bank-transfer-1"},
    )
    assert done["status"] == "completed"
    health = (await net.app.get("/health")).json()
    assert health["observer"]["status"] == "ok"
    assert health["observer"]["last_ledger"] == paid.ledger


async def test_unknown_memo_changes_nothing_and_is_listed(net: Net) -> None:
    user = await net.funded_user()
    tx = await net.withdrawal(user)
    unknown = int(tx["memo"]) ^ 1
    paid = await net.submit_and_close(
        payment(net.sandbox, user, DIST, "4", USDC_SDK, memo_id=unknown)
    )
    run = await net.observer().run_once()
    assert run.credited == [] and len(run.unmatched) == 1
    assert (await net.get(tx["id"]))["status"] == "pending_user_transfer_start"
    listed = (await net.app.get("/observer/unmatched")).json()["unmatched_payments"]
    assert [(p["stellar_transaction_id"], p["memo"], p["reason"]) for p in listed] == [
        (paid.hash, str(unknown), "no_match")
    ]
    again = await net.observer().run_once()  # a replay records nothing twice
    assert again.payments == 0
    assert len((await net.app.get("/observer/unmatched")).json()["unmatched_payments"]) == 1


async def test_crash_in_the_middle_of_a_page_processes_each_payment_once(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await net.funded_user()
    txs = [await net.withdrawal(user) for _ in range(4)]
    # One payment per withdrawal (a transaction has one memo), all applied by one ledger
    # close, so the observer reads them in one page.
    seq = net.sandbox.ledger.accounts[user.public_key].sequence
    tasks = []
    for i, tx in enumerate(txs):
        xdr = payment(
            net.sandbox, user, DIST, "10", USDC_SDK, sequence=seq + i, memo_id=int(tx["memo"])
        )
        tasks.append(asyncio.create_task(net.ledger.submit(xdr)))
    await net.sandbox.wait_queued(len(tasks))
    await net.sandbox.close_ledger()
    results = [await t for t in tasks]
    assert all(r.successful for r in results)

    real = IncomingPayments.decide
    calls = 0

    async def crash_at_third_incoming(self: IncomingPayments, *args: Any) -> Any:
        nonlocal calls
        decision = await real(self, *args)
        if decision is not None:
            calls += 1
            if calls == 3:
                raise RuntimeError("process killed")
        return decision

    monkeypatch.setattr(IncomingPayments, "decide", crash_at_third_incoming)
    run = await net.observer().run_once()
    assert run.error == "RuntimeError: process killed"
    assert run.credited == [txs[0]["id"], txs[1]["id"]]
    monkeypatch.setattr(IncomingPayments, "decide", real)

    run = await net.observer().run_once()  # the restarted process
    assert run.error is None and run.credited == [txs[2]["id"], txs[3]["id"]]
    for tx, result in zip(txs, results, strict=True):
        stored = await net.get(tx["id"])
        assert stored["status"] == "pending_anchor"
        assert [s["id"] for s in stored["stellar_transactions"]] == [result.hash]
    assert (await net.app.get("/observer/unmatched")).json() == {"unmatched_payments": []}
    assert (await net.observer().run_once()).payments == 0
