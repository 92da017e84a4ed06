"""The RPC over the ASGI app and a real SQLite file: status changes and reads per second.
In-process transport (no sockets) so the number is the service's own cost."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx

from anchorpay.app import create_app
from anchorpay.settings import Settings

USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USER = "GDJLBYYKMCXNVVNABOE66NYXQGIA5AC5D223Z2KF6ZEYK4UBCA7FKLTG"
CONFIG = Path(__file__).resolve().parent.parent / "config"


def call(method: str, params: dict[str, object], id: int) -> dict[str, object]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": id}


async def main(n: int = 300) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
            stellar_network="testnet",
            horizon_url="http://horizon.invalid",
            custody_type="none",
            assets_file=CONFIG / "assets.toml",
        )
        app = create_app(settings, run_worker=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                ids = []
                start = time.perf_counter()
                for _ in range(n):
                    body = {
                        "sep": "24",
                        "kind": "deposit",
                        "amount_expected": {"asset": USDC},
                        "destination_account": USER,
                    }
                    ids.append((await client.post("/transactions", json=body)).json()["id"])
                created = n / (time.perf_counter() - start)

                start = time.perf_counter()
                for i, tx_id in enumerate(ids):
                    params = {
                        "transaction_id": tx_id,
                        "amount_in": {"amount": "100", "asset": "iso4217:USD"},
                        "amount_out": {"amount": "95", "asset": USDC},
                        "fee_details": {"total": "5", "asset": "iso4217:USD"},
                    }
                    r = await client.post("/", json=call("request_offchain_funds", params, i))
                    assert "result" in r.json(), r.text
                changes = n / (time.perf_counter() - start)

                start = time.perf_counter()
                for i, tx_id in enumerate(ids):
                    r = await client.post(
                        "/", json=call("get_transaction", {"transaction_id": tx_id}, i)
                    )
                    assert "result" in r.json(), r.text
                reads = n / (time.perf_counter() - start)
    print(
        f"rpc over ASGI + SQLite: {created:,.0f} creates/s, "
        f"{changes:,.0f} status changes/s, {reads:,.0f} get_transaction/s"
    )
