"""HorizonLedgerClient talking HTTP to the sandbox: over a real socket (uvicorn) and over
httpx's ASGI transport. Tests close ledgers by hand (`sandbox.close_ledger()`), never sleep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair

from anchorpay.adapters.horizon import HorizonLedgerClient
from anchorpay.adapters.ledger import LedgerNotFound, LedgerUnavailable, SubmitResult
from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET
from anchorpay.sandbox.app import Sandbox, create_sandbox_app
from support.sandbox_fixtures import (
    ASSETS,
    DIST,
    DIST_KP,
    PASSPHRASE,
    USDC,
    USDC_SDK,
    balance,
    make_sandbox,
    payment,
    serve,
    served_sandbox,
)


@dataclass
class Net:
    sandbox: Sandbox
    ledger: HorizonLedgerClient
    dev: httpx.AsyncClient  # base URL /sandbox

    async def submit_and_close(self, xdr: str) -> SubmitResult:
        """Submit like a worker does, close the ledger by hand once it is queued."""
        task = asyncio.create_task(self.ledger.submit(xdr))
        await self.sandbox.wait_queued()
        await self.sandbox.close_ledger()
        return await task

    async def new_account(self, **body: Any) -> Keypair:
        response = await self.dev.post("/accounts", json=body)
        assert response.status_code == 201, response.text
        return Keypair.from_secret(response.json()["secret"])

    async def fault(self, **body: Any) -> None:
        assert (await self.dev.post("/faults", json=body)).status_code == 204


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    """The sandbox app over httpx's ASGI transport (no socket), ledgers closed by hand."""
    sandbox = make_sandbox()
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://sb/sandbox/horizon") as h,
        httpx.AsyncClient(transport=transport, base_url="http://sb/sandbox") as dev,
    ):
        yield Net(sandbox, HorizonLedgerClient(str(h.base_url), client=h), dev)


async def test_payment_over_a_real_socket() -> None:
    sandbox = make_sandbox()
    async with served_sandbox(sandbox) as horizon_url:
        ledger = HorizonLedgerClient(horizon_url, timeout_s=5)
        dev = httpx.AsyncClient(base_url=horizon_url.removesuffix("/horizon"))
        try:
            net = Net(sandbox, ledger, dev)
            user = await net.new_account(xlm="50", trust=[USDC])
            before = await ledger.get_account(DIST)
            xdr = payment(sandbox, DIST_KP, user.public_key, "25.5", USDC_SDK, memo_id=42)
            result = await net.submit_and_close(xdr)
            assert result.successful and result.ledger == 2
            tx = await ledger.get_transaction(result.hash)
            assert (tx.memo, tx.memo_type, tx.source_account) == ("42", "id", DIST)
            assert tx.envelope_xdr == xdr and tx.ledger == 2
            (paid,) = tx.record.payments
            assert (paid.amount, paid.asset, paid.destination_account) == (
                "25.5000000",
                USDC.removeprefix("stellar:"),
                user.public_key,
            )
            account = await ledger.get_account(user.public_key)
            assert account.trusts(USDC)
            assert {b.asset: b.balance for b in account.balances}[USDC] == Decimal("25.5")
            assert (await ledger.get_account(DIST)).sequence == before.sequence + 1
            latest = await ledger.latest_ledger()
            assert latest.sequence == 2 and latest.closed_at == sandbox.ledger.latest.closed_at
            page = await ledger.payments(user.public_key, None)
            assert [p.memo for p in page.payments] == ["42"]
            response = await dev.get("/distribution")
            assert response.json() == {"account_id": DIST, "secret": SANDBOX_DISTRIBUTION_SECRET}
        finally:
            await ledger.aclose()
            await dev.aclose()


async def test_ledgers_close_by_themselves_when_served() -> None:
    sandbox = Sandbox(assets=ASSETS, network_passphrase=PASSPHRASE, ledger_close_s=0.05)
    async with served_sandbox(sandbox) as horizon_url:
        ledger = HorizonLedgerClient(horizon_url, timeout_s=5)
        try:
            user = sandbox.create_account()
            result = await ledger.submit(payment(sandbox, DIST_KP, user.public_key, "1"))
            assert result.successful
            assert balance(sandbox, user.public_key) == Decimal("101")
        finally:
            await ledger.aclose()
    assert sandbox._task is None  # the lifespan stopped the closing task


