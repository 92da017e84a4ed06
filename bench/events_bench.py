"""Business events: delivery rate to a local receiver (real HTTP, signed, verified) and the
delay from commit to delivery (p50, p99), beside the API's own write rate with the outbox.

1. The API's write rate: creates and status changes over ASGI + a SQLite file (each writes
   its event in the same database transaction).
2. Throughput: a backlog of those events, one dispatcher run (default concurrency) against
   a uvicorn receiver on a local socket: events delivered per second.
3. Latency: the worker running (EVENTS_POLL_S default), a status change every 20 ms; the
   delay from the RPC's answer (just after its commit) to the receiver's arrival.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from anchorpay.app import create_app
from anchorpay.events import verify_callback
from anchorpay.scheduler.event_delivery import EventDispatcher
from anchorpay.settings import Settings

USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USER = "GDJLBYYKMCXNVVNABOE66NYXQGIA5AC5D223Z2KF6ZEYK4UBCA7FKLTG"
CONFIG = Path(__file__).resolve().parent.parent / "config"
SECRET = "bench-secret-bench-secret-bench-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str], float] = {}
        self.count = 0

    async def event(self, request: Request) -> Response:
        payload = verify_callback(await request.body(), request.headers, SECRET)["payload"]
        tx = payload["transaction"]
        self.arrived.setdefault((tx["id"], tx["status"]), time.perf_counter())
        self.count += 1
        return Response(status_code=204)


async def _serve(app: Starlette, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    while True:
        if server.started:
            return server, task
        await asyncio.sleep(0.01)


def _settings(tmp: str, port: int, **extra: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
        stellar_network="testnet",
        horizon_url="http://horizon.invalid",
        custody_type="none",
        assets_file=CONFIG / "assets.toml",
        business_callback_url=f"http://127.0.0.1:{port}",
        business_callback_secret=SECRET,
        **extra,
    )


async def _create(client: httpx.AsyncClient) -> str:
    body = {
        "sep": "24",
        "kind": "deposit",
        "amount_expected": {"asset": USDC},
        "destination_account": USER,
    }
    tx_id: str = (await client.post("/transactions", json=body)).json()["id"]
    return tx_id


async def _change(client: httpx.AsyncClient, tx_id: str) -> None:
    params = {
        "transaction_id": tx_id,
        "amount_in": {"amount": "100", "asset": "iso4217:USD"},
        "amount_out": {"amount": "95", "asset": USDC},
        "fee_details": {"total": "5", "asset": "iso4217:USD"},
    }
    body = {"jsonrpc": "2.0", "method": "request_offchain_funds", "params": params, "id": 1}
    answer = (await client.post("/", json=body)).json()
    assert "result" in answer, answer


async def main(n: int = 300, latency_n: int = 200) -> None:
    receiver = Receiver()
    port = _free_port()
    server, serving = await _serve(
        Starlette(routes=[Route("/event", receiver.event, methods=["POST"])]), port
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # 1 + 2: writes with the worker off, then one dispatcher drains the backlog.
            app = create_app(_settings(tmp, port), run_worker=False)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                    start = time.perf_counter()
                    ids = [await _create(client) for _ in range(n)]
                    for tx_id in ids:
                        await _change(client, tx_id)
                    writes = 2 * n / (time.perf_counter() - start)
                dispatcher = EventDispatcher(app.state.services)
                start = time.perf_counter()
                sent = await dispatcher.run()
                rate = sent / (time.perf_counter() - start)
                await dispatcher.aclose()
                assert receiver.count == 2 * n, receiver.count

        with tempfile.TemporaryDirectory() as tmp:
            # 3: the worker delivers as changes commit.
            settings = _settings(tmp, port)
            app = create_app(settings, run_worker=True)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://b") as client:
                    ids = [await _create(client) for _ in range(latency_n)]
                    await asyncio.sleep(2)  # the creates' events are out of the way
                    committed: dict[tuple[str, str], float] = {}
                    for tx_id in ids:
                        await _change(client, tx_id)
                        committed[(tx_id, "pending_user_transfer_start")] = time.perf_counter()
                        await asyncio.sleep(0.02)
                    async with asyncio.timeout(30):
                        while True:
                            if all(k in receiver.arrived for k in committed):
                                break
                            await asyncio.sleep(0.05)
            delays = sorted(receiver.arrived[k] - t for k, t in committed.items())
            p50 = statistics.median(delays) * 1000
            p99 = delays[int(0.99 * (len(delays) - 1))] * 1000
    finally:
        server.should_exit = True
        await serving
    print(
        f"events: API writes with the outbox {writes:,.0f}/s (create + status change, ASGI + "
        f"SQLite); delivered {rate:,.0f} events/s to a local receiver (concurrency "
        f"{settings.events_delivery_concurrency}); commit to delivery p50 {p50:,.0f} ms, "
        f"p99 {p99:,.0f} ms (EVENTS_POLL_S={settings.events_poll_s:g})"
    )


if __name__ == "__main__":
    asyncio.run(main())
