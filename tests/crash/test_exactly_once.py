"""Exactly once, whatever happens: Horizon answering 504 after applying, a submission lost
before the ledger, a worker SIGKILLed right after storing the envelope and right after
submitting it (real processes: `anchorpay sandbox` as the network, `anchorpay worker`
restarted on the same SQLite file), the same RPC sent twice, and two workers at once.
Each asserts exactly one on-ledger payment per payout and the transaction's final status."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from support.payout_fixtures import Env, funded_deposit, running_app
from support.process_fixtures import Workers, sandbox_server, until_dead


async def one_payment_each(env: Env, tx_ids: list[str], status: str = "completed") -> None:
    for tx_id in tx_ids:
        tx = await env.tx(tx_id)
        assert tx["status"] == status, tx
        (payout,) = await env.payouts(tx_id)
        assert payout["state"] == "confirmed"
        received = await env.payments_to(tx["destination_account"])
        assert [p["transaction_hash"] for p in received] == [payout["tx_hash"]]
        assert [s["id"] for s in tx["stellar_transactions"]] == [payout["tx_hash"]]


# --- in-process: faults of the network -------------------------------------------------------


async def test_504_after_apply_is_looked_up_not_paid_again(tmp_path: Path) -> None:
    async with running_app(tmp_path) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key)
        await env.fault(kind="gateway_timeout_after_apply", count=1)
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert await env.until_status(tx_id, "completed") == "completed"
        await one_payment_each(env, [tx_id])
        (payout,) = await env.payouts(tx_id)
        assert payout["attempts"] == 2  # the envelope, then one ambiguous answer


async def test_dropped_submission_is_resent_with_the_same_envelope(tmp_path: Path) -> None:
    async with running_app(tmp_path) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key)
        await env.fault(kind="drop_next_submission", count=2)
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert await env.until_status(tx_id, "completed") == "completed"
        await one_payment_each(env, [tx_id])
        (payout,) = await env.payouts(tx_id)
        assert payout["attempts"] == 3


async def test_same_do_stellar_payment_twice_at_once(tmp_path: Path) -> None:
    async with running_app(tmp_path) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key)
        params = {"transaction_id": tx_id}
        answers = await asyncio.gather(*(env.rpc("do_stellar_payment", params) for _ in range(3)))
        assert sum("result" in a for a in answers) == 1, answers
        assert await env.until_status(tx_id, "completed") == "completed"
        again = await env.rpc("do_stellar_payment", params)  # and once more, afterwards
        assert "error" in again
        for _ in range(3):
            await env.close_ledger()
        await one_payment_each(env, [tx_id])


# --- real processes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`anchorpay sandbox --port P`: the network outlives the workers the tests kill."""
    with sandbox_server(tmp_path_factory.mktemp("sandbox"), "/sandbox/distribution") as base:
        yield base


@pytest.fixture
async def stack(tmp_path: Path, sandbox_process: str) -> AsyncIterator[tuple[Env, Workers]]:
    """The RPC server in this process (no worker), workers as real processes, one database."""
    workers = Workers(tmp_path, sandbox_process)
    async with running_app(tmp_path, run_worker=False, sandbox_url=sandbox_process) as env:
        try:
            yield env, workers
        finally:
            workers.stop()


@pytest.mark.parametrize("crash_at", ["after_prepare", "after_submit"])
async def test_worker_killed_mid_payout_restarts_and_pays_once(
    stack: tuple[Env, Workers], crash_at: str
) -> None:
    env, workers = stack
    user = await env.account()
    tx_id = await funded_deposit(env, user.public_key, amount_out="7")
    first = workers.start(crash_at=crash_at)
    await env.ok("do_stellar_payment", {"transaction_id": tx_id})
    assert await until_dead(env, first) == -signal.SIGKILL, workers.logs()

    (payout,) = await env.payouts(tx_id)
    stored_hash = payout["tx_hash"]
    assert payout["state"] == "submitting" and stored_hash  # the envelope was stored first
    on_ledger = [p["transaction_hash"] for p in await env.payments_to(user.public_key)]
    assert on_ledger == ([] if crash_at == "after_prepare" else [stored_hash])
    assert (await env.tx(tx_id))["status"] == "pending_stellar"

    workers.start()  # a fresh process takes over once the dead one's lease expires
    assert await env.until_status(tx_id, "completed", timeout_s=30) == "completed", workers.logs()
    await one_payment_each(env, [tx_id])
    (payout,) = await env.payouts(tx_id)
    assert payout["tx_hash"] == stored_hash  # the same envelope, not a second payment


async def test_two_workers_at_once_pay_each_payout_once(stack: tuple[Env, Workers]) -> None:
    env, workers = stack
    users = [await env.account() for _ in range(6)]
    tx_ids = [await funded_deposit(env, u.public_key, amount_out="3") for u in users]
    workers.start()
    workers.start()
    await workers.ready()
    for tx_id in tx_ids:
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})

    async def all_done() -> bool:
        statuses = [(await env.tx(t))["status"] for t in tx_ids]
        return statuses == ["completed"] * len(tx_ids)

    await env.drive(all_done, timeout_s=40)
    await one_payment_each(env, tx_ids)
    assert all(p.poll() is None for p in workers.procs), workers.logs()
    logs = workers.logs()
    assert "Traceback" not in logs, logs
    # Who paid what is up to the race; that each was paid once is not.
    assert logs.count("to=confirmed") == len(tx_ids), logs


def test_crash_hook_is_inert_without_the_variable() -> None:
    from anchorpay.scheduler.payouts import CRASH_ENV, crash_point

    assert os.environ.get(CRASH_ENV) is None
    crash_point("after_prepare")  # nothing happens
