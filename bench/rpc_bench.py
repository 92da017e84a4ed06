"""The RPC against the database's own speed (issue 19): each RPC measurement is paired with a
bare Starlette endpoint doing the same durable work (`bench/bare_app.py`) on the same engine,
so the same SQLite file and settings, through the same in-process transport (no sockets: the
numbers are the service's own cost). RPC and bare take turns (every 10 calls, or by round
for the backlog), so a change of machine load hits both; the ratio is RPC / bare.

- status changes: `request_offchain_funds` then `notify_offchain_funds_received`, one call
  at a time, vs load + optimistic-version UPDATE + commit;
- reads: `get_transaction` vs select the row and answer it as JSON;
- `do_stellar_payment` under a backlog (many calls in flight; custody `stellar`, Horizon a
  stub process answering account reads in 20-50 ms, `bench/horizon_stub.py`): intents
  recorded per second vs a bare payout INSERT at the same concurrency.

    .venv/bin/python -m bench.rpc_bench
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from stellar_sdk import Keypair

from anchorpay.app import create_app
from anchorpay.settings import Settings
from bench.bare_app import PAYOUTS, bare_app

USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USER = "GDJLBYYKMCXNVVNABOE66NYXQGIA5AC5D223Z2KF6ZEYK4UBCA7FKLTG"
CONFIG = Path(__file__).resolve().parent.parent / "config"
Calls = Sequence[Callable[[], Awaitable[None]]]  # requests to time, each checks its answer
TURN = 10  # one call at a time, RPC and bare take turns every TURN calls
TARGETS = {"status changes": 0.7, "get_transaction": 0.8, "do_stellar_payment": 0.5}


def call(method: str, params: dict[str, object], id: int) -> dict[str, object]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": id}


@contextlib.contextmanager
def horizon_stub() -> Iterator[str]:
    """The stub Horizon in its own process; its base URL."""
    stub = subprocess.Popen(
        [sys.executable, "-m", "bench.horizon_stub"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert stub.stdout is not None
        yield f"http://127.0.0.1:{int(stub.stdout.readline())}"
    finally:
        stub.terminate()
        stub.wait(10)


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")


def expect(response: httpx.Response, status: str) -> None:
    """The answer's status: the RPC's `result`, or the bare endpoint's row."""
    answer = response.json()
    assert answer.get("result", answer).get("status") == status, response.text


