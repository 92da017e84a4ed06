"""The worker reacts to a ledger close, not to its tick (issue 19): the app with its worker
and a separate sandbox over real HTTP, whose Horizon answers a submission 504 when the
ledger has not closed within 0.3 s (as Horizon does when inclusion outlasts its timeout).
The payout is then left `submitting` with its next attempt at least 15 s away
(PAYOUT_RETRY_BASE_S=30) and the worker ticks every 30 s; yet it completes right after the
ledger that holds it closes, looked up once, the envelope sent once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from anchorpay.sandbox.app import create_sandbox_app
from anchorpay.sandbox.network import Sandbox
from support.payout_fixtures import Env, app_settings, funded_deposit, running_app
from support.sandbox_fixtures import serve

SLOW = {"worker_tick_s": 30, "payout_retry_base_s": 30, "payout_retry_max_s": 60}


async def until(check: Any, timeout_s: float, step_s: float = 0.02) -> Any:
    """Poll `check()` (no ledger closes meanwhile) until it answers something truthy."""
    async with asyncio.timeout(timeout_s):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(step_s)


async def payout_of(env: Env, tx_id: str) -> dict[str, Any]:
    (payout,) = await env.payouts(tx_id)
    return payout


async def test_a_payout_left_in_flight_completes_when_its_ledger_closes(tmp_path: Path) -> None:
    assets = app_settings(tmp_path).load_assets()
    sandbox = Sandbox(assets, ledger_close_s=None, submit_timeout_s=0.3)
    async with (
        serve(create_sandbox_app(sandbox)) as sandbox_url,
        running_app(tmp_path, sandbox_url=sandbox_url, **SLOW) as env,
    ):
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key, amount_out="9")
        answer = await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert answer["status"] == "pending_stellar"

        async def answered_504() -> dict[str, Any] | None:
            payout = await payout_of(env, tx_id)
            return payout if payout["last_error"] is not None else None

        payout = await until(answered_504, timeout_s=5)
        tx_hash = payout["tx_hash"]
        assert (payout["state"], payout["attempts"]) == ("submitting", 2)
        assert payout["last_error"] == (
            f"Horizon did not confirm the submission of {tx_hash} (Horizon answered 504 for "
            "the transaction submission); it will be looked up and the same envelope "
            "resubmitted"
        )
        next_attempt = datetime.fromisoformat(payout["next_attempt_at"])
        assert next_attempt > datetime.now(UTC) + timedelta(seconds=10)
        assert sandbox.ledger.is_queued(tx_hash)

        await asyncio.sleep(1.0)  # a few ledger polls with nothing new: no look, no resend
        closed = time.monotonic()
        await env.close_ledger()

        async def completed() -> bool:
            return bool((await env.tx(tx_id))["status"] == "completed")

        await until(completed, timeout_s=3)
        assert time.monotonic() - closed < 3  # not the 15 s or more of its backoff

        payout = await payout_of(env, tx_id)
        assert (payout["state"], payout["attempts"], payout["tx_hash"]) == (
            "confirmed",
            2,
            tx_hash,
        )
        assert payout["ledger"] == sandbox.ledger.latest.sequence
        assert [s["id"] for s in (await env.tx(tx_id))["stellar_transactions"]] == [tx_hash]
        assert sandbox.counters["POST /transactions"] == {"": 1}  # sent once, never resent
        assert [p["transaction_hash"] for p in await env.payments_to(user.public_key)] == [tx_hash]
