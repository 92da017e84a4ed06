"""Several dispatchers (each its own engine and lease owner, as worker processes) share the
outbox: no event is ever being sent by two of them at once, each is delivered once, each
transaction's events in order, different transactions in parallel."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from anchorpay.clock import SYSTEM, Clock
from anchorpay.domain.assets import AssetList
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.events import verify_callback
from anchorpay.metrics import Metrics
from anchorpay.scheduler.event_delivery import EventDispatcher
from anchorpay.settings import Settings
from anchorpay.store import transactions as repo
from anchorpay.store.db import create_engine, session_factory
from support.app import SettingsFactory
from support.event_receiver import SECRET
from support.payout_fixtures import served
from support.sandbox_fixtures import free_port

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)

T0 = Transaction(id="", kind=Kind.DEPOSIT, status=Status.INCOMPLETE, started_at=SYSTEM.now())
STEPS = [Status.PENDING_USER_TRANSFER_START, Status.PENDING_ANCHOR, Status.ERROR]


@dataclass
class JobStandIn:  # what the dispatcher reads of JobServices
    settings: Settings
    assets: AssetList
    sessions: async_sessionmaker[AsyncSession]
    ledger: Any = None
    fireblocks: Any = None
    distribution_secret_default: str | None = None
    clock: Clock = field(default=SYSTEM)
    metrics: Metrics = field(default_factory=Metrics)


@dataclass
class SlowReceiver:
    """Holds each callback 20 ms and notes any event that arrives while in flight."""

    in_flight: set[str] = field(default_factory=set)
    overlaps: list[str] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    peak: int = 0

    async def event(self, request: Request) -> Response:
        payload = verify_callback(await request.body(), request.headers, SECRET)["payload"]
        if payload["id"] in self.in_flight:
            self.overlaps.append(payload["id"])
        self.in_flight.add(payload["id"])
        self.peak = max(self.peak, len(self.in_flight))
        await asyncio.sleep(0.02)
        self.in_flight.discard(payload["id"])
        self.accepted.append(payload)
        return Response(status_code=204)


async def write_events(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    """`count` transactions, each created then moved three times: four events each."""
    for n in range(count):
        tx = T0.clone()
        tx.id = f"tx-{n}"
        async with sessions() as s, s.begin():
            await repo.insert(s, tx)
        for status in STEPS:
            async with sessions() as s, s.begin():
                stored = await repo.get(s, tx.id)
                assert stored is not None
                changed = stored.clone()
                changed.status = status
                await repo.update(s, changed, stored)


async def test_dispatchers_share_the_outbox_without_sending_one_event_twice(
    settings_factory: SettingsFactory, db_url: str
) -> None:
    port = free_port()
    receiver = SlowReceiver()
    settings = settings_factory(
        business_callback_url=f"http://127.0.0.1:{port}",
        business_callback_secret=SECRET,
        events_delivery_concurrency=4,
    )
    engines = [create_engine(db_url) for _ in range(4)]
    dispatchers = [
        EventDispatcher(
            JobStandIn(settings, settings.load_assets(), session_factory(e)),  # type: ignore[arg-type]
            owner=f"worker-{i}",
        )
        for i, e in enumerate(engines)
    ]
    try:
        await write_events(session_factory(engines[0]), 12)
        app = Starlette(routes=[Route("/event", receiver.event, methods=["POST"])])
        async with served(app, port), asyncio.timeout(60):
            sent = await asyncio.gather(*(d.run() for d in dispatchers))
    finally:
        for d in dispatchers:
            await d.aclose()
        for e in engines:
            await e.dispose()

    assert receiver.overlaps == []
    assert sum(sent) == 48 and len(receiver.accepted) == 48
    assert len({p["id"] for p in receiver.accepted}) == 48
    assert sum(1 for n in sent if n > 0) >= 2  # the work was shared
    assert receiver.peak > 1  # different transactions in parallel
    for n in range(12):
        statuses = [
            p["transaction"]["status"]
            for p in receiver.accepted
            if p["transaction"]["id"] == f"tx-{n}"
        ]
        assert statuses == ["incomplete", *STEPS]