async def test_horizon_json_and_problems(net: Net) -> None:
    client = net.ledger._client
    root = (await client.get("/")).json()
    assert root["network_passphrase"] == PASSPHRASE and root["history_latest_ledger"] == 1
    account = (await client.get(f"/accounts/{DIST}")).json()
    assert account["id"] == account["account_id"] == DIST
    assert account["sequence"] == str(1 << 32)
    usdc, native = account["balances"]
    assert native == {
        "balance": "10000000.0000000",
        "buying_liabilities": "0.0000000",
        "selling_liabilities": "0.0000000",
        "asset_type": "native",
    }
    assert (usdc["asset_type"], usdc["asset_code"], usdc["balance"], usdc["is_authorized"]) == (
        "credit_alphanum4",
        "USDC",
        "1000000.0000000",
        True,
    )
    missing = await client.get(f"/accounts/{Keypair.random().public_key}")
    assert missing.status_code == 404
    assert missing.json()["type"] == "https://stellar.org/horizon-errors/not_found"
    assert missing.json()["title"] == "Resource Missing"
    assert (await client.get("/transactions/" + "0" * 64)).status_code == 404
    bad = await client.get("/payments", params={"limit": "500"})
    assert bad.status_code == 400 and bad.json()["extras"]["invalid_field"] == "limit"
    with pytest.raises(LedgerNotFound):
        await net.ledger.get_account(Keypair.random().public_key)


async def test_refusals_answer_400_with_result_codes(net: Net) -> None:
    user = await net.new_account()  # no USDC trustline
    seq = net.sandbox.ledger.accounts[DIST].sequence
    failed = await net.submit_and_close(
        payment(net.sandbox, DIST_KP, user.public_key, "5", USDC_SDK)
    )
    assert not failed.successful and failed.hash
    assert (failed.transaction_code, failed.operation_codes) == ("tx_failed", ("op_no_trust",))
    assert net.sandbox.ledger.accounts[DIST].sequence == seq + 1  # applied: seq consumed
    found = await net.ledger.get_transaction(failed.hash)
    assert not found.successful
    stale = payment(net.sandbox, DIST_KP, user.public_key, "5", sequence=seq)
    bad_seq = await net.ledger.submit(stale)  # refused at once, no ledger needed
    assert bad_seq.transaction_code == "tx_bad_seq" and bad_seq.hash
    response = await net.ledger._client.post("/transactions", data={"tx": "AAAA"})
    assert response.status_code == 400
    assert response.json()["type"] == "https://stellar.org/horizon-errors/transaction_malformed"
    assert response.json()["extras"]["envelope_xdr"] == "AAAA"


async def test_duplicate_submission_returns_the_same_result(net: Net) -> None:
    user = await net.new_account()
    xdr = payment(net.sandbox, DIST_KP, user.public_key, "3")
    first, second = asyncio.create_task(net.ledger.submit(xdr)), None
    await net.sandbox.wait_queued()
    second = asyncio.create_task(net.ledger.submit(xdr))  # joins the same wait
    await asyncio.sleep(0.01)
    await net.sandbox.close_ledger()
    a, b = await first, await second
    c = await net.ledger.submit(xdr)  # already applied: answered from the ledger at once
    assert a == b == c and a.successful
    assert balance(net.sandbox, user.public_key) == Decimal("103")


