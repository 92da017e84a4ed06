"""`POST /sandbox/payments`: the sandbox signs and submits a wallet's payment, which goes
through the ledger's checks like any envelope. Over httpx's ASGI transport; ledgers closed by
hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair

from anchorpay.sandbox.app import Sandbox, create_sandbox_app
from support.sandbox_fixtures import DIST, USDC, balance, make_sandbox


@dataclass
class Net:
    sandbox: Sandbox
    dev: httpx.AsyncClient  # base URL /sandbox

    async def account(self, **body: Any) -> dict[str, str]:
        response = await self.dev.post("/accounts", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, str] = response.json()
        return created

    async def pay_and_close(self, **body: Any) -> httpx.Response:
        task = asyncio.create_task(self.dev.post("/payments", json=body))
        await self.sandbox.wait_queued()
        await self.sandbox.close_ledger()
        return await task


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    sandbox = make_sandbox()
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="http://sb/sandbox") as dev:
        yield Net(sandbox, dev)


async def test_pay_from_a_sandbox_account_waits_for_its_ledger(net: Net) -> None:
    user = await net.account(trust=[USDC])
    funded = await net.pay_and_close(**{"from": DIST, "to": user["account_id"]}, asset=USDC,
                                     amount="25")  # fmt: skip
    assert funded.status_code == 200, funded.text
    tx_hash = funded.json()["hash"]
    assert funded.json() == {"hash": tx_hash, "ledger": 2, "successful": True}
    assert net.sandbox.ledger.transactions[tx_hash].source_account == DIST
    assert balance(net.sandbox, user["account_id"], USDC) == Decimal("25")

    paid = await net.pay_and_close(
        **{"from": user["account_id"]}, to=DIST, asset=USDC, amount="10.5", memo="4242",
        memo_type="id",
    )  # fmt: skip
    assert paid.status_code == 200, paid.text
    record = net.sandbox.ledger.transactions[paid.json()["hash"]]
    assert (record.memo_type, record.memo, record.source_account) == (
        "id",
        "4242",
        user["account_id"],
    )
    assert record.operations[0].details["amount"] == "10.5000000"
    assert balance(net.sandbox, user["account_id"], USDC) == Decimal("14.5")


async def test_pay_with_a_secret_and_without_waiting(net: Net) -> None:
    user = await net.account(xlm="50")
    outsider = Keypair.random().public_key
    first = await net.dev.post(
        "/payments",
        json={"from_secret": user["secret"], "to": DIST, "asset": "stellar:native",
              "amount": "1", "memo": "hello", "wait": False},
    )  # fmt: skip
    second = await net.dev.post(
        "/payments",
        json={"from_secret": user["secret"], "to": DIST, "asset": "stellar:native",
              "amount": "2", "wait": False},
    )  # fmt: skip
    assert (first.status_code, first.json()["status"]) == (202, "queued")
    assert (second.status_code, second.json()["status"]) == (202, "queued")
    await net.sandbox.close_ledger()
    ledger = net.sandbox.ledger
    assert ledger.transactions[first.json()["hash"]].memo == "hello"
    assert ledger.transactions[second.json()["hash"]].successful  # the next sequence number
    assert balance(net.sandbox, user["account_id"]) == Decimal("50") - 3 - Decimal("0.00002")
    assert outsider not in ledger.accounts


async def test_the_ledger_refuses_what_it_refuses_from_anyone(net: Net) -> None:
    stranger = await net.account()  # no USDC trustline
    failed = await net.pay_and_close(**{"from": DIST}, to=stranger["account_id"], asset=USDC,
                                     amount="1")  # fmt: skip
    assert failed.status_code == 400
    body = failed.json()
    assert body["error"] == "The payment failed in ledger 2: op_no_trust."
    assert body["result_codes"] == {"transaction": "tx_failed", "operations": ["op_no_trust"]}
    assert net.sandbox.ledger.transactions[body["hash"]].successful is False

    broke = await net.pay_and_close(
        **{"from": stranger["account_id"]}, to=DIST, asset=USDC, amount="1"
    )
    assert broke.status_code == 400
    assert broke.json()["error"] == "The payment failed in ledger 3: op_src_no_trust."

    nobody = Keypair.random()  # refused before any ledger: it consumes nothing
    refused = await net.dev.post(
        "/payments",
        json={"from_secret": nobody.secret, "to": DIST, "asset": USDC, "amount": "1"},
    )
    assert (refused.status_code, refused.json()) == (
        400,
        {
            "error": "The ledger refused the payment: tx_no_source_account.",
            "hash": None,
            "result_codes": {"transaction": "tx_no_source_account"},
        },
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"to": DIST}, "Give exactly one of 'from_secret' or 'from' (the payer)."),
        (
            {"from": DIST, "from_secret": "S", "to": DIST},
            "Give exactly one of 'from_secret' or 'from' (the payer).",
        ),
        (
            {"from": "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5", "to": DIST},
            "The account GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5 was not "
            "created by this sandbox (POST /sandbox/accounts); give its secret as "
            "'from_secret' instead.",
        ),
        (
            {"from_secret": "nope", "to": DIST},
            "The field 'from_secret' must be a secret seed (S…).",
        ),
        (
            {"from": DIST, "to": "G123"},
            "The field 'to' must be a Stellar account id (G…), not 'G123'.",
        ),
        (
            {"from": DIST, "to": DIST, "asset": "USDC"},
            "The asset 'USDC' is not a Stellar asset id such as stellar:native or stellar:USDC:G….",
        ),
        (
            {"from": DIST, "to": DIST, "asset": USDC, "amount": "1.00000001"},
            "The field 'amount' must be a positive amount with at most 7 decimals, such as \"10\".",
        ),
        (
            {"from": DIST, "to": DIST, "asset": USDC, "amount": "1", "memo_type": "return"},
            "The field 'memo_type' must be text, id or hash.",
        ),
        (
            {
                "from": DIST,
                "to": DIST,
                "asset": USDC,
                "amount": "1",
                "memo": "x",
                "memo_type": "id",
            },
            "The memo 'x' is not a valid id memo (id: a 64-bit number; text: up to 28 bytes; "
            "hash: 32 bytes in hex).",
        ),
        ({"from": DIST, "wait": "no"}, "The field 'wait' must be true or false."),
    ],
)
async def test_bad_input_is_one_sentence_and_submits_nothing(
    net: Net, body: dict[str, Any], error: str
) -> None:
    response = await net.dev.post("/payments", json=body)
    assert (response.status_code, response.json()) == (400, {"error": error})
    assert net.sandbox.ledger.queue == []
