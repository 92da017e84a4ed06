"""`transfer_received_at` over HTTP (issue 16): set when the business says the off-chain
funds arrived (spec/rpc.md §2.5), returned by the RPC and by REST, and usable to order the
listing. (The on-chain road, the observer, is in test_observer_sandbox.py.)"""

from __future__ import annotations

from typing import Any

from support.app import USDC, AppClient, ClientFactory, create_tx

USD = "iso4217:USD"


async def rpc(client: AppClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    (answer,) = (await client.post("/", json=[call])).json()
    assert "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


async def waiting_deposit(client: AppClient) -> str:
    tx_id: str = (await create_tx(client))["id"]
    await rpc(
        client,
        "request_offchain_funds",
        {
            "transaction_id": tx_id,
            "amount_in": {"amount": "11", "asset": USD},
            "amount_out": {"amount": "10", "asset": USDC},
            "fee_details": {"total": "1", "asset": USD},
        },
    )
    return tx_id


async def test_offchain_funds_received_is_returned_and_orders_the_listing(
    client_factory: ClientFactory,
) -> None:
    async with client_factory() as client:
        late, early, none = [await waiting_deposit(client) for _ in range(3)]
        assert "transfer_received_at" not in (await client.get(f"/transactions/{none}")).json()

        received = await rpc(
            client,
            "notify_offchain_funds_received",
            {
                "transaction_id": late,
                "external_transaction_id": "bank-1",
                "funds_received_at": "2026-03-01T12:00:00+01:00",  # stored in UTC
            },
        )
        assert received["status"] == "pending_anchor"
        assert received["transfer_received_at"] == "2026-03-01T11:00:00Z"
        await rpc(
            client,
            "notify_offchain_funds_received",
            {
                "transaction_id": early,
                "external_transaction_id": "bank-2",
                "funds_received_at": "2026-02-01T00:00:00.250Z",
            },
        )
        rest = (await client.get(f"/transactions/{early}")).json()
        assert rest["transfer_received_at"] == "2026-02-01T00:00:00.250Z"
        got = await rpc(client, "get_transaction", {"transaction_id": late})
        assert got["transfer_received_at"] == "2026-03-01T11:00:00Z"

        listing = await client.get(
            "/transactions",
            params={"order_by": "transfer_received_at", "statuses": "pending_anchor"},
        )
        assert [t["id"] for t in listing.json()["records"]] == [early, late]