async def test_payments_paging_with_cursor(net: Net) -> None:
    user = await net.new_account()
    for amount in ("1", "2", "3"):
        await net.submit_and_close(payment(net.sandbox, DIST_KP, user.public_key, amount))
    first = await net.ledger.payments(user.public_key, None, limit=2)
    assert [p.amount for p in first.payments] == ["1.0000000", "2.0000000"]
    assert all(p.type == "payment" and p.asset == "stellar:native" for p in first.payments)
    second = await net.ledger.payments(user.public_key, first.next_cursor, limit=2)
    assert [p.amount for p in second.payments] == ["3.0000000"]
    empty = await net.ledger.payments(user.public_key, second.next_cursor, limit=2)
    assert empty.payments == [] and empty.next_cursor is None
    # Horizon's `_links.next` continues where the page stopped.
    body = (await net.ledger._client.get("/payments", params={"limit": 2})).json()
    following = (await net.ledger._client.get(body["_links"]["next"]["href"])).json()
    tokens = [r["paging_token"] for r in body["_embedded"]["records"]]
    assert [r["paging_token"] for r in following["_embedded"]["records"]] == [
        str(second.payments[0].paging_token)
    ]
    assert tokens == [p.paging_token for p in first.payments]
    with pytest.raises(LedgerNotFound):
        await net.ledger.payments(Keypair.random().public_key, None)


