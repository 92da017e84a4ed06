"""Payout latency, end to end over real HTTP, with the local Stellar signer and the default
worker settings (issue 19):

- intent → submitted: from `do_stellar_payment`'s answer (the intent is committed) to the
  moment the sandbox first receives the payout's envelope; the worker idle before each one.
- ledger close → completed: from the close of the ledger that includes the payment (taken
  as the close begins) to the transaction's `completed_at` (written by the worker with
  `confirmed`, in one commit). Payouts go one at a time, each at a random phase against
  the ledger closes and the worker's tick; one machine, so the clocks agree.

The sandbox runs in this process (uvicorn, a real socket) so it can timestamp what it sees:
envelopes as they arrive, ledgers as they close. anchorpay runs as real processes against
it: `anchorpay serve` (worker inside, SQLite), and with `--postgres URL` also
`anchorpay serve --no-worker` + `anchorpay worker` on PostgreSQL (the API cannot wake the
other process's worker). Each is measured twice: Horizon answering a submission when its
ledger closes (as Horizon does), and Horizon answering 504 before the ledger closes (as
Horizon does when inclusion takes longer than its timeout), which leaves the payout in
flight until the worker looks it up.

Baselines in the same run, so the ratio is visible: `close → bare lookup` is a plain HTTP
client asking Horizon for the transaction by hash the moment the sandbox closes the ledger;
`bare reads` is the two Horizon reads the worker must make before it can sign (destination
trustline, source sequence), done by a plain client.

    .venv/bin/python -m bench.latency_bench [--payouts 20] [--ledger-close 2]
        [--postgres postgresql+asyncpg://user@host:port/db]

`--postgres` (or ANCHORPAY_BENCH_POSTGRES_URL in the environment, for `make bench`) names a
server and database to connect to; the bench creates its own database there and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from stellar_sdk import TransactionEnvelope

from anchorpay.sandbox.app import create_sandbox_app
from anchorpay.sandbox.network import Sandbox, SubmitAnswer
from anchorpay.sandbox.state import Queued, Rejected, TxRecord
from anchorpay.settings import ENV_FILE_ENV, Settings

REPO = Path(__file__).resolve().parent.parent
ANCHORPAY = [str(Path(sys.executable).parent / "anchorpay")]
USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USD = "iso4217:USD"


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TimedSandbox(Sandbox):
    """The sandbox, noting when it first receives each envelope and when each ledger closes,
    and looking each noted envelope up over plain HTTP as its ledger closes (the baseline)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[str, float] = {}
        self.closed: dict[int, float] = {}
        self.looked_up: dict[str, float] = {}
        self.lookups: dict[str, asyncio.Task[None]] = {}
        self.horizon: httpx.AsyncClient | None = None

    def _note(self, envelope_xdr: str) -> None:
        at = time.time()
        try:
            tx_hash = TransactionEnvelope.from_xdr(envelope_xdr, self.network_passphrase).hash_hex()
        except Exception:
            return
        self.seen.setdefault(tx_hash, at)

    async def submit(self, envelope_xdr: str, timeout_s: float | None = None) -> SubmitAnswer:
        self._note(envelope_xdr)
        return await super().submit(envelope_xdr, timeout_s)

    def submit_async(self, envelope_xdr: str) -> tuple[str, Rejected | Queued | TxRecord]:
        self._note(envelope_xdr)
        return super().submit_async(envelope_xdr)

    async def close_ledger(self) -> Any:
        at = time.time()
        header = await super().close_ledger()
        self.closed[header.sequence] = at
        for tx_hash in self.seen.keys() - self.lookups.keys():
            record = self.ledger.transactions.get(tx_hash)
            if record is not None and record.ledger == header.sequence:
                self.lookups[tx_hash] = asyncio.create_task(self._bare_lookup(tx_hash))
        return header

    async def _bare_lookup(self, tx_hash: str) -> None:
        assert self.horizon is not None
        answer = await self.horizon.get(f"/transactions/{tx_hash}")
        assert answer.status_code == 200, answer.text
        self.looked_up[tx_hash] = time.time()


@contextlib.asynccontextmanager
async def _served_sandbox(sandbox: TimedSandbox) -> AsyncIterator[str]:
    port = _port()
    config = uvicorn.Config(
        create_sandbox_app(sandbox), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=f"{base}/sandbox/horizon", timeout=10) as horizon:
        sandbox.horizon = horizon
        try:
            yield base
        finally:
            server.should_exit = True
            await task


