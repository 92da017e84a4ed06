"""An intent recorded by an API server without a worker (`serve --no-worker`) reaches the
ledger without waiting for the worker's tick (issue 19): the other process's `wake()` cannot
reach it, so an idle `anchorpay worker` looks for new due payouts every WORKER_IDLE_POLL_S.
With WORKER_TICK_S=30 the envelope still reaches the sandbox (over real HTTP) within a
second of the answer, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from anchorpay.sandbox.app import create_sandbox_app
from anchorpay.sandbox.network import Sandbox
from support.payout_fixtures import app_settings, funded_deposit, running_app
from support.process_fixtures import Workers
from support.sandbox_fixtures import serve


async def test_an_idle_worker_process_picks_up_an_intent_at_once(
    tmp_path: Path, db_url: str
) -> None:
    sandbox = Sandbox(app_settings(tmp_path).load_assets(), ledger_close_s=None)
    async with (
        serve(create_sandbox_app(sandbox)) as sandbox_url,
        running_app(
            tmp_path, run_worker=False, sandbox_url=sandbox_url, database_url=db_url
        ) as env,
    ):
        workers = Workers(tmp_path, sandbox_url, DATABASE_URL=db_url, WORKER_TICK_S="30")
        workers.start()
        try:
            await workers.ready()
            user = await env.account()
            tx_id = await funded_deposit(env, user.public_key)
            await asyncio.sleep(0.5)  # the worker's first tick is over; the next is in 30 s
            answer = await env.ok("do_stellar_payment", {"transaction_id": tx_id})
            answered = time.monotonic()
            assert answer["status"] == "pending_stellar"

            async with asyncio.timeout(5):
                while not sandbox.ledger.queue:  # noqa: ASYNC110 (the ledger has no events)
                    await asyncio.sleep(0.005)
            assert time.monotonic() - answered < 1.0
            (queued,) = sandbox.ledger.queue

            await env.close_ledger()  # answers the worker's submission: it completes
            assert await env.until_status(tx_id, "completed", timeout_s=5) == "completed"
            (payout,) = await env.payouts(tx_id)
            assert (payout["state"], payout["attempts"], payout["tx_hash"]) == (
                "confirmed",
                1,
                queued.hash,
            )
            assert sandbox.counters["POST /transactions"] == {"": 1}
        finally:
            workers.stop()
