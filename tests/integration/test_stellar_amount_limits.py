"""Amounts the worker cannot pay are refused at the API (issue 13 part 5): an amount in a
Stellar asset above 922337203685.4775807 (int64 stroops) or with more than 7 decimals gets
-32602 from the RPC and 400 from `POST /transactions`, and nothing is stored.

The configured USDC allows 7 decimals, so the reference's own decimals check answers an
eighth decimal first; `loose_client` configures USDC without `significant_decimals`, so only
Stellar's limit applies to it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from anchorpay.adapters.ledger import LedgerTransaction
from anchorpay.domain.transaction import StellarPayment, StellarTransaction
from anchorpay.store import transactions as repo
from anchorpay.store.tables import PayoutRow
from support.app import (
    DIST,
    USDC,
    USER,
    AppClient,
    ClientFactory,
    FakeLedger,
    SettingsFactory,
    create_tx,
    deposit_body,
)

USD = "iso4217:USD"
HASH = "cd" * 32
MAX = "922337203685.4775807"
ABOVE_MAX = "922337203685.4775808"


def too_large(field: str) -> str:
    return f"{field}.amount exceeds the largest amount Stellar can hold (922337203685.4775807)"


def too_precise(field: str) -> str:
    return f"{field}.amount has more than 7 decimals, more than Stellar can hold"


def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}


@pytest.fixture
async def loose_client(
    client_factory: ClientFactory, settings_factory: SettingsFactory, tmp_path: Path
) -> AsyncIterator[AppClient]:
    """Custody on; USDC without significant_decimals (only Stellar's 7 apply), USD with 2."""
    assets = tmp_path / "assets.toml"
    assets.write_text(
        f'[[assets]]\nid = "{USDC}"\ndistribution_account = "{DIST}"\n\n'
        f'[[assets]]\nid = "{USD}"\nsignificant_decimals = 2\n'
    )
    settings = settings_factory(assets_file=assets, custody_type="stellar")
    async with client_factory(settings) as client:
        client.services.wake_worker = lambda: None
        yield client


@pytest.fixture
async def custody_client(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> AsyncIterator[AppClient]:
    """The configured assets (USDC with 7 decimals), custody on."""
    async with client_factory(settings_factory(custody_type="stellar")) as client:
        client.services.wake_worker = lambda: None
        yield client


async def ok(client: AppClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    answer = (await client.rpc(call(method, params))).json()
    assert "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


async def snapshot(client: AppClient, tx_id: str) -> tuple[Any, ...]:
    """Everything a refused call could have changed: the answer, the stored row, payouts."""
    async with client.services.sessions() as session:
        stored = await repo.get(session, tx_id)
        payouts = list((await session.exec(select(PayoutRow))).all())
    answer = (await client.get(f"/transactions/{tx_id}")).json()
    return answer, stored, [(p.transaction_id, p.amount, p.state) for p in payouts]


async def refused(client: AppClient, tx_id: str, method: str, params: dict[str, Any]) -> str:
    """Call `method`, expect -32602, prove nothing changed; the message."""
    before = await snapshot(client, tx_id)
    answer = (await client.rpc(call(method, {"transaction_id": tx_id, **params}))).json()
    assert "result" not in answer, answer
    assert answer["error"]["code"] == -32602, answer
    assert await snapshot(client, tx_id) == before
    message: str = answer["error"]["message"]
    return message


def interactive(amount_out: str, fee: str = "5") -> dict[str, Any]:
    """notify_interactive_flow_completed for a deposit: USD in, USDC out."""
    return {
        "amount_in": {"amount": "100", "asset": USD},
        "amount_out": {"amount": amount_out, "asset": USDC},
        "amount_expected": {"amount": "100"},
        "fee_details": {"total": fee, "asset": USD},
    }


def onchain(amount_in: str, fee: str = "0") -> dict[str, Any]:
    """request_onchain_funds for a withdrawal: USDC in, USD out, the fee in USDC."""
    return {
        "amount_in": {"amount": amount_in, "asset": USDC},
        "amount_out": {"amount": "95", "asset": USD},
        "fee_details": {"total": fee, "asset": USDC},
    }


async def test_interactive_deposit_amount_out_above_the_max(custody_client: AppClient) -> None:
    tx_id = (await create_tx(custody_client))["id"]
    message = await refused(
        custody_client, tx_id, "notify_interactive_flow_completed", interactive(ABOVE_MAX)
    )
    assert message == too_large("amount_out")
    # The reference's decimals check still answers first (USDC allows 7 here).
    message = await refused(
        custody_client, tx_id, "notify_interactive_flow_completed", interactive("1.00000001")
    )
    assert message == "'1.00000001' has invalid significant decimals. Expected: '7'"
    done = await ok(
        custody_client,
        "notify_interactive_flow_completed",
        {"transaction_id": tx_id, **interactive(MAX)},
    )
    assert done["status"] == "pending_anchor"
    assert done["amount_out"] == {"amount": MAX, "asset": USDC}


async def test_eight_decimals_are_refused_trailing_zeros_are_not(loose_client: AppClient) -> None:
    tx_id = (await create_tx(loose_client))["id"]
    method = "notify_interactive_flow_completed"
    assert await refused(loose_client, tx_id, method, interactive("0.00000001")) == too_precise(
        "amount_out"
    )
    done = await ok(loose_client, method, {"transaction_id": tx_id, **interactive("1.50000000")})
    assert done["amount_out"] == {"amount": "1.50000000", "asset": USDC}  # stored as sent


async def test_request_onchain_funds_withdrawal_limits(loose_client: AppClient) -> None:
    tx_id = (
        await create_tx(
            loose_client, kind="withdrawal", destination_account=None, source_account=USER
        )
    )["id"]
    method = "request_onchain_funds"
    assert await refused(loose_client, tx_id, method, onchain(ABOVE_MAX)) == too_large("amount_in")
    assert await refused(loose_client, tx_id, method, onchain("1e400")) == too_large("amount_in")
    assert await refused(loose_client, tx_id, method, onchain("10.000000001")) == too_precise(
        "amount_in"
    )
    # A fee in the Stellar asset goes through the same check.
    assert await refused(loose_client, tx_id, method, onchain("10", fee="0.00000001")) == (
        too_precise("fee_details")
    )
    # NaN and Infinity are not amounts: as strings they are invalid, as JSON literals the
    # whole body is refused.
    assert (
        await refused(loose_client, tx_id, method, onchain("NaN")) == "amount_in.amount is invalid"
    )
    assert await refused(loose_client, tx_id, method, onchain("Infinity")) == (
        "amount_in.amount is invalid"
    )
    before = await snapshot(loose_client, tx_id)
    raw = (
        '{"jsonrpc": "2.0", "id": 1, "method": "request_onchain_funds", "params": '
        f'{{"transaction_id": "{tx_id}", "amount_in": {{"amount": NaN, "asset": "{USDC}"}}}}}}'
    )
    response = await loose_client.post(
        "/", content=raw, headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()) == (
        400,
        {"error": "Your request body is wrong in some way."},
    )
    assert await snapshot(loose_client, tx_id) == before
    done = await ok(loose_client, method, {"transaction_id": tx_id, **onchain(MAX, fee="0")})
    assert done["status"] == "pending_user_transfer_start"


async def test_a_huge_json_number_is_refused_at_once(loose_client: AppClient) -> None:
    tx_id = (
        await create_tx(
            loose_client, kind="withdrawal", destination_account=None, source_account=USER
        )
    )["id"]
    before = await snapshot(loose_client, tx_id)
    for number, message in [
        ("1e999999999", "amount_in.amount is invalid"),  # never expanded to a billion digits
        ("1e400", too_large("amount_in")),
        ("1e-999999999", "amount_in.amount is invalid"),
    ]:
        raw = (
            '{"jsonrpc": "2.0", "id": 1, "method": "request_onchain_funds", "params": '
            f'{{"transaction_id": "{tx_id}", "amount_in": {{"amount": {number}, '
            f'"asset": "{USDC}"}}, "amount_out": {{"amount": "95", "asset": "{USD}"}}, '
            f'"fee_details": {{"total": "0", "asset": "{USDC}"}}}}}}'
        )
        started = time.monotonic()
        answer = (
            await loose_client.post("/", content=raw, headers={"Content-Type": "application/json"})
        ).json()
        assert time.monotonic() - started < 5
        assert answer["error"] == {"id": tx_id, "code": -32602, "message": message}
    assert await snapshot(loose_client, tx_id) == before


def ledger_payment(tx_hash: str, amount: str) -> LedgerTransaction:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    payment = StellarPayment("1", amount, USDC.removeprefix("stellar:"), "payment", USER, DIST)
    record = StellarTransaction(tx_hash, when, "AAAA", [payment])
    return LedgerTransaction(tx_hash, 10, True, when, "AAAA", None, "none", USER, record)


async def test_do_stellar_refund_limits(loose_client: AppClient, ledger: FakeLedger) -> None:
    """A withdrawal's refund is in amount_in_asset (USDC): Stellar's limits apply to it and
    to its fee, and a refused refund queues no payout."""
    ledger.transactions[HASH] = ledger_payment(HASH, "10.0000000")
    tx_id = (
        await create_tx(
            loose_client, kind="withdrawal", destination_account=None, source_account=USER
        )
    )["id"]
    await ok(loose_client, "request_onchain_funds", {"transaction_id": tx_id, **onchain("10")})
    received = await ok(
        loose_client,
        "notify_onchain_funds_received",
        {"transaction_id": tx_id, "stellar_transaction_id": HASH},
    )
    assert received["status"] == "pending_anchor"

    def refund(amount: str, fee: str = "0") -> dict[str, Any]:
        return {
            "refund": {
                "amount": {"amount": amount, "asset": USDC},
                "amount_fee": {"amount": fee, "asset": USDC},
            }
        }

    method = "do_stellar_refund"
    assert await refused(loose_client, tx_id, method, refund(ABOVE_MAX)) == too_large(
        "refund.amount"
    )
    assert await refused(loose_client, tx_id, method, refund("1.00000001")) == too_precise(
        "refund.amount"
    )
    assert await refused(loose_client, tx_id, method, refund("1", fee="1e400")) == too_large(
        "refund.amountFee"
    )
    assert await refused(loose_client, tx_id, method, refund("1", fee="0.000000001")) == (
        too_precise("refund.amountFee")
    )
    # Within the limits, the existing rule still answers.
    assert await refused(loose_client, tx_id, method, refund("11")) == (
        "Refund amount exceeds amount_in"
    )
    done = await ok(loose_client, method, {"transaction_id": tx_id, **refund("10.00000000")})
    assert done["status"] == "pending_stellar"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (ABOVE_MAX, too_large("amount_expected")),
        ("922337203686", too_large("amount_expected")),
        (10**30, too_large("amount_expected")),  # a JSON number
        ("0.00000001", too_precise("amount_expected")),
        ("1.000000010", too_precise("amount_expected")),
    ],
)
async def test_create_refuses_what_stellar_cannot_hold(
    loose_client: AppClient, amount: Any, message: str
) -> None:
    body = deposit_body(amount_expected={"asset": USDC, "amount": amount})
    response = await loose_client.post("/transactions", json=body)
    assert (response.status_code, response.json()) == (400, {"error": message})
    async with loose_client.services.sessions() as session:
        assert await repo.count(session) == 0


async def test_create_accepts_the_max_and_trailing_zeros(loose_client: AppClient) -> None:
    for amount in (MAX, "1.50000000", "0.0000001"):
        tx = await create_tx(loose_client, amount_expected={"asset": USDC, "amount": amount})
        assert tx["amount_expected"] == {"amount": amount, "asset": USDC}


async def test_create_with_the_configured_decimals(app_client: AppClient) -> None:
    """USDC allows 7 decimals: that check answers first; the max is Stellar's."""
    body = deposit_body(amount_expected={"asset": USDC, "amount": ABOVE_MAX})
    response = await app_client.post("/transactions", json=body)
    assert (response.status_code, response.json()) == (400, {"error": too_large("amount_expected")})
    tx = await create_tx(app_client, amount_expected={"asset": USDC, "amount": MAX})
    assert tx["amount_expected"]["amount"] == MAX
    for huge in ("1e999999999", "1e-999999999"):
        raw = (
            '{"kind": "deposit", "destination_account": "' + USER + '", '
            '"amount_expected": {"asset": "' + USDC + '", "amount": ' + huge + "}}"
        )
        started = time.monotonic()
        response = await app_client.post(
            "/transactions", content=raw, headers={"Content-Type": "application/json"}
        )
        assert time.monotonic() - started < 5
        assert (response.status_code, response.json()) == (
            400,
            {"error": 'amount_expected.amount must be a decimal string such as "10.5"'},
        )