def _env(sandbox_url: str, database_url: str, **extra: str) -> dict[str, str]:
    """The environment without any anchorpay setting (the defaults apply) but the network,
    the database and quiet logs."""
    names = {name.upper() for name in Settings.model_fields} | {ENV_FILE_ENV}
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in names and not k.startswith("ANCHORPAY_")
    }
    env.update(
        STELLAR_NETWORK="sandbox",
        HORIZON_URL=f"{sandbox_url}/sandbox/horizon",
        DATABASE_URL=database_url,
        SANDBOX_STATE=":memory:",
        LOG_LEVEL="WARNING",
        **extra,
    )
    return env


@contextlib.asynccontextmanager
async def _processes(tmp: Path, env: dict[str, str], split: bool) -> AsyncIterator[str]:
    """`anchorpay serve` (worker inside), or `serve --no-worker` + `worker`; yields the API's
    base URL once it answers. Never blocks the loop: the sandbox is served on it."""
    port = _port()
    commands = [[*ANCHORPAY, "serve", "--port", str(port)]]
    if split:
        migrate = await asyncio.create_subprocess_exec(
            *ANCHORPAY, "migrate", env=env, cwd=tmp, stdout=subprocess.DEVNULL
        )
        assert await migrate.wait() == 0, "anchorpay migrate failed"
        commands = [[*commands[0], "--no-worker"], [*ANCHORPAY, "worker"]]
    procs: list[asyncio.subprocess.Process] = []
    logs = [tmp / f"process{n}.log" for n in range(len(commands))]
    try:
        for command, log_path in zip(commands, logs, strict=True):
            with log_path.open("wb") as log:
                procs.append(
                    await asyncio.create_subprocess_exec(
                        *command, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=1) as client, asyncio.timeout(30):
            while True:
                for proc, log_path in zip(procs, logs, strict=True):
                    assert proc.returncode is None, log_path.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{base}/health")).status_code in (200, 503):
                        break
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the worker's first passes are done: it is idle
        yield base
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@dataclass
class Samples:
    submit_ms: list[float] = field(default_factory=list)
    complete_ms: list[float] = field(default_factory=list)
    bare_lookup_ms: list[float] = field(default_factory=list)
    bare_reads_ms: list[float] = field(default_factory=list)


def _instant(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def _ok(client: httpx.AsyncClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    answer: dict[str, Any] = (await client.post("/", json=body)).json()
    assert "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


async def _deposit(client: httpx.AsyncClient, account: str) -> str:
    created = await client.post(
        "/transactions",
        json={
            "sep": "24",
            "kind": "deposit",
            "amount_expected": {"asset": USDC},
            "destination_account": account,
        },
    )
    assert created.status_code == 201, created.text
    tx_id: str = created.json()["id"]
    await _ok(
        client,
        "request_offchain_funds",
        {
            "transaction_id": tx_id,
            "amount_in": {"amount": "10", "asset": USD},
            "amount_out": {"amount": "9", "asset": USDC},
            "fee_details": {"total": "1", "asset": USD},
        },
    )
    await _ok(client, "notify_offchain_funds_received", {"transaction_id": tx_id})
    return tx_id


async def _completed(client: httpx.AsyncClient, tx_id: str, timeout_s: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            tx: dict[str, Any] = (await client.get(f"/transactions/{tx_id}")).json()
            if tx["status"] == "completed":
                return tx
            await asyncio.sleep(0.05)


async def _payouts(
    sandbox: TimedSandbox, api: str, n: int, ledger_close_s: float, rng: random.Random
) -> Samples:
    samples = Samples()
    dist = sandbox.distribution_account
    bare = sandbox.horizon
    assert bare is not None
    async with httpx.AsyncClient(base_url=api, timeout=60) as client:
        accounts = [sandbox.create_account(trust=(USDC,)).public_key for _ in range(n)]
        deposits = [await _deposit(client, account) for account in accounts]
        await asyncio.sleep(1.0)  # idle again after the setup's RPCs
        for account, tx_id in zip(accounts, deposits, strict=True):
            # A random phase against the ledger closes and the worker's tick.
            await asyncio.sleep(rng.uniform(0, ledger_close_s))
            result = await _ok(client, "do_stellar_payment", {"transaction_id": tx_id})
            answered = time.time()
            assert result["status"] == "pending_stellar", result
            tx = await _completed(client, tx_id, 10 * ledger_close_s + 30)
            payouts = (await client.get("/payouts", params={"transaction_id": tx_id})).json()
            (payout,) = payouts["payouts"]
            tx_hash = payout["tx_hash"]
            ledger = sandbox.ledger.transactions[tx_hash].ledger
            closed = sandbox.closed[ledger]
            samples.submit_ms.append((sandbox.seen[tx_hash] - answered) * 1000)
            samples.complete_ms.append((_instant(tx["completed_at"]) - closed) * 1000)
            await sandbox.lookups[tx_hash]
            samples.bare_lookup_ms.append((sandbox.looked_up[tx_hash] - closed) * 1000)
            start = time.time()
            await bare.get(f"/accounts/{account}")
            await bare.get(f"/accounts/{dist}")
            samples.bare_reads_ms.append((time.time() - start) * 1000)
    return samples


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def _line(name: str, values: list[float]) -> str:
    return (
        f"    {name:<34} p50 {_pct(values, 0.5):7.1f} ms   p99 {_pct(values, 0.99):7.1f} ms"
        f"   (min {min(values):.1f}, mean {statistics.fmean(values):.1f})"
    )


def _report(title: str, samples: Samples) -> None:
    print(f"latency: {title}, {len(samples.submit_ms)} payouts")
    print(_line("intent → submitted", samples.submit_ms))
    print(_line("  baseline: bare reads", samples.bare_reads_ms))
    print(_line("ledger close → completed", samples.complete_ms))
    print(_line("  baseline: close → bare lookup", samples.bare_lookup_ms))
    ratio = _pct(samples.complete_ms, 0.5) / max(_pct(samples.bare_lookup_ms, 0.5), 0.001)
    print(f"    close → completed is {ratio:.1f}× the bare lookup (p50)", flush=True)


async def _run(
    title: str,
    *,
    n: int,
    ledger_close_s: float,
    horizon_wait_s: float,
    database_url: str | None,
    split: bool,
    seed: int,
) -> Samples:
    assets = Settings(_env_file=None).load_assets()
    sandbox = TimedSandbox(
        assets=assets,
        ledger_close_s=ledger_close_s,
        submit_timeout_s=horizon_wait_s,
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite+aiosqlite:///{tmp}/anchorpay.db"
        async with _served_sandbox(sandbox) as sandbox_url:
            env = _env(sandbox_url, url)
            async with _processes(Path(tmp), env, split) as api:
                samples = await _payouts(sandbox, api, n, ledger_close_s, random.Random(seed))
    _report(title, samples)
    return samples


@contextlib.asynccontextmanager
async def _postgres_database(admin_url: str) -> AsyncIterator[str]:
    """A fresh database on the server of `admin_url`, dropped afterwards."""
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    url = admin.set(database=f"latency_{uuid.uuid4().hex[:12]}")
    conn = await asyncpg.connect(admin.set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(f'CREATE DATABASE "{url.database}"')
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await conn.close()


async def main(
    n: int = 20, ledger_close_s: float = 2.0, postgres: str | None = None, seed: int = 19
) -> None:
    postgres = postgres or os.environ.get("ANCHORPAY_BENCH_POSTGRES_URL")
    where = f"{ledger_close_s:g} s ledgers"
    for wait_s, how in ((30.0, "Horizon answers at inclusion"), (0.2, "Horizon answers 504")):
        await _run(
            f"anchorpay serve (SQLite), {how}, {where}",
            horizon_wait_s=wait_s,
            database_url=None,
            split=False,
            n=n,
            ledger_close_s=ledger_close_s,
            seed=seed,
        )
        if postgres:
            async with _postgres_database(postgres) as url:
                await _run(
                    f"serve --no-worker + worker (PostgreSQL), {how}, {where}",
                    horizon_wait_s=wait_s,
                    database_url=url,
                    split=True,
                    n=n,
                    ledger_close_s=ledger_close_s,
                    seed=seed,
                )


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payouts", type=int, default=20)
    parser.add_argument("--ledger-close", type=float, default=2.0)
    parser.add_argument("--postgres", default=None, help="admin URL (a database is created)")
    parser.add_argument("--seed", type=int, default=19)
    return parser.parse_args()


if __name__ == "__main__":
    args = _args()
    asyncio.run(main(args.payouts, args.ledger_close, args.postgres, args.seed))
