"""The workflow: ledger lookups, trustline reads, payout intents in the same database
transaction, and rollback of everything on any error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import select

from anchorpay import workflow
from anchorpay.adapters.ledger import LedgerTransaction, LedgerUnavailable
from anchorpay.domain.errors import InternalError, InvalidParams, InvalidRequest
from anchorpay.domain.transaction import StellarPayment, StellarTransaction
from anchorpay.store import payouts
from anchorpay.store.tables import PayoutRow
from support.app import USDC, USER, AppClient, ClientFactory, FakeLedger, SettingsFactory, create_tx

USD = "iso4217:USD"
HASH = "ab" * 32


def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}


async def funded_deposit(client: AppClient) -> str:
    tx_id: str = (await create_tx(client))["id"]
    for method, params in [
        (
            "request_offchain_funds",
            {
                "amount_in": {"amount": "100", "asset": USD},
                "amount_out": {"amount": "95", "asset": USDC},
                "fee_details": {"total": "5", "asset": USD},
            },
        ),
        ("notify_offchain_funds_received", {}),
    ]:
        answer = (await client.rpc(call(method, {"transaction_id": tx_id, **params}))).json()
        assert "result" in answer, answer
    return tx_id


async def payout_rows(client: AppClient) -> list[PayoutRow]:
    async with client.services.sessions() as session:
        return list((await session.exec(select(PayoutRow))).all())


def ledger_tx(tx_hash: str) -> LedgerTransaction:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    payment = StellarPayment(
        "1", "95.0000000", USDC.removeprefix("stellar:"), "payment", "GA", USER
    )
    record = StellarTransaction(tx_hash, when, "AAAA", [payment])
    return LedgerTransaction(tx_hash, 10, True, when, "AAAA", None, "none", "GA", record)


async def test_onchain_funds_sent_looks_the_hash_up(
    app_client: AppClient, ledger: FakeLedger
) -> None:
    tx_id = await funded_deposit(app_client)
    params = {"transaction_id": tx_id, "stellar_transaction_id": HASH}
    missing = (await app_client.rpc(call("notify_onchain_funds_sent", params))).json()
    assert missing["error"] == {
        "id": tx_id,
        "code": -32603,
        "message": f"Failed to retrieve Stellar transaction by ID[{HASH}]",
    }
    assert (await app_client.get(f"/transactions/{tx_id}")).json()["status"] == "pending_anchor"
    ledger.transactions[HASH] = ledger_tx(HASH)
    done = (await app_client.rpc(call("notify_onchain_funds_sent", params))).json()["result"]
    assert done["status"] == "completed"
    assert [s["id"] for s in done["stellar_transactions"]] == [HASH]


async def test_ledger_unavailable_is_the_same_error(
    app_client: AppClient, ledger: FakeLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    tx_id = await funded_deposit(app_client)

    async def down(tx_hash: str) -> LedgerTransaction:
        raise LedgerUnavailable("503 from Horizon")

    monkeypatch.setattr(ledger, "get_transaction", down)
    params = {"transaction_id": tx_id, "stellar_transaction_id": HASH}
    answer = (await app_client.rpc(call("notify_onchain_funds_sent", params))).json()
    assert answer["error"]["message"] == f"Failed to retrieve Stellar transaction by ID[{HASH}]"


@pytest.fixture
async def custody_client(client_factory: ClientFactory, settings_factory: SettingsFactory) -> Any:
    async with client_factory(settings_factory(custody_type="stellar")) as client:
        woken: list[int] = []
        client.services.wake_worker = lambda: woken.append(1)
        client.woken = woken  # type: ignore[attr-defined]
        yield client


@pytest.mark.parametrize("trusted", [True, False])
async def test_do_stellar_payment_records_the_intent(
    custody_client: Any, ledger: FakeLedger, trusted: bool
) -> None:
    if trusted:
        ledger.add_account(USER, USDC)
    tx_id = await funded_deposit(custody_client)
    answer = (
        await custody_client.rpc(call("do_stellar_payment", {"transaction_id": tx_id}))
    ).json()
    assert answer["result"]["status"] == ("pending_stellar" if trusted else "pending_trust")
    (row,) = await payout_rows(custody_client)
    assert (row.transaction_id, row.purpose, row.destination, row.asset, row.amount) == (
        tx_id,
        "payment",
        USER,
        USDC,
        "95",
    )
    assert row.state == (payouts.QUEUED if trusted else payouts.WAITING_TRUST)
    assert row.adapter == "stellar"
    assert custody_client.woken == [1]


async def test_trustline_read_timeout_means_no_trustline(
    client_factory: ClientFactory,
    settings_factory: SettingsFactory,
    ledger: FakeLedger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    async def slow(account_id: str) -> Any:
        await asyncio.sleep(5)

    monkeypatch.setattr(ledger, "get_account", slow)
    settings = settings_factory(custody_type="stellar", trustline_read_timeout_s=0.05)
    async with client_factory(settings) as client:
        tx_id = await funded_deposit(client)
        answer = (await client.rpc(call("do_stellar_payment", {"transaction_id": tx_id}))).json()
        assert answer["result"]["status"] == "pending_trust"


async def test_a_failing_side_effect_rolls_everything_back(
    custody_client: Any, ledger: FakeLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.add_account(USER, USDC)
    tx_id = await funded_deposit(custody_client)
    before = (await custody_client.get(f"/transactions/{tx_id}")).json()

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise payouts.PayoutConflict(f"Transaction[{tx_id}] already has an open payment payout")

    monkeypatch.setattr(payouts, "record_intent", refuse)
    answer = (
        await custody_client.rpc(call("do_stellar_payment", {"transaction_id": tx_id}))
    ).json()
    assert answer["error"] == {
        "id": tx_id,
        "code": -32602,
        "message": f"Transaction[{tx_id}] already has an open payment payout",
    }
    assert (await custody_client.get(f"/transactions/{tx_id}")).json() == before
    assert await payout_rows(custody_client) == []
    assert custody_client.woken == []


async def test_in_same_transaction_commits_or_rolls_back_with_the_change(
    app_client: AppClient,
) -> None:
    services = app_client.services
    tx_id = (await create_tx(app_client))["id"]
    seen: list[str] = []

    async def fails(session: Any) -> None:
        seen.append("called")
        raise RuntimeError("crash after the write")

    with pytest.raises(RuntimeError):
        await workflow.run_method(
            services,
            "notify_transaction_error",
            {"transaction_id": tx_id, "message": "m"},
            in_same_transaction=fails,
        )
    assert seen == ["called"]
    assert (await app_client.get(f"/transactions/{tx_id}")).json()["status"] == "incomplete"

    async def succeeds(session: Any) -> None:
        seen.append("ok")

    tx = await workflow.run_method(
        services,
        "notify_transaction_error",
        {"transaction_id": tx_id, "message": "m"},
        in_same_transaction=succeeds,
    )
    assert tx.status == "error" and tx.version == 1
    assert (await app_client.get(f"/transactions/{tx_id}")).json()["status"] == "error"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        (None, InvalidParams("params must be a JSON object with a transaction_id")),
        ({}, InvalidRequest("Transaction with id[null] is not found")),
        ({"transaction_id": 7}, InvalidParams("transaction_id must be a string")),
        ({"transaction_id": "nope"}, InvalidRequest("Transaction with id[nope] is not found")),
    ],
)
async def test_transaction_id_errors(
    app_client: AppClient, params: Any, error: InternalError
) -> None:
    with pytest.raises(type(error)) as info:
        await workflow.run_method(app_client.services, "notify_transaction_error", params)
    assert info.value.message == error.message
