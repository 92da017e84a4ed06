"""Exactly once, whatever happens: Horizon answering 504 after applying, a submission lost
before the ledger, a worker SIGKILLed right after storing the envelope and right after
submitting it (real processes: `anchorpay sandbox` as the network, `anchorpay worker`
restarted on the same SQLite file), the same RPC sent twice, and two workers at once.
Each asserts exactly one on-ledger payment per payout and the transaction's final status."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from payout_fixtures import FAST, REPO, Env, funded_deposit, running_app
from sandbox_fixtures import free_port

ANCHORPAY = str(Path(sys.executable).parent / "anchorpay")


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


def process_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHORPAY_")}
    env.update(
        ANCHORPAY_CONFIG_DIR=str(REPO / "config"),
        STELLAR_NETWORK="sandbox",
        ASSETS_FILE=str(REPO / "config" / "assets.toml"),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'anchorpay.db'}",
        PAYOUT_LEASE_S="1",
        LOG_LEVEL="INFO",
        **{k.upper(): str(v) for k, v in FAST.items() if k != "payout_lease_s"},
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`anchorpay sandbox --port P`: the network outlives the workers the tests kill."""
    tmp = tmp_path_factory.mktemp("sandbox")
    port = free_port()
    log = (tmp / "sandbox.log").open("w")
    proc = subprocess.Popen(
        [ANCHORPAY, "sandbox", "--port", str(port)],
        cwd=tmp,
        env=process_env(tmp),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/sandbox/distribution", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp / "sandbox.log").read_text()
            subprocess.run(["sleep", "0.05"], check=True)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class Workers:
    def __init__(self, tmp_path: Path, sandbox: str) -> None:
        self.tmp_path = tmp_path
        self.sandbox = sandbox
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, crash_at: str | None = None) -> subprocess.Popen[bytes]:
        extra = {"HORIZON_URL": f"{self.sandbox}/sandbox/horizon"}
        if crash_at is not None:
            extra["ANCHORPAY_CRASH_AT"] = crash_at  # test-only hook: SIGKILL at that point
        n = len(self.procs)
        log = (self.tmp_path / f"worker{n}.log").open("w")
        proc = subprocess.Popen(
            [ANCHORPAY, "worker"],
            cwd=self.tmp_path,
            env=process_env(self.tmp_path, **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    async def ready(self, timeout_s: float = 20) -> None:
        """Wait until every started worker logged that it runs."""
        async with asyncio.timeout(timeout_s):
            while self.logs().count("worker started") < len(self.procs):
                assert all(p.poll() is None for p in self.procs), self.logs()
                await asyncio.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("worker*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
async def stack(tmp_path: Path, sandbox_process: str) -> AsyncIterator[tuple[Env, Workers]]:
    """The RPC server in this process (no worker), workers as real processes, one database."""
    workers = Workers(tmp_path, sandbox_process)
    async with running_app(tmp_path, run_worker=False, sandbox_url=sandbox_process) as env:
        try:
            yield env, workers
        finally:
            workers.stop()


async def until_dead(env: Env, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> int:
    """Drive the ledger until the worker process dies (its submit waits for a ledger)."""
    async with asyncio.timeout(timeout_s):
        while proc.poll() is None:
            await env.close_ledger()
            await asyncio.sleep(0.05)
    return proc.returncode


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
