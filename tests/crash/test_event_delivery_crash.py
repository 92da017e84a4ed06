"""A worker SIGKILLed while a callback is in flight: a restarted worker (a real `anchorpay
worker` process on the same SQLite file) delivers every event, the interrupted one again,
each transaction's events in order, none lost."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from support.event_receiver import SECRET, Receiver, receiving
from support.payout_fixtures import DIST, USD, USDC, Env, running_app
from support.process_fixtures import Workers
from support.sandbox_fixtures import free_port

STATUSES = ["incomplete", "pending_user_transfer_start", "pending_anchor"]


async def three_changes(env: Env) -> str:
    created = await env.client.post(
        "/transactions",
        json={
            "sep": "24",
            "kind": "deposit",
            "amount_expected": {"asset": USDC},
            "destination_account": DIST,
        },
    )
    assert created.status_code == 201, created.text
    tx_id: str = created.json()["id"]
    await env.ok(
        "request_offchain_funds",
        {
            "transaction_id": tx_id,
            "amount_in": {"amount": "10", "asset": USD},
            "amount_out": {"amount": "9", "asset": USDC},
            "fee_details": {"total": "1", "asset": USD},
        },
    )
    await env.ok("notify_offchain_funds_received", {"transaction_id": tx_id})
    return tx_id


async def test_worker_killed_mid_delivery_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    held = asyncio.Event()
    release = asyncio.Event()
    target: dict[str, str] = {}

    async def hang_once(payload: dict[str, Any], attempt: int) -> None:
        tx = payload["transaction"]
        if tx["id"] == target.get("tx") and tx["status"] == STATUSES[1] and attempt == 1:
            held.set()
            await asyncio.wait_for(release.wait(), 30)

    receiver = Receiver(hold=hang_once)
    async with (
        receiving(receiver, port),
        running_app(tmp_path, run_worker=False, custody_type="none") as env,
    ):
        tx_ids = [await three_changes(env) for _ in range(3)]
        target["tx"] = tx_ids[0]
        workers = Workers(
            tmp_path,
            str(env.client.base_url).rstrip("/"),
            CUSTODY_TYPE="none",
            BUSINESS_CALLBACK_URL=f"http://127.0.0.1:{port}",
            BUSINESS_CALLBACK_SECRET=SECRET,
            EVENTS_POLL_S="0.05",
            EVENTS_LEASE_S="1",
            EVENTS_DELIVERY_TIMEOUT_S="0.8",
            EVENTS_RETRY_BASE_S="0.05",
            EVENTS_RETRY_MAX_S="0.2",
        )
        try:
            first = workers.start()
            await asyncio.wait_for(held.wait(), 30)
            os.kill(first.pid, signal.SIGKILL)  # the callback is in flight
            assert first.wait(10) == -signal.SIGKILL
            release.set()

            workers.start()
            arrived = {tx_id: await receiver.until_accepted(tx_id, 3, 30) for tx_id in tx_ids}
            # The worker records a batch's outcomes once the whole batch was answered: the
            # receiver may have the last event before the feed says it was delivered.
            async with asyncio.timeout(30):
                while True:
                    answer = await env.client.get("/events", params={"limit": 100})
                    feed = answer.json()["events"]
                    if all(e["delivery"]["state"] == "delivered" for e in feed):
                        break
                    await asyncio.sleep(0.05)
        finally:
            workers.stop()

    assert receiver.invalid == 0
    for tx_id in tx_ids:
        assert [p["transaction"]["status"] for p in arrived[tx_id]] == STATUSES
    interrupted = arrived[tx_ids[0]][1]["id"]
    attempts = [a.status for a in receiver.attempts if a.event_id == interrupted]
    assert len(attempts) == 2  # the one the dead worker never heard back from, then again
    assert len(feed) == 9
    assert {e["delivery"]["state"] for e in feed} == {"delivered"}
    assert "Traceback" not in workers.logs(), workers.logs()
