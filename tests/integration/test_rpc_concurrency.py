"""Two refunds raced against SQLite: each fits alone, together they exceed amount_in. Exactly
one wins; the other is refused; the stored total never exceeds amount_in."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from anchorpay.store import transactions as repo
from support.app import USDC, AppClient, create_tx

USD = "iso4217:USD"
CONCURRENT = "was modified concurrently; re-read it and retry"


def call(method: str, params: dict[str, Any], id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": id}


async def funded_deposit(client: AppClient) -> str:
    tx_id: str = (await create_tx(client))["id"]
    steps = [
        call(
            "request_offchain_funds",
            {
                "transaction_id": tx_id,
                "amount_in": {"amount": "100", "asset": USD},
                "amount_out": {"amount": "95", "asset": USDC},
                "fee_details": {"total": "5", "asset": USD},
            },
        ),
        call("notify_offchain_funds_received", {"transaction_id": tx_id}),
    ]
    for step in steps:
        answer = (await client.rpc(step)).json()
        assert "result" in answer, answer
    assert answer["result"]["status"] == "pending_anchor"
    return tx_id


def refund(tx_id: str, refund_id: str, amount: str) -> dict[str, Any]:
    return call(
        "notify_refund_sent",
        {
            "transaction_id": tx_id,
            "refund": {
                "id": refund_id,
                "amount": {"amount": amount, "asset": USD},
                "amount_fee": {"amount": "0", "asset": USD},
            },
        },
    )


@pytest.mark.parametrize("attempt", range(3))
async def test_racing_refunds_never_exceed_amount_in(
    app_client: AppClient, monkeypatch: pytest.MonkeyPatch, attempt: int
) -> None:
    tx_id = await funded_deposit(app_client)
    barrier = asyncio.Barrier(2)
    original = repo.update

    async def update_after_both_validated(session: Any, tx: Any, *rest: Any) -> Any:
        # both requests have read and validated the same version before either writes
        async with asyncio.timeout(10):
            await barrier.wait()
        await asyncio.sleep(0.01 * attempt)
        return await original(session, tx, *rest)

    monkeypatch.setattr(repo, "update", update_after_both_validated)
    answers = await asyncio.gather(
        app_client.rpc(refund(tx_id, "r1", "60")), app_client.rpc(refund(tx_id, "r2", "60"))
    )
    monkeypatch.setattr(repo, "update", original)
    bodies = [a.json() for a in answers]
    wins = [b for b in bodies if "result" in b]
    losses = [b for b in bodies if "error" in b]
    assert len(wins) == 1 and len(losses) == 1, bodies
    error = losses[0]["error"]
    assert error["id"] == tx_id
    assert (error["code"], error["message"]) == (
        -32603,
        f"Transaction[{tx_id}] {CONCURRENT}",
    )
    stored = (await app_client.get(f"/transactions/{tx_id}")).json()
    assert stored["status"] == "pending_anchor"
    assert Decimal(stored["refunds"]["amount_refunded"]["amount"]) == Decimal("60")
    assert [p["id"] for p in stored["refunds"]["payments"]] == [
        wins[0]["result"]["refunds"]["payments"][0]["id"]
    ]
    # re-read and retry: now the machine refuses on the amounts, with the exact reason
    retry = (await app_client.rpc(refund(tx_id, "r3", "60"))).json()
    assert retry["error"] == {
        "id": tx_id,
        "code": -32602,
        "message": "Refund amount exceeds amount_in",
    }