async def timed(calls: Calls, in_flight: int = 1) -> tuple[int, float]:
    """Run the calls, at most `in_flight` at a time: (count, seconds)."""
    gate = asyncio.Semaphore(in_flight)

    async def one(make: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await make()

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return len(calls), time.perf_counter() - start


class Pair:
    """Totals of one RPC measurement and its bare counterpart over the rounds."""

    def __init__(self, name: str, unit: str) -> None:
        self.name, self.unit = name, unit
        self.ops = {"rpc": 0, "bare": 0}
        self.seconds = {"rpc": 0.0, "bare": 0.0}

    def add(self, side: str, result: tuple[int, float]) -> None:
        self.ops[side] += result[0]
        self.seconds[side] += result[1]

    def rate(self, side: str) -> float:
        return self.ops[side] / self.seconds[side]

    def line(self) -> str:
        ratio = self.rate("rpc") / self.rate("bare")
        target = TARGETS[self.name]
        verdict = "ok" if ratio >= target else "BELOW TARGET"
        return (
            f"  {self.name:<19} rpc {self.rate('rpc'):7,.0f} {self.unit:<10} "
            f"bare {self.rate('bare'):7,.0f}/s  ratio {ratio:.2f} "
            f"(target >= {target}: {verdict})"
        )


async def create(rpc: httpx.AsyncClient, destination: str = USER) -> str:
    body = {
        "sep": "24",
        "kind": "deposit",
        "amount_expected": {"asset": USDC},
        "destination_account": destination,
    }
    tx_id: str = (await rpc.post("/transactions", json=body)).json()["id"]
    return tx_id


def offchain_funds(tx_id: str) -> dict[str, object]:
    return {
        "transaction_id": tx_id,
        "amount_in": {"amount": "100", "asset": "iso4217:USD"},
        "amount_out": {"amount": "95", "asset": USDC},
        "fee_details": {"total": "5", "asset": "iso4217:USD"},
    }


async def fund(rpc: httpx.AsyncClient, tx_id: str) -> None:
    """incomplete -> pending_user_transfer_start -> pending_anchor (funds received)."""
    first = call("request_offchain_funds", offchain_funds(tx_id), 1)
    expect(await rpc.post("/", json=first), "pending_user_transfer_start")
    second = call("notify_offchain_funds_received", {"transaction_id": tx_id}, 2)
    expect(await rpc.post("/", json=second), "pending_anchor")


def rpc_changes(rpc: httpx.AsyncClient, ids: list[str]) -> Calls:
    async def first(tx_id: str) -> None:
        body = call("request_offchain_funds", offchain_funds(tx_id), 1)
        expect(await rpc.post("/", json=body), "pending_user_transfer_start")

    async def second(tx_id: str) -> None:
        body = call("notify_offchain_funds_received", {"transaction_id": tx_id}, 2)
        expect(await rpc.post("/", json=body), "pending_anchor")

    return [partial(first, t) for t in ids] + [partial(second, t) for t in ids]


def bare_changes(bare: httpx.AsyncClient, ids: list[str]) -> Calls:
    async def change(tx_id: str, status: str) -> None:
        answer = (await bare.post(f"/change/{tx_id}", params={"status": status})).json()
        assert "version" in answer, answer

    return [partial(change, t, "pending_user_transfer_start") for t in ids] + [
        partial(change, t, "pending_anchor") for t in ids
    ]


def rpc_reads(rpc: httpx.AsyncClient, ids: list[str]) -> Calls:
    async def read(tx_id: str) -> None:
        body = call("get_transaction", {"transaction_id": tx_id}, 3)
        expect(await rpc.post("/", json=body), "pending_anchor")

    return [partial(read, t) for t in ids]


def bare_reads(bare: httpx.AsyncClient, ids: list[str]) -> Calls:
    async def read(tx_id: str) -> None:
        expect(await bare.get(f"/get/{tx_id}"), "pending_anchor")

    return [partial(read, t) for t in ids]


def rpc_payments(rpc: httpx.AsyncClient, ids: list[str]) -> Calls:
    async def pay(tx_id: str) -> None:
        body = call("do_stellar_payment", {"transaction_id": tx_id}, 4)
        expect(await rpc.post("/", json=body), "pending_stellar")

    return [partial(pay, t) for t in ids]


def bare_inserts(bare: httpx.AsyncClient, ids: list[str], destinations: list[str]) -> Calls:
    async def insert(payout_id: str, destination: str) -> None:
        params = {"destination": destination, "asset": USDC}
        assert (await bare.post(f"/insert/{payout_id}", params=params)).status_code == 200

    return [partial(insert, p, d) for p, d in zip(ids, destinations, strict=True)]


async def stub_reads(horizon_url: str) -> int:
    async with httpx.AsyncClient() as stats:
        count: int = (await stats.get(f"{horizon_url}/stats")).json()["account_reads"]
    return count


async def rpc_intents(engine: AsyncEngine) -> int:
    """Payout rows the RPC recorded (the bare side's ids start with "bare-")."""
    query = select(func.count()).select_from(PAYOUTS).where(PAYOUTS.c.id.not_like("bare-%"))
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def run_pair(pair: Pair, round_no: int, rpc: Calls, bare: Calls, in_flight: int = 1) -> None:
    """One round of both sides. One call at a time, they take turns every TURN calls, so a
    burst of load from elsewhere on the machine falls on both; a backlog runs whole, the
    side that goes first alternating by round."""
    size = max(len(rpc), len(bare))
    step = TURN if in_flight == 1 else size
    sides = [("rpc", rpc), ("bare", bare)]
    if round_no % 2:
        sides.reverse()
    for start in range(0, size, step):
        for side, calls in sides:
            pair.add(side, await timed(calls[start : start + step], in_flight))


def accounts(count: int, round_no: int) -> list[str]:
    """`count` distinct valid account ids, new ones each round (nothing cached from before)."""
    return [
        Keypair.from_raw_ed25519_seed(bytes([round_no, i % 256, i // 256]) + bytes(29)).public_key
        for i in range(count)
    ]


def bench_settings(tmp: str, horizon_url: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
        stellar_network="testnet",
        horizon_url=horizon_url,
        custody_type="stellar",
        assets_file=CONFIG / "assets.toml",
    )


async def sqlite_settings(engine: AsyncEngine) -> str:
    """What both sides run with (store/db.py's engine): journal mode, synchronous, timeout."""
    async with engine.connect() as conn:
        values = [
            f"{name}={(await conn.exec_driver_sql(f'PRAGMA {name}')).scalar()}"
            for name in ("journal_mode", "synchronous", "busy_timeout")
        ]
    return " ".join(values)


class Bench:
    def __init__(self, rpc: httpx.AsyncClient, bare: httpx.AsyncClient) -> None:
        self.rpc, self.bare = rpc, bare
        self.changes = Pair("status changes", "changes/s")
        self.reads = Pair("get_transaction", "reads/s")
        self.payments = Pair("do_stellar_payment", "intents/s")

    async def round(self, r: int, n: int, backlog: int, in_flight: int, users: list[str]) -> None:
        rpc, bare = self.rpc, self.bare
        rpc_ids = [await create(rpc) for _ in range(n)]
        bare_ids = [await create(rpc) for _ in range(n)]
        await run_pair(self.changes, r, rpc_changes(rpc, rpc_ids), bare_changes(bare, bare_ids))
        await run_pair(self.reads, r, rpc_reads(rpc, rpc_ids), bare_reads(bare, bare_ids))
        destinations = [users[i % len(users)] for i in range(backlog)]
        due = [await create(rpc, d) for d in destinations]
        for tx_id in due:
            await fund(rpc, tx_id)
        payout_ids = [f"bare-{r}-{i}" for i in range(backlog)]
        await run_pair(
            self.payments,
            r,
            rpc_payments(rpc, due),
            bare_inserts(bare, payout_ids, destinations),
            in_flight,
        )


async def main(
    n: int = 150,
    rounds: int = 4,
    backlog: int = 200,
    in_flight: int = 50,
    backlog_accounts: int = 50,
) -> None:
    with tempfile.TemporaryDirectory() as tmp, horizon_stub() as horizon_url:
        app = create_app(bench_settings(tmp, horizon_url), run_worker=False)
        async with app.router.lifespan_context(app):
            engine = app.state.services.sessions.kw["bind"]
            async with client(app) as rpc, client(bare_app(engine)) as bare:
                start = time.perf_counter()
                for _ in range(n):
                    await create(rpc)
                creates = n / (time.perf_counter() - start)
                bench = Bench(rpc, bare)
                reads_before = await stub_reads(horizon_url)
                for r in range(rounds):
                    await bench.round(r, n, backlog, in_flight, accounts(backlog_accounts, r))
                account_reads = await stub_reads(horizon_url) - reads_before
                recorded = await rpc_intents(engine)
                assert recorded == rounds * backlog, recorded
                sqlite = await sqlite_settings(engine)
    print(
        f"rpc over ASGI + SQLite ({sqlite}), {rounds} interleaved rounds; bare = Starlette + "
        f"SQLAlchemy Core on the same engine:\n"
        f"  creates             rpc {creates:7,.0f} creates/s\n"
        f"{bench.changes.line()}\n{bench.reads.line()}\n{bench.payments.line()}\n"
        f"  do_stellar_payment: {rounds} x {backlog} calls, {in_flight} in flight, "
        f"{backlog_accounts} accounts per round; {account_reads} Horizon account reads "
        f"(20-50 ms each; {account_reads / (rounds * backlog_accounts):.2f} per account and "
        f"round: TRUSTLINE_FRESH_S reuse and coalescing), {recorded} intents recorded"
    )


if __name__ == "__main__":
    asyncio.run(main())
