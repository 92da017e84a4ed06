"""One worker at a time runs each periodic job (trustline poller, payment observer,
Fireblocks incoming poll), on SQLite and PostgreSQL: the holder renews its lease every run,
the others skip; a dead holder's lease expires and another worker takes over; a clean stop
hands the lease back at once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import clock as clocks
from anchorpay.metrics import Metrics
from anchorpay.scheduler.leases import lease_ttl, one_worker_at_a_time, release_leases
from anchorpay.store import job_leases
from support.process_fixtures import Workers, sandbox_server

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Services:
    sessions: async_sessionmaker[AsyncSession]
    clock: clocks.Clock = clocks.SYSTEM
    metrics: Metrics = field(default_factory=Metrics)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def services(sessions: async_sessionmaker[AsyncSession]) -> Services:
    return Services(sessions)


def job(runs: list[str], who: str) -> object:
    async def run() -> None:
        runs.append(who)

    return run


async def test_one_holder_runs_the_others_skip_until_it_dies(services: Services) -> None:
    clock = Clock()
    runs: list[str] = []
    workers = {
        who: one_worker_at_a_time(
            services,  # type: ignore[arg-type]
            "observer",
            2.0,
            job(runs, who),  # type: ignore[arg-type]
            owner=who,
            clock=clock,
        )
        for who in ("w1", "w2", "w3")
    }
    assert [await workers[w]() for w in ("w1", "w2", "w3")] == [True, False, False]
    clock.now += timedelta(seconds=20)  # w1 renews within its TTL (30 s)
    assert [await workers[w]() for w in ("w2", "w1", "w3")] == [False, True, False]
    clock.now += timedelta(seconds=lease_ttl(2.0) + 1)  # w1 died: its lease expired
    assert [await workers[w]() for w in ("w3", "w2", "w1")] == [True, False, False]
    assert runs == ["w1", "w1", "w3"]


async def test_at_once_exactly_one_runs(services: Services) -> None:
    runs: list[str] = []
    clock = Clock()
    ran = await asyncio.gather(
        *(
            one_worker_at_a_time(
                services,  # type: ignore[arg-type]
                "trustlines.poll",
                10.0,
                job(runs, f"w{i}"),  # type: ignore[arg-type]
                owner=f"w{i}",
                clock=clock,
            )()
            for i in range(4)
        )
    )
    assert sum(ran) == 1 and len(runs) == 1


async def test_a_clean_stop_hands_the_lease_back(services: Services) -> None:
    clock = Clock()
    runs: list[str] = []
    w1 = one_worker_at_a_time(services, "poll", 3600, job(runs, "w1"), owner="w1", clock=clock)  # type: ignore[arg-type]
    w2 = one_worker_at_a_time(services, "poll", 3600, job(runs, "w2"), owner="w2", clock=clock)  # type: ignore[arg-type]
    assert (await w1(), await w2()) == (True, False)
    await release_leases(services, owner="w1")  # type: ignore[arg-type]
    assert await w2() is True
    assert runs == ["w1", "w2"]


async def test_jobs_have_separate_leases(services: Services) -> None:
    async with services.sessions() as session, session.begin():
        assert await job_leases.hold(session, "a", "w1", T0, 30)
        assert await job_leases.hold(session, "b", "w2", T0, 30)
        assert not await job_leases.hold(session, "a", "w2", T0, 30)
        assert await job_leases.hold(session, "a", "w1", T0 + timedelta(seconds=10), 30)


async def test_a_database_error_skips_the_run() -> None:
    class Broken:
        clock = clocks.SYSTEM

        def sessions(self) -> object:
            raise RuntimeError("database away")

    runs: list[str] = []
    run = one_worker_at_a_time(Broken(), "x", 1, job(runs, "w1"))  # type: ignore[arg-type]
    assert await run() is False and runs == []


# --- real processes ---------------------------------------------------------------------------


def latest_ledger_reads(sandbox: str) -> int:
    counters = httpx.get(f"{sandbox}/sandbox/stats", timeout=5).json()["counters"]
    return int(sum(counters.get("GET /ledgers", {}).values()))


async def test_three_worker_processes_read_the_ledger_as_one(tmp_path: Path) -> None:
    """Three `anchorpay worker` processes, observer every 0.2 s: the ledger is read by the
    lease holder only; when it stops cleanly another worker takes over at once."""
    with sandbox_server(tmp_path, "/sandbox/distribution") as sandbox:
        workers = Workers(tmp_path, sandbox, OBSERVER_INTERVAL_S="0.2")
        try:
            for _ in range(3):
                workers.start()
            await workers.ready()
            await asyncio.sleep(1.0)  # the first runs are delayed 1 s after start
            before = latest_ledger_reads(sandbox)
            await asyncio.sleep(3.0)
            reads = latest_ledger_reads(sandbox) - before
            # One worker: 3 s / 0.2 s = 15 runs; three unleased workers would make ~45.
            assert 3 <= reads <= 20, (reads, workers.logs())
            holder = owner_of(tmp_path, "payment_observer")
            (stopping,) = [p for p in workers.procs if f"-{p.pid}-" in holder]
            stopping.send_signal(signal.SIGTERM)
            assert stopping.wait(10) == 0
            async with asyncio.timeout(10):  # handed back: another worker's next run takes it
                taken = holder
                while taken == holder:
                    await asyncio.sleep(0.05)
                    taken = owner_of(tmp_path, "payment_observer", live=False)
            assert any(f"-{p.pid}-" in taken for p in workers.procs if p is not stopping)
        finally:
            workers.stop()


def owner_of(tmp_path: Path, job_name: str, live: bool = True) -> str:
    """The job's lease holder (`live`: only if its lease has not expired)."""
    query = "SELECT owner FROM job_leases WHERE name = ?"
    if live:
        query += " AND expires_at > datetime('now')"
    with sqlite3.connect(tmp_path / "anchorpay.db") as db:
        row = db.execute(query, (job_name,)).fetchone()
    assert row is not None, f"no lease for {job_name}"
    return str(row[0])
