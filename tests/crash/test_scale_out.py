"""Scale-out on PostgreSQL with real processes (issue 8): `anchorpay sandbox` as the ledger,
`anchorpay migrate` once, two `anchorpay serve --no-worker` and three `anchorpay worker` on one
fresh PostgreSQL database. PAYOUTS payouts (120 in CI) are recorded through both servers; the
worker holding the payout lease is SIGKILLed when about half are completed. Every transaction
ends `completed`, every payout `confirmed` with one hash, and the ledger holds exactly PAYOUTS
payments from the distribution account, none twice.

It runs three times: with the local signer; with the local signer and four channel accounts
(four payouts in flight at once); and with CUSTODY_TYPE=fireblocks against the sandbox
Fireblocks of the same `anchorpay sandbox` process (its webhooks go to the first server), where
each payout must also be exactly one Fireblocks transfer.

The signer allows one transaction in flight per source account, so the ledger close time
(SANDBOX_LEDGER_CLOSE_S) bounds its throughput: about one payout per ledger. Fireblocks
sequences its own transactions, so many payouts are in flight at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from sqlalchemy.engine import URL, make_url
from stellar_sdk import Keypair

from anchorpay.sandbox import SANDBOX_DISTRIBUTION_ACCOUNT, SANDBOX_DISTRIBUTION_SECRET
from anchorpay.sandbox.fireblocks import SANDBOX_FIREBLOCKS_VAULT_ACCOUNT
from support.app import POSTGRES_ENV, _pg_admin
from support.payout_fixtures import REPO, USD, USDC, create_accounts
from support.sandbox_fixtures import free_port

ANCHORPAY = str(Path(sys.executable).parent / "anchorpay")
# CI's size; ANCHORPAY_SCALE_OUT_PAYOUTS=300 (or more) for a longer campaign.
PAYOUTS = int(os.environ.get("ANCHORPAY_SCALE_OUT_PAYOUTS", "120"))
SERVERS = 2
WORKERS = 3
DESTINATIONS = 6
LEDGER_CLOSE_S = 0.05
DEADLINE_S = 240.0
# httpx keeps idle connections 5 s, exactly uvicorn's keep-alive timeout: a request sent on a
# connection the server is closing at that instant fails with ReadError. Expire them first.
LIMITS = httpx.Limits(keepalive_expiry=2.0)

pytestmark = pytest.mark.skipif(
    not os.environ.get(POSTGRES_ENV),
    reason=(
        f"the scale-out test needs PostgreSQL: set {POSTGRES_ENV}="
        "postgresql+asyncpg://user@host:port/db (.ci/run starts a throwaway cluster)"
    ),
)


@pytest.fixture
def database() -> Iterator[URL]:
    """A fresh, empty database on the test server (`anchorpay migrate` creates the schema)."""
    admin = make_url(os.environ[POSTGRES_ENV])
    url = admin.set(database=f"scale_{uuid.uuid4().hex[:16]}")
    _pg_admin(admin, f'CREATE DATABASE "{url.database}"')
    try:
        yield url
    finally:
        _pg_admin(admin, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


class Processes:
    """Every process the test starts, each logging to its own file; `stop` ends them all."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with self.log_path(name).open("wb") as log:
            proc = subprocess.Popen(
                [ANCHORPAY, *args],
                cwd=self.tmp_path,  # no dev.env here
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)[-4000:]}" for name in self.procs)

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"exited: {dead}\n{self.logs()}"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        end = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGKILL)  # the process and anything it started
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # its own session: the group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


async def until_http(procs: Processes, name: str, url: str, timeout_s: float = 30) -> None:
    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(timeout_s):
        while True:
            assert procs.procs[name].poll() is None, procs.log(name)
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)


