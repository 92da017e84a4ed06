"""Every JSON-RPC example of the Anchor Platform 2.8.4 user documentation, sent over HTTP as
the documentation sends it (a one-element batch, JSON numbers for amounts, `"success":
"true"` as a string), against a transaction in the state the documentation describes: each
gets the status the documentation says. The examples are in tests/cases/seed_examples.json,
copied verbatim from the document; only `<transaction_id>` is filled in.

Also the eight typical SEP-24 paths of spec/rpc.md §3.0, each sent as ONE batch over HTTP, in
both fee dialects (2.x `amount_fee`, 3.x `fee_details`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from anchorpay.adapters.ledger import LedgerTransaction
from anchorpay.domain.transaction import StellarPayment, StellarTransaction
from support.app import USDC, AppClient, ClientFactory, FakeLedger, SettingsFactory, create_tx

USD = "iso4217:USD"
DIST = "GDPWCPMWBW6PCXSXVZ4ISXK7245P6QEVSARTRJ4AG3ZMHBJTMCLZQ5GS"
USER_W = "GCKD4WFSODV3VHIKHU77VJOEW5ELEG4S5SDWYWJLPDUYJKVUCPTCY4IX"
EXAMPLES: dict[str, list[dict[str, Any]]] = json.loads(
    (Path(__file__).resolve().parents[1] / "cases" / "seed_examples.json").read_text()
)["examples"]  # the examples' amounts are JSON integers: they round-trip as sent
HASH = "7...9"  # the documentation's placeholder hash, known to the fake ledger


def ledger_tx(tx_hash: str, to: str, amount: str = "10.0000000") -> LedgerTransaction:
    when = datetime(2023, 7, 4, 12, 34, 56, tzinfo=UTC)
    payment = StellarPayment("1", amount, USDC.removeprefix("stellar:"), "payment", USER_W, to)
    record = StellarTransaction(tx_hash, when, "AAAA", [payment])
    return LedgerTransaction(tx_hash, 10, True, when, "AAAA", None, "none", USER_W, record)


def call(method: str, params: dict[str, Any], id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": id}


async def ok(client: AppClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    (answer,) = (await client.post("/", json=[call(method, params)])).json()
    assert "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


# Setups: from a new transaction to the state each example starts from.


async def deposit(client: AppClient, state: str) -> str:
    tx_id: str = (await create_tx(client))["id"]
    steps: list[tuple[str, dict[str, Any]]] = []
    if state != "incomplete":
        steps.append(
            (
                "request_offchain_funds",
                {
                    "amount_in": {"amount": "11", "asset": USD},
                    "amount_out": {"amount": "10", "asset": USDC},
                    "fee_details": {"total": "1", "asset": USD},
                },
            )
        )
    if state in ("funds", "trust", "error"):
        steps.append(("notify_offchain_funds_received", {}))
    if state == "trust":
        steps.append(("request_trust", {}))
    if state == "error":
        steps.append(("notify_transaction_error", {"message": "broken"}))
    for method, params in steps:
        await ok(client, method, {"transaction_id": tx_id, **params})
    return tx_id


async def withdrawal(client: AppClient, state: str) -> str:
    body = {"kind": "withdrawal", "destination_account": None, "source_account": USER_W}
    tx_id: str = (await create_tx(client, **body))["id"]
    if state == "incomplete":
        return tx_id
    amounts = {
        "amount_in": {"amount": "10", "asset": USDC},
        "amount_out": {"amount": "9", "asset": USD},
        "fee_details": {"total": "1", "asset": USDC},
    }
    result = await ok(client, "request_onchain_funds", {"transaction_id": tx_id, **amounts})
    if state == "start":
        return tx_id
    ledger: FakeLedger = client.services.ledger
    ledger.transactions[f"{tx_id}-in"] = ledger_tx(f"{tx_id}-in", result["destination_account"])
    params = {"transaction_id": tx_id, "stellar_transaction_id": f"{tx_id}-in"}
    await ok(client, "notify_onchain_funds_received", params)
    if state == "complete":
        await ok(client, "notify_offchain_funds_available", {"transaction_id": tx_id})
    return tx_id


CUSTODY: dict[str, Any] = {"custody_type": "stellar"}

# example → (kind, starting state, settings, expected status)
CASES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "request-offchain-funds.json": ("deposit", "incomplete", {}, "pending_user_transfer_start"),
    "kyc-in-process.json": ("deposit", "incomplete", {}, "pending_anchor"),
    "offchain-funds-received.json": ("deposit", "start", {}, "pending_anchor"),
    "offchain-funds-sent.json": ("deposit", "start", {}, "pending_external"),
    "onchain-funds-sent.json": ("deposit", "funds", {}, "completed"),
    "do-stellar-payment.json": ("deposit", "funds", CUSTODY, "pending_stellar"),
    "request-trust.json": ("deposit", "funds", {}, "pending_trust"),
    "trust-set.json": ("deposit", "trust", {}, "pending_anchor"),
    "refund-sent.json": ("deposit", "funds", {}, "refunded"),
    "transaction-error.json": ("deposit", "funds", {}, "error"),
    "transaction-expired.json": ("deposit", "start", {}, "expired"),
    "transaction-hold.json": ("deposit", "start", {}, "on_hold"),
    "transaction-recovery.json": ("deposit", "error", {}, "pending_anchor"),
    "request-onchain-funds.json": (
        "withdrawal",
        "incomplete",
        {"deposit_info_generator": "none"},
        "pending_user_transfer_start",
    ),
    "onchain-funds-received.json": ("withdrawal", "start", {}, "pending_anchor"),
    "amounts-updated.json": ("withdrawal", "funds", {}, "pending_anchor"),
    "offchain-funds-sent-2.json": ("withdrawal", "funds", {}, "completed"),
    "offchain-funds-available.json": ("withdrawal", "funds", {}, "pending_user_transfer_complete"),
    "offchain-funds-pending.json": ("withdrawal", "funds", {}, "pending_external"),
    "do-stellar-refund.json": ("withdrawal", "funds", CUSTODY, "pending_stellar"),
}


def test_every_example_of_the_document_is_covered() -> None:
    assert set(CASES) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_seed_example(
    name: str, settings_factory: SettingsFactory, client_factory: ClientFactory
) -> None:
    kind, state, overrides, expected = CASES[name]
    ledger = FakeLedger()
    ledger.add_account("GDJLBYYKMCXNVVNABOE66NYXQGIA5AC5D223Z2KF6ZEYK4UBCA7FKLTG", USDC)
    async with client_factory(settings_factory(**overrides), ledger=ledger) as client:
        tx_id = await (deposit if kind == "deposit" else withdrawal)(client, state)
        ledger.transactions[HASH] = ledger_tx(HASH, DIST)
        # Sent as the documentation's curl sends it: JSON numbers for amounts included.
        raw = json.dumps(EXAMPLES[name]).replace("<transaction_id>", tx_id)
        response = await client.post("/", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code == 200
        (answer,) = response.json()
        assert "result" in answer, answer
        assert answer["result"]["status"] == expected
        assert answer["result"]["message"] == EXAMPLES[name][0]["params"]["message"]


# The eight typical paths (spec §3.0), each one batch over HTTP, in both dialects.


def fee(dialect: str, amount: str, asset: str) -> dict[str, Any]:
    if dialect == "2.x":
        return {"amount_fee": {"amount": amount, "asset": asset}}
    return {"fee_details": {"total": amount, "asset": asset}}


def deposit_paths(dialect: str, tx: str) -> dict[str, list[tuple[str, dict[str, Any], str]]]:
    offchain = (
        "request_offchain_funds",
        {
            "amount_in": {"amount": "100", "asset": USD},
            "amount_out": {"amount": "95", "asset": USDC},
            **fee(dialect, "5", USD),
        },
        "pending_user_transfer_start",
    )
    received = ("notify_offchain_funds_received", {}, "pending_anchor")
    sent = ("notify_onchain_funds_sent", {"stellar_transaction_id": HASH}, "completed")
    interactive = (
        "notify_interactive_flow_completed",
        {
            "amount_in": {"amount": "100", "asset": USD},
            "amount_out": {"amount": "95", "asset": USDC},
            **fee(dialect, "5", USD),
        },
        "pending_anchor",
    )
    refund = {"id": "r1", "amount": {"amount": "10", "asset": USD}}
    refund["amount_fee"] = {"amount": "1", "asset": USD}
    return {
        "deposit short": [offchain, received, sent],
        "deposit with trust": [
            interactive,
            offchain,
            received,
            ("request_trust", {}, "pending_trust"),
            ("notify_trust_set", {"success": True}, "pending_anchor"),
            sent,
        ],
        "deposit with recovery": [
            offchain,
            received,
            ("notify_transaction_error", {"message": "stuck"}, "error"),
            ("notify_transaction_recovery", {}, "pending_anchor"),
            sent,
        ],
        "deposit with partial refund": [
            offchain,
            received,
            ("notify_refund_pending", {"refund": refund}, "pending_external"),
            ("notify_refund_sent", {"refund": refund}, "pending_anchor"),
            sent,
        ],
    }


def withdrawal_paths(dialect: str, tx: str) -> dict[str, list[tuple[str, dict[str, Any], str]]]:
    onchain = (
        "request_onchain_funds",
        {
            "amount_in": {"amount": "10", "asset": USDC},
            "amount_out": {"amount": "9", "asset": USD},
            **fee(dialect, "1", USDC),
        },
        "pending_user_transfer_start",
    )
    received = ("notify_onchain_funds_received", {"stellar_transaction_id": HASH}, "pending_anchor")
    sent = ("notify_offchain_funds_sent", {}, "completed")
    full = {"id": "r1", "amount": {"amount": "9", "asset": USDC}}
    full["amount_fee"] = {"amount": "1", "asset": USDC}
    return {
        "withdrawal short": [onchain, received, sent],
        "withdrawal via pending_external": [
            onchain,
            received,
            ("notify_offchain_funds_pending", {}, "pending_external"),
            sent,
        ],
        "withdrawal via the user": [
            onchain,
            received,
            ("notify_offchain_funds_available", {}, "pending_user_transfer_complete"),
            sent,
        ],
        "withdrawal full refund": [
            onchain,
            received,
            ("notify_refund_sent", {"refund": full}, "refunded"),
        ],
    }


PATHS = [
    (kind, name, dialect)
    for dialect in ("2.x", "3.x")
    for kind, builder in (("deposit", deposit_paths), ("withdrawal", withdrawal_paths))
    for name in builder(dialect, "")
]


@pytest.mark.parametrize(("kind", "name", "dialect"), PATHS)
async def test_typical_path_as_one_batch(
    kind: str, name: str, dialect: str, client_factory: ClientFactory
) -> None:
    ledger = FakeLedger()
    ledger.transactions[HASH] = ledger_tx(HASH, DIST)
    async with client_factory(ledger=ledger) as client:
        if kind == "deposit":
            tx_id = (await create_tx(client))["id"]
            steps = deposit_paths(dialect, tx_id)[name]
        else:
            created = await create_tx(
                client, kind="withdrawal", destination_account=None, source_account=USER_W
            )
            tx_id = created["id"]
            steps = withdrawal_paths(dialect, tx_id)[name]
        batch = [
            call(method, {"transaction_id": tx_id, **params}, i)
            for i, (method, params, _) in enumerate(steps)
        ]
        answers = (await client.post("/", json=batch)).json()
        assert [a.get("result", a.get("error"))["status"] for a in answers] == [
            status for _, _, status in steps
        ]
        final = answers[-1]["result"]
        assert "completed_at" in final
        assert final["fee_details"] == {
            "total": "5" if kind == "deposit" else "1",
            "asset": USD if kind == "deposit" else USDC,
        }
        assert final["amount_fee"]["amount"] == final["fee_details"]["total"]