async def test_trustline_added_by_the_dev_route(net: Net) -> None:
    user = await net.new_account(xlm="10")
    assert not (await net.ledger.get_account(user.public_key)).trusts(USDC)
    path = f"/accounts/{user.public_key}/trustlines"
    response = await net.dev.post(path, json={"asset": USDC})
    assert response.status_code == 201
    assert (await net.ledger.get_account(user.public_key)).trusts(USDC)
    assert (await net.dev.post(path, json={"asset": USDC})).status_code == 200  # idempotent
    unauthorized = await net.dev.post(path, json={"asset": USDC, "authorized": False})
    assert unauthorized.status_code == 200
    assert not (await net.ledger.get_account(user.public_key)).trusts(USDC)
    ghost = Keypair.random().public_key
    response = await net.dev.post(f"/accounts/{ghost}/trustlines", json={"asset": USDC})
    assert response.status_code == 404
    assert response.json() == {"error": f"The account {ghost} does not exist in the sandbox."}
    response = await net.dev.post(path, json={"asset": "stellar:native"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "The asset stellar:native is not a configured Stellar asset with an issuer; "
        f"use one of: {USDC}."
    }


async def test_dev_route_input_errors(net: Net) -> None:
    cases = [
        ("/accounts", b"{", "The body must be valid JSON."),
        ("/accounts", b"[1]", "The body must be a JSON object."),
        (
            "/accounts",
            b'{"xlm": "0.5"}',
            "The field 'xlm' must be an amount of XLM from 1 to 100000000000 with at most 7 "
            'decimals, such as "100".',
        ),
        (
            "/accounts",
            b'{"trust": "stellar:USDC"}',
            "The field 'trust' must be a list of asset ids such as [\"stellar:USDC:G…\"].",
        ),
        (
            "/faults",
            b'{"kind": "explode"}',
            "The fault kind must be one of: "
            "drop_next_submission, gateway_timeout_after_apply, delay_inclusion, fail_next, "
            "account_error.",
        ),
        (
            "/faults",
            b'{"kind": "fail_next", "count": 0}',
            "The field 'count' must be an integer from 1 to 1000.",
        ),
    ]
    for path, body, sentence in cases:
        response = await net.dev.post(path, content=body)
        assert (response.status_code, response.json()) == (400, {"error": sentence}), path
    created = await net.dev.post("/accounts")  # empty body: 100 XLM, no trustlines
    account_id = created.json()["account_id"]
    assert balance(net.sandbox, account_id) == Decimal(100)


async def test_fault_gateway_timeout_after_apply(net: Net) -> None:
    user = await net.new_account()
    await net.fault(kind="gateway_timeout_after_apply")
    xdr = payment(net.sandbox, DIST_KP, user.public_key, "4")
    task = asyncio.create_task(net.ledger.submit(xdr))
    await net.sandbox.wait_queued()
    await net.sandbox.close_ledger()
    with pytest.raises(LedgerUnavailable) as info:
        await task
    assert info.value.status == 504
    tx_hash = next(iter(net.sandbox.ledger.transactions))
    assert (await net.ledger.get_transaction(tx_hash)).successful  # it did land
    again = await net.ledger.submit(xdr)  # the safe retry: same envelope, same answer
    assert again.successful and again.hash == tx_hash
    assert balance(net.sandbox, user.public_key) == Decimal("104")  # paid once


async def test_fault_drop_next_submission(net: Net) -> None:
    user = await net.new_account()
    await net.fault(kind="drop_next_submission")
    xdr = payment(net.sandbox, DIST_KP, user.public_key, "4")
    with pytest.raises(LedgerUnavailable) as info:
        await net.ledger.submit(xdr)  # answered at once: nothing is queued
    assert info.value.status == 504 and net.sandbox.ledger.queue == []
    await net.sandbox.close_ledger()
    assert net.sandbox.ledger.transactions == {}
    assert (await net.submit_and_close(xdr)).successful  # resubmitting the same envelope
    assert balance(net.sandbox, user.public_key) == Decimal("104")


async def test_fault_delay_inclusion_and_submit_timeout(net: Net) -> None:
    user = await net.new_account()
    await net.fault(kind="delay_inclusion", ledgers=2)
    task = asyncio.create_task(
        net.ledger.submit(payment(net.sandbox, DIST_KP, user.public_key, "1"))
    )
    await net.sandbox.wait_queued()
    for _ in range(2):
        await net.sandbox.close_ledger()
        assert not task.done()
    await net.sandbox.close_ledger()
    assert (await task).ledger == 4
    net.sandbox.submit_timeout_s = 0.05  # Horizon's wait, shortened: 504, still queued
    xdr = payment(net.sandbox, DIST_KP, user.public_key, "2")
    with pytest.raises(LedgerUnavailable) as info:
        await net.ledger.submit(xdr)
    assert info.value.status == 504 and len(net.sandbox.ledger.queue) == 1
    await net.sandbox.close_ledger()
    assert balance(net.sandbox, user.public_key) == Decimal("103")


async def test_fail_next_account_error_and_counters(net: Net) -> None:
    user, other = await net.new_account(), await net.new_account()
    await net.fault(kind="fail_next", count=2, status=503, route="GET /accounts/{id}")
    for _ in range(2):
        with pytest.raises(LedgerUnavailable) as info:
            await net.ledger.get_account(user.public_key)
        assert info.value.status == 503
    assert (await net.ledger.get_account(user.public_key)).account_id == user.public_key
    await net.fault(kind="account_error", account=user.public_key, status=500)
    for _ in range(3):
        with pytest.raises(LedgerUnavailable):
            await net.ledger.get_account(user.public_key)
    assert (await net.ledger.get_account(other.public_key)).account_id == other.public_key
    reads = net.sandbox.counters["GET /accounts/{id}"]
    assert (reads[user.public_key], reads[other.public_key]) == (6, 1)
    stats = (await net.dev.get("/stats")).json()
    assert stats["counters"]["GET /accounts/{id}"][user.public_key] == 6
    assert stats["faults"]["account_error"] == {user.public_key: 500}
    assert (await net.dev.delete("/faults")).status_code == 204
    assert (await net.ledger.get_account(user.public_key)).account_id == user.public_key
    await net.fault(kind="fail_next", status=429)
    with pytest.raises(LedgerUnavailable) as info:
        await net.ledger.latest_ledger()
    assert info.value.status == 429


async def test_close_ledger_dev_route_and_ledgers_page(net: Net) -> None:
    response = await net.dev.post("/close_ledger")
    assert response.status_code == 200 and response.json()["ledger"] == 2
    body = (await net.ledger._client.get("/ledgers", params={"order": "desc", "limit": 1})).json()
    (record,) = body["_embedded"]["records"]
    assert record["sequence"] == 2 and record["closed_at"].endswith("Z")
    nxt = (await net.ledger._client.get(body["_links"]["next"]["href"])).json()
    assert [r["sequence"] for r in nxt["_embedded"]["records"]] == [1]


async def test_sandbox_app_serves_under_sandbox_only() -> None:
    sandbox = make_sandbox()
    app = create_sandbox_app(sandbox)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/sandbox/horizon/")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