async def until_logged(procs: Processes, name: str, text: str, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while text not in procs.log(name):
            assert procs.procs[name].poll() is None, procs.log(name)
            await asyncio.sleep(0.05)


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def ok(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        answer: dict[str, Any] = (await self.client.post("/", json=body)).json()
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result


async def record_payout(first: Api, second: Api, destination: str, n: int) -> str:
    """A funded deposit created on `first`, paid out through `second`."""
    created = await first.client.post(
        "/transactions",
        json={
            "sep": "24",
            "kind": "deposit",
            "amount_expected": {"asset": USDC},
            "destination_account": destination,
        },
    )
    assert created.status_code == 201, created.text
    tx_id: str = created.json()["id"]
    amount = f"1.{n:04d}"  # each payment distinct on the ledger
    await first.ok(
        "request_offchain_funds",
        {
            "transaction_id": tx_id,
            "amount_in": {"amount": "10", "asset": USD},
            "amount_out": {"amount": amount, "asset": USDC},
            "fee_details": {"total": "1", "asset": USD},
        },
    )
    await second.ok("notify_offchain_funds_received", {"transaction_id": tx_id})
    await second.ok("do_stellar_payment", {"transaction_id": tx_id})
    return tx_id


async def ledger_payments(
    ledger: httpx.AsyncClient, account: str, payer: str
) -> list[dict[str, Any]]:
    """Every successful payment from `payer` to `account`, all pages."""
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        response = await ledger.get(
            f"/horizon/accounts/{account}/payments",
            params={"limit": 200, "order": "asc", "cursor": cursor},
        )
        assert response.status_code == 200, response.text
        records = response.json()["_embedded"]["records"]
        if not records:
            return found
        found += [
            r
            for r in records
            if r.get("from") == payer and r.get("to") == account and r["transaction_successful"]
        ]
        cursor = records[-1]["paging_token"]


@pytest.mark.parametrize("custody", ["stellar", "channels", "fireblocks"])
async def test_two_servers_three_workers_one_killed_pay_each_payout_once(
    tmp_path: Path, database: URL, custody: str
) -> None:
    db_url = database.render_as_string(hide_password=False)
    channels = [Keypair.random() for _ in range(4)] if custody == "channels" else []
    sandbox_port = free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHORPAY_")}
    env.update(
        ANCHORPAY_CONFIG_DIR=str(REPO / "config"),
        ASSETS_FILE=str(REPO / "config" / "assets.toml"),
        DATABASE_URL=db_url,
        STELLAR_NETWORK="sandbox",
        HORIZON_URL=f"{sandbox}/sandbox/horizon",
        CUSTODY_TYPE="stellar" if custody == "channels" else custody,
        STELLAR_DISTRIBUTION_SECRET=SANDBOX_DISTRIBUTION_SECRET,
        STELLAR_CHANNEL_SECRETS=",".join(c.secret for c in channels),
        FIREBLOCKS_BASE_URL=f"{sandbox}/sandbox/fireblocks",
        SANDBOX_FIREBLOCKS_STEP_S="0.02",
        SANDBOX_LEDGER_CLOSE_S=str(LEDGER_CLOSE_S),
        WORKER_TICK_S="0.05",
        PAYOUT_RETRY_BASE_S="0.05",
        PAYOUT_RETRY_MAX_S="0.5",
        PAYOUT_LEASE_S="3",
        TRUSTLINE_CHECK_INTERVAL_S="3600",
        OBSERVER_INTERVAL_S="3600",
        LOG_LEVEL="INFO",
    )
    procs = Processes(tmp_path, env)
    conn: asyncpg.Connection | None = None
    started = time.monotonic()
    try:
        procs.start("sandbox", "sandbox", "--port", str(sandbox_port))
        migrate = await asyncio.create_subprocess_exec(
            ANCHORPAY,
            "migrate",
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(migrate.communicate(), 120)
        finally:
            if migrate.returncode is None:
                migrate.kill()
                await migrate.wait()
        assert migrate.returncode == 0, out.decode()
        server_urls = []
        for i in range(SERVERS):
            port = free_port()
            procs.start(f"server{i}", "serve", "--no-worker", "--port", str(port))
            server_urls.append(f"http://127.0.0.1:{port}")
        for i in range(WORKERS):
            procs.start(f"worker{i}", "worker")
        await until_http(procs, "sandbox", f"{sandbox}/sandbox/distribution")
        for i, url in enumerate(server_urls):
            await until_http(procs, f"server{i}", f"{url}/transactions/none")
        payer = SANDBOX_DISTRIBUTION_ACCOUNT
        if custody == "fireblocks":
            payer = SANDBOX_FIREBLOCKS_VAULT_ACCOUNT
        for i in range(WORKERS):
            await until_logged(procs, f"worker{i}", "worker started")
        conn = await asyncpg.connect(database.set(drivername="postgresql").render_as_string(False))

        async with (
            httpx.AsyncClient(base_url=f"{sandbox}/sandbox", timeout=30) as ledger,
            httpx.AsyncClient(base_url=server_urls[0], timeout=30, limits=LIMITS) as c0,
            httpx.AsyncClient(base_url=server_urls[1], timeout=30, limits=LIMITS) as c1,
        ):
            apis = [Api(c0), Api(c1)]
            await create_accounts(ledger, [c.public_key for c in channels])  # before any payout
            if custody == "fireblocks":  # the sandbox Fireblocks' webhooks reach a server
                hook = {"webhook_url": f"{server_urls[0]}/webhooks/fireblocks"}
                answer = await ledger.post("/fireblocks/settings", json=hook)
                assert answer.status_code == 200, answer.text
            destinations = []
            for _ in range(DESTINATIONS):
                made = await ledger.post("/accounts", json={"xlm": "100", "trust": [USDC]})
                assert made.status_code == 201, made.text
                destinations.append(made.json()["account_id"])

            gate = asyncio.Semaphore(16)

            async def one(n: int) -> str:
                async with gate:
                    first, second = apis[n % 2], apis[(n + 1) % 2]
                    return await record_payout(first, second, destinations[n % DESTINATIONS], n)

            t_record = time.monotonic()
            recording = asyncio.gather(*(one(n) for n in range(PAYOUTS)))

            async def completed() -> int:
                count: int = await conn.fetchval(
                    "SELECT count(*) FROM sep24_transactions WHERE status = 'completed'"
                )
                return count

            # SIGKILL, at about half, the worker that holds the in-flight payout's lease.
            killed: str | None = None
            async with asyncio.timeout(DEADLINE_S):
                while await completed() < PAYOUTS // 2:
                    procs.check_alive()
                    await asyncio.sleep(0.05)
                for _ in range(100):
                    owner = await conn.fetchval(
                        "SELECT lease_owner FROM payouts WHERE lease_owner IS NOT NULL "
                        "AND lease_expires_at > now() LIMIT 1"
                    )
                    killed = next(
                        (
                            n
                            for n, p in procs.procs.items()
                            if owner and n.startswith("worker") and f"-{p.pid}-" in owner
                        ),
                        None,
                    )
                    if killed is not None:
                        break
                    await asyncio.sleep(0.01)
                killed = killed or "worker0"
                at_kill = await completed()
                victim = procs.procs.pop(killed)
                os.kill(victim.pid, signal.SIGKILL)
                assert victim.wait(10) == -signal.SIGKILL
                tx_ids = await recording
                record_s = time.monotonic() - t_record
                while (done := await completed()) < PAYOUTS:
                    procs.check_alive()
                    await asyncio.sleep(0.1)
            payout_s = time.monotonic() - t_record

            # Every transaction completed, every payout confirmed with its own payment: one
            # (hash, destination, amount) each (memo-less payouts share envelopes: batching).
            hashes: list[str] = []
            own: list[tuple[str, str, Decimal]] = []
            for tx_id in tx_ids:
                server = apis[len(hashes) % 2].client
                tx = (await server.get(f"/transactions/{tx_id}")).json()
                assert tx["status"] == "completed", tx
                response = await server.get("/payouts", params={"transaction_id": tx_id})
                (payout,) = response.json()["payouts"]
                assert payout["state"] == "confirmed", payout
                assert payout["tx_hash"], payout
                assert [s["id"] for s in tx["stellar_transactions"]] == [payout["tx_hash"]]
                hashes.append(payout["tx_hash"])
                own.append((payout["tx_hash"], payout["destination"], Decimal(payout["amount"])))
            assert len(set(own)) == PAYOUTS

            # Exactly PAYOUTS payments on the ledger, none twice, each one a payout's.
            paid: list[tuple[str, str, Decimal]] = []
            for account in destinations:
                paid += [
                    (p["transaction_hash"], p["to"], Decimal(p["amount"]))
                    for p in await ledger_payments(ledger, account, payer)
                ]
            twice = {h: n for h, n in Counter(paid).items() if n > 1}
            assert not twice, twice
            assert len(paid) == PAYOUTS
            assert set(paid) == set(own)
            if custody == "fireblocks":  # and one Fireblocks transfer per payout
                state = (await ledger.get("/fireblocks/state")).json()
                transfers = Counter(t["externalTxId"] for t in state["transactions"])
                assert len(transfers) == PAYOUTS and set(transfers.values()) == {1}

            # The dead worker's lease was taken over by the others; nothing else died.
            procs.check_alive()
            owners = await conn.fetchval(
                "SELECT count(*) FROM payouts WHERE lease_owner IS NOT NULL"
            )
            assert owners == 0
            ledger_seq = (await ledger.get("/horizon/")).json()["history_latest_ledger"]
        print(
            f"\nscale-out ({custody}): {PAYOUTS} payouts, ledger close {LEDGER_CLOSE_S}s, "
            f"ledger {ledger_seq}; recorded in {record_s:.1f}s, all completed after "
            f"{payout_s:.1f}s ({payout_s / PAYOUTS * 1000:.0f} ms/payout); killed {killed} at "
            f"{at_kill} completed; total {time.monotonic() - started:.1f}s; final {done}"
        )
    except BaseException:
        print(procs.logs())  # shown by pytest with the failure
        raise
    finally:
        if conn is not None:
            await conn.close()
        procs.stop()
