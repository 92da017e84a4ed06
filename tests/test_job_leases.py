"""One worker at a time runs each periodic job (trustline poller, payment observer,
Fireblocks incoming poll), on SQLite and PostgreSQL: the holder renews its lease every run,
the others skip; a dead holder's lease expires and another worker takes over; a clean stop
hands the lease back at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.scheduler.singleton import lease_ttl, one_worker_at_a_time, release_leases
from anchorpay.store import job_leases
from anchorpay.store.db import create_engine, session_factory
from anchorpay.store.migrate import upgrade

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Services:
    sessions: async_sessionmaker[AsyncSession]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def services(db_url: str) -> AsyncIterator[Services]:
    if db_url.startswith("sqlite"):
        await upgrade(db_url)
    engine = create_engine(db_url)
    yield Services(session_factory(engine))
    await engine.dispose()


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
        def sessions(self) -> object:
            raise RuntimeError("database away")

    runs: list[str] = []
    run = one_worker_at_a_time(Broken(), "x", 1, job(runs, "w1"))  # type: ignore[arg-type]
    assert await run() is False and runs == []
