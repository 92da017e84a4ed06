"""Operation batching: how many payouts one ledger carries per source account, under a backlog.

Real processes over real HTTP: `anchorpay sandbox` closes a ledger every LEDGER_S seconds and
an `anchorpay worker` pays a backlog recorded straight into its SQLite database (the RPC's
cost is measured elsewhere). The same run pays the same kind of backlog one payout per
transaction (STELLAR_MAX_OPS_PER_TX=1: what the Anchor Platform, Polaris and the SDP do per
channel), so the ratio is measured on the same machine at the same moment.

Per scenario: the ledgers from the first payout's ledger to the last's, payouts per ledger,
payouts per source transaction (envelope), and payouts per ledger per source account.

    python -m bench.batching_bench            # 1,000-payout backlogs, 5 s ledgers (as the network)
    ANCHORPAY_BENCH_BACKLOG=200 ANCHORPAY_BENCH_LEDGER_S=1 python -m bench.batching_bench
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.store import transactions as repo
from anchorpay.store.db import create_engine, session_factory
from anchorpay.store.migrate import upgrade
from anchorpay.store.tables import PayoutRow

USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
REPO = Path(__file__).resolve().parent.parent
ANCHORPAY = str(Path(sys.executable).parent / "anchorpay")
DESTINATIONS = 50  # payouts share destination accounts (each is one account to create)


@dataclass(frozen=True)
class Scenario:
    name: str
    payouts: int
    memo_every: int  # every n-th payout has a memo (0: none, 1: all)
    channels: int
    max_ops: int


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    ledgers: int
    envelopes: int
    seconds: float

    @property
    def per_ledger(self) -> float:
        return self.scenario.payouts / self.ledgers

    @property
    def per_envelope(self) -> float:
        return self.scenario.payouts / self.envelopes

    @property
    def per_ledger_per_source(self) -> float:
        return self.per_ledger / max(1, self.scenario.channels)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANCHORPAY_", "STELLAR_"))}
    env.update(
        ANCHORPAY_CONFIG_DIR=str(REPO / "config"),
        STELLAR_NETWORK="sandbox",
        ASSETS_FILE=str(REPO / "config" / "assets.toml"),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'anchorpay.db'}",
        SANDBOX_STATE=":memory:",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="text",
        TRUSTLINE_CHECK_INTERVAL_S="3600",
        OBSERVER_INTERVAL_S="3600",
        **extra,
    )
    return env


@contextlib.contextmanager
def _process(tmp: Path, name: str, env: dict[str, str], *args: str) -> Iterator[None]:
    with (tmp / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen([ANCHORPAY, *args], cwd=tmp, env=env, stdout=log, stderr=log)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _accounts(client: httpx.AsyncClient, n: int, trust: list[str]) -> list[str]:
    """`n` sandbox accounts; returns their secrets."""
    secrets = []
    for _ in range(n):
        made = await client.post("/sandbox/accounts", json={"xlm": "100", "trust": trust})
        made.raise_for_status()
        secrets.append(str(made.json()["secret"]))
    return secrets


async def _backlog(url: str, scenario: Scenario, destinations: list[str]) -> None:
    """`payouts` deposits in pending_stellar, each with its queued payout, in one commit."""
    from stellar_sdk import Keypair

    engine = create_engine(url)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    accounts = [Keypair.from_secret(s).public_key for s in destinations]
    async with sessions() as session, session.begin():
        for i in range(scenario.payouts):
            tx_id = str(uuid.uuid4())
            to = accounts[i % len(accounts)]
            memo = scenario.memo_every and i % scenario.memo_every == 0
            await repo.insert(
                session,
                Transaction(
                    id=tx_id,
                    kind=Kind.DEPOSIT,
                    status=Status.PENDING_STELLAR,
                    started_at=now,
                    requested_asset=USDC,
                    amount_in="1.1",
                    amount_in_asset="iso4217:USD",
                    amount_out="1",
                    amount_out_asset=USDC,
                    amount_fee="0.1",
                    amount_fee_asset="iso4217:USD",
                    to_account=to,
                    memo=str(i + 1) if memo else None,
                    memo_type="id" if memo else None,
                    transfer_received_at=now,
                ),
            )
            session.add(
                PayoutRow(
                    id=str(uuid.uuid4()),
                    transaction_id=tx_id,
                    purpose="payment",
                    state="queued",
                    destination=to,
                    asset=USDC,
                    amount="1",
                    memo=str(i + 1) if memo else None,
                    memo_type="id" if memo else None,
                    adapter="stellar",
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
    await engine.dispose()


async def _settled(url: str, n: int, timeout_s: float) -> tuple[int, int]:
    """Wait until the `n` payouts are confirmed; (ledgers spanned, envelopes)."""
    engine = create_engine(url)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                async with engine.connect() as conn:
                    done = (
                        await conn.execute(
                            text("SELECT count(*) FROM payouts WHERE state = 'confirmed'")
                        )
                    ).scalar_one()
                    failed = (
                        await conn.execute(
                            text("SELECT count(*) FROM payouts WHERE state = 'failed'")
                        )
                    ).scalar_one()
                    if failed:
                        raise RuntimeError(f"{failed} payouts failed")
                    if done == n:
                        low, high, envelopes = (
                            await conn.execute(
                                text(
                                    "SELECT min(ledger), max(ledger), count(DISTINCT tx_hash) "
                                    "FROM payouts"
                                )
                            )
                        ).one()
                        return int(high) - int(low) + 1, int(envelopes)
                await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


async def run(scenario: Scenario, ledger_s: float) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        port = _free_port()
        sandbox = f"http://127.0.0.1:{port}"
        url = f"sqlite+aiosqlite:///{tmp / 'anchorpay.db'}"
        env = _env(tmp, SANDBOX_LEDGER_CLOSE_S=str(ledger_s))
        with _process(tmp, "sandbox", env, "sandbox", "--port", str(port)):
            async with httpx.AsyncClient(base_url=sandbox, timeout=30) as client:
                for _ in range(300):
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get("/sandbox/distribution")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
                destinations = await _accounts(client, DESTINATIONS, [USDC])
                channels = await _accounts(client, scenario.channels, [])
            await upgrade(url)
            await _backlog(url, scenario, destinations)
            worker_env = _env(
                tmp,
                HORIZON_URL=f"{sandbox}/sandbox/horizon",
                STELLAR_MAX_OPS_PER_TX=str(scenario.max_ops),
                STELLAR_CHANNEL_SECRETS=",".join(channels),
            )
            start = time.perf_counter()
            with _process(tmp, "worker", worker_env, "worker"):
                timeout = 60 + 3 * ledger_s * scenario.payouts / max(1, scenario.channels)
                ledgers, envelopes = await _settled(url, scenario.payouts, timeout)
            return Outcome(scenario, ledgers, envelopes, time.perf_counter() - start)


def scenarios(backlog: int) -> list[Scenario]:
    small = max(8, backlog // 25)  # one payout per transaction: a backlog that ends
    return [
        Scenario("baseline: one per transaction, 4 channels", small, 0, 4, 1),
        Scenario("memo-less, no channel", backlog, 0, 0, 100),
        Scenario("memo-less, 4 channels", backlog, 0, 4, 100),
        Scenario("memo'd (one per transaction), 4 channels", small, 1, 4, 100),
        Scenario("mixed: 1 in 10 memo'd, 4 channels", backlog // 2, 10, 4, 100),
    ]


async def main() -> None:
    backlog = int(os.environ.get("ANCHORPAY_BENCH_BACKLOG", "1000"))
    ledger_s = float(os.environ.get("ANCHORPAY_BENCH_LEDGER_S", "5"))
    outcomes = [await run(s, ledger_s) for s in scenarios(backlog)]
    base = outcomes[0].per_ledger_per_source
    print(f"operation batching, {ledger_s:g} s ledgers (sandbox), SQLite, one worker")
    print(
        f"{'scenario':44} {'payouts':>7} {'ledgers':>7} {'per ledger':>10} "
        f"{'per tx':>7} {'per ledger per source':>21} {'vs baseline':>11}"
    )
    for o in outcomes:
        print(
            f"{o.scenario.name:44} {o.scenario.payouts:7d} {o.ledgers:7d} {o.per_ledger:10.1f} "
            f"{o.per_envelope:7.1f} {o.per_ledger_per_source:21.1f} "
            f"{o.per_ledger_per_source / base:10.1f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
