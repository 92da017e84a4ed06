"""The payout worker's protocol over a fake custodian and a real SQLite store: every path that
could pay twice (timeouts after applying, lost submissions, dead envelopes, lost leases) ends
with exactly one application per payout, and completion is atomic with the payout's state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import clock as clocks
from anchorpay.adapters.custody import (
    Confirmed,
    Failed,
    LookupResult,
    NotFound,
    PayoutOrder,
    PayoutUpdate,
    Pending,
    PermanentCustodyError,
    SubmitOutcome,
    TransientCustodyError,
)
from anchorpay.domain.errors import InternalError, InvalidRequest
from anchorpay.domain.payout_states import PayoutMove
from anchorpay.domain.settlement import SettledPayout
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.metrics import Metrics
from anchorpay.scheduler.completion import Completion
from anchorpay.scheduler.payouts import PayoutProcessor
from anchorpay.scheduler.retry import Backoff
from anchorpay.settings import Settings
from anchorpay.store import events as event_store
from anchorpay.store import payouts as store
from anchorpay.store import transactions as tx_store
from anchorpay.store.db import create_engine, session_factory
from anchorpay.store.migrate import upgrade
from anchorpay.store.tables import PayoutRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEST = "GCUSERXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeCustodian:
    """A network with envelopes: material applies at most once; a bound makes it dead."""

    clock: Clock
    script: list[str] = field(default_factory=list)  # behaviours of the next submits
    applied: dict[str, str] = field(default_factory=dict)  # hash -> payout id
    prepared: int = 0
    trusted: bool = True
    submits: int = 0

    name = "fake"
    source_accounts = ("GSOURCE",)

    async def prepare(self, order: PayoutOrder) -> PayoutUpdate:
        if order.amount == "bad":
            raise PermanentCustodyError("Amount bad cannot be paid")
        self.prepared += 1
        return PayoutUpdate(
            envelope_xdr="xdr",
            tx_hash=f"{order.id}-{self.prepared}",
            source_sequence=self.prepared,
            valid_until=self.clock() + timedelta(seconds=60),
        )

    async def submit(self, order: PayoutOrder) -> SubmitOutcome:
        assert order.tx_hash is not None and order.valid_until is not None
        self.submits += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "drop":
            raise TransientCustodyError("gateway timeout")
        if step == "fail":
            return Failed("The destination account does not exist (op_no_destination)")
        if self.clock() > order.valid_until:
            raise TransientCustodyError("tx_too_late")
        if order.tx_hash not in self.applied and any(
            pid == order.id for pid in self.applied.values()
        ):
            raise AssertionError(f"second payment for {order.id}")
        self.applied.setdefault(order.tx_hash, order.id)
        if step == "apply_then_timeout":
            raise TransientCustodyError("504 after applying")
        return Confirmed(hash=order.tx_hash, ledger=7)

    async def lookup(self, order: PayoutOrder) -> LookupResult:
        assert order.tx_hash is not None and order.valid_until is not None
        if order.tx_hash in self.applied:
            return Confirmed(hash=order.tx_hash, ledger=7)
        return NotFound(dead=self.clock() > order.valid_until + timedelta(seconds=1))

    async def check_trustline(self, account: str, asset: str) -> bool:
        return self.trusted

    async def aclose(self) -> None:
        return None


@dataclass
class FakeServices:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    clock: clocks.Clock = clocks.SYSTEM
    metrics: Metrics = field(default_factory=Metrics)


class FakeWorkflow:
    """Stands in for workflow.run_method: the payout's final write runs in the same database
    transaction as the transaction's update; `refuse` makes the machine say no."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse: Exception | None = None
        self.settled: list[SettledPayout] = []

    async def __call__(
        self,
        services: Any,
        method: str,
        params: dict[str, Any],
        *,
        now: datetime | None = None,
        in_same_transaction: Callable[[AsyncSession], Awaitable[None]] | None = None,
        settling: str | None = None,
        known: Any = None,
    ) -> Transaction:
        if self.refuse is not None:
            raise self.refuse
        async with services.sessions() as session, session.begin():
            tx = await tx_store.get(session, params["transaction_id"])
            assert tx is not None
            tx.status = Status.COMPLETED if "sent" in method else Status.ERROR
            tx = await tx_store.update(session, tx)
            if in_same_transaction is not None:
                await in_same_transaction(session)
        self.calls.append((method, params))
        return tx

    async def record_settled(
        self,
        services: Any,
        settled: SettledPayout,
        *,
        now: datetime,
        in_same_transaction: Callable[[AsyncSession], Awaitable[None]],
    ) -> Transaction:
        """Stands in for workflow.record_settled_payout: the transaction keeps its status."""
        async with services.sessions() as session, session.begin():
            tx = await tx_store.get(session, settled.transaction_id)
            assert tx is not None
            await in_same_transaction(session)
        self.settled.append(settled)
        return tx


@dataclass
class Intent:
    purpose: str = "payment"
    destination: str = DEST
    asset: str = "stellar:native"
    amount: str = "10"
    memo: str | None = None
    memo_type: str | None = None
    refund_fee: str | None = None
    wait_for_trust: bool = False


@dataclass
class Rig:
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    custodian: FakeCustodian
    workflow: FakeWorkflow
    settings: Settings

    def worker(self, owner: str = "w1") -> PayoutProcessor:
        completion = Completion(
            FakeServices(self.settings, self.sessions),
            run_method=self.workflow,
            clock=self.clock,
            record_settled=self.workflow.record_settled,
        )
        return PayoutProcessor(
            self.settings,
            self.sessions,
            self.custodian,
            completion,
            owner=owner,
            clock=self.clock,
            backoff=Backoff(1.0, 8.0, floor_s=1.0),
        )

    async def intent(self, tx_id: str, **kw: Any) -> PayoutRow:
        async with self.sessions() as s, s.begin():
            await tx_store.insert(
                s,
                Transaction(
                    id=tx_id, kind=Kind.DEPOSIT, status=Status.PENDING_STELLAR, started_at=T0
                ),
            )
            return await store.record_intent(s, tx_id, Intent(**kw), "fake", self.clock())  # type: ignore[arg-type]

    async def payout(self, pid: str) -> PayoutRow:
        async with self.sessions() as s:
            row = await store.get(s, pid)
        assert row is not None
        return row


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    await upgrade(url)
    engine = create_engine(url)
    clock = Clock()
    settings = Settings(payout_lease_s=30, payout_max_attempts=4)  # type: ignore[call-arg]
    yield Rig(session_factory(engine), clock, FakeCustodian(clock), FakeWorkflow(), settings)
    await engine.dispose()


async def test_happy_path_completes_atomically(rig: Rig) -> None:
    p = await rig.intent("tx1")
    assert await rig.worker().run_batch() == 1
    row = await rig.payout(p.id)
    assert (row.state, row.attempts, row.tx_hash, row.ledger) == ("confirmed", 1, f"{p.id}-1", 7)
    assert row.lease_owner is None
    assert rig.workflow.calls == [
        (
            "notify_onchain_funds_sent",
            {
                "transaction_id": "tx1",
                "stellar_transaction_id": f"{p.id}-1",
                "message": "Outgoing payment sent",
            },
        )
    ]
    assert await rig.worker().run_batch() == 0


async def test_timeout_after_apply_is_looked_up_not_repaid(rig: Rig) -> None:
    p = await rig.intent("tx1")
    rig.custodian.script = ["apply_then_timeout"]
    w = rig.worker()
    await w.run_batch()
    row = await rig.payout(p.id)
    assert (row.state, row.attempts) == ("submitting", 2)
    assert "504" in (row.last_error or "")
    assert await w.run_batch() == 0  # backing off
    rig.clock.advance(5)
    await w.run_batch()
    row = await rig.payout(p.id)
    assert row.state == "confirmed" and rig.custodian.submits == 1
    assert list(rig.custodian.applied.values()) == [p.id]


async def test_dropped_submission_resends_the_same_envelope(rig: Rig) -> None:
    p = await rig.intent("tx1")
    rig.custodian.script = ["drop", "drop"]
    w = rig.worker()
    for _ in range(3):
        await w.run_batch()
        rig.clock.advance(10)
    row = await rig.payout(p.id)
    assert (row.state, row.tx_hash, rig.custodian.prepared) == ("confirmed", f"{p.id}-1", 1)
    assert rig.custodian.submits == 3


async def test_dead_envelope_is_rebuilt_only_after_its_bound(rig: Rig) -> None:
    p = await rig.intent("tx1")
    rig.custodian.script = ["drop"]
    w = rig.worker()
    await w.run_batch()
    rig.clock.advance(90)  # bound passed, never applied: a new envelope is proven safe
    rig.custodian.script = []
    await w.run_batch()
    row = await rig.payout(p.id)
    assert (row.state, row.tx_hash, rig.custodian.prepared) == ("confirmed", f"{p.id}-2", 2)


async def test_crash_after_prepare_takes_over_after_lease(rig: Rig) -> None:
    p = await rig.intent("tx1")
    w1 = rig.worker("w1")
    async with rig.sessions() as s, s.begin():
        (row,) = await store.claim_due(s, "w1", rig.clock(), 30, 1)
    update = await rig.custodian.prepare(store_order(row))
    await w1.save(
        row,
        PayoutMove.PREPARE,
        envelope_xdr="xdr",
        tx_hash=update.tx_hash,
        valid_until=update.valid_until,
        attempts=1,
    )
    # ...the process dies here. Another worker waits out the lease, then finishes it.
    w2 = rig.worker("w2")
    assert await w2.run_batch() == 0
    rig.clock.advance(31)
    assert await w2.run_batch() == 1
    row = await rig.payout(p.id)
    assert (row.state, row.tx_hash, rig.custodian.prepared) == ("confirmed", update.tx_hash, 1)


def store_order(row: PayoutRow) -> PayoutOrder:
    from anchorpay.scheduler.payouts import to_order

    return to_order(row)


async def test_permanent_failure_errors_the_transaction_without_retry(rig: Rig) -> None:
    p = await rig.intent("tx1")
    rig.custodian.script = ["fail"]
    await rig.worker().run_batch()
    row = await rig.payout(p.id)
    assert (row.state, row.last_error) == (
        "failed",
        "The destination account does not exist (op_no_destination)",
    )
    assert rig.workflow.calls[0][0] == "notify_transaction_error"
    rig.clock.advance(1000)
    assert await rig.worker().run_batch() == 0

    q = await rig.intent("tx2", amount="bad")
    await rig.worker().run_batch()
    assert (await rig.payout(q.id)).last_error == "Amount bad cannot be paid"


async def test_refused_failure_fails_the_payout_with_a_payout_failed_event(rig: Rig) -> None:
    """The business moved the transaction: the failure does not move it, but the business
    learns of it (payout_failed), in the same database transaction as the payout's end."""
    p = await rig.intent("tx1")
    rig.custodian.script = ["fail"]
    rig.workflow.refuse = InvalidRequest("RPC method[notify_transaction_error] is not supported")
    await rig.worker().run_batch()
    row = await rig.payout(p.id)
    reason = "The destination account does not exist (op_no_destination)"
    assert (row.state, row.last_error) == (
        "failed",
        f"{reason}; transaction was in status pending_stellar and was not moved",
    )
    async with rig.sessions() as s:
        events = await event_store.for_transaction(s, "tx1")
        tx = await tx_store.get(s, "tx1")
    assert [(e.type, e.seq) for e in events] == [("transaction_created", 1), ("payout_failed", 2)]
    assert events[1].detail == {
        "id": p.id,
        "purpose": "payment",
        "state": "failed",
        "error": reason,
    }
    assert tx is not None and (tx.status, tx.version) == (Status.PENDING_STELLAR, 1)
    assert tx_store.from_snapshot(events[1].transaction) == tx


async def test_refused_completion_is_recorded_not_repaid(rig: Rig) -> None:
    p = await rig.intent("tx1")
    rig.workflow.refuse = InvalidRequest("RPC method[notify_onchain_funds_sent] is not supported")
    await rig.worker().run_batch()
    row = await rig.payout(p.id)
    assert row.state == "confirmed"
    assert row.last_error == (
        "transaction was in status pending_stellar; recorded on it, status not changed"
    )
    assert rig.workflow.settled == [SettledPayout(p.id, "tx1", "payment", f"{p.id}-1", "10", None)]
    assert len(rig.custodian.applied) == 1


async def test_transient_completion_error_retries_the_completion(rig: Rig) -> None:
    p = await rig.intent("tx1")
    rig.workflow.refuse = InternalError("Horizon did not answer")
    await rig.worker().run_batch()
    assert (await rig.payout(p.id)).state == "submitting"
    rig.workflow.refuse = None
    rig.clock.advance(10)
    await rig.worker().run_batch()
    row = await rig.payout(p.id)
    assert row.state == "confirmed" and rig.custodian.submits == 1


async def test_missing_trustline_hands_a_deposit_back_to_the_trustline_poller(rig: Rig) -> None:
    p = await rig.intent("tx1", asset="stellar:USDC:GISSUER")
    rig.custodian.trusted = False
    await rig.worker().run_batch()
    row = await rig.payout(p.id)
    assert (row.state, row.next_attempt_at, row.waiting_since) == ("waiting_trust", None, T0)
    assert "has no trustline for USDC:GISSUER" in (row.last_error or "")
    assert rig.workflow.calls == [
        ("trustline_lost", {"transaction_id": "tx1", "message": row.last_error})
    ]
    assert rig.custodian.prepared == 0
    rig.custodian.trusted = True
    rig.clock.advance(10)
    await rig.worker().run_batch()  # not the dispatcher's any more: the poller resumes it
    assert (await rig.payout(p.id)).state == "waiting_trust"
    assert rig.custodian.prepared == 0


async def test_missing_trustline_parks_a_refund_for_the_worker(rig: Rig) -> None:
    p = await rig.intent("tx1", purpose="refund", asset="stellar:USDC:GISSUER")
    rig.custodian.trusted = False
    await rig.worker().run_batch()
    row = await rig.payout(p.id)
    assert row.state == "waiting_trust" and row.next_attempt_at is not None
    assert rig.custodian.prepared == 0
    rig.custodian.trusted = True
    rig.clock.advance(10)
    await rig.worker().run_batch()
    assert (await rig.payout(p.id)).state == "confirmed"


async def test_gives_up_after_max_attempts_when_nothing_is_live(rig: Rig) -> None:
    class Down(FakeCustodian):
        async def check_trustline(self, account: str, asset: str) -> bool:
            raise TransientCustodyError("Horizon is down")

    rig.custodian = Down(rig.clock)
    p = await rig.intent("tx1")
    for _ in range(6):
        await rig.worker().run_batch()
        rig.clock.advance(20)
    row = await rig.payout(p.id)
    assert row.state == "failed"
    assert row.last_error == "Gave up after 4 attempts; last error: Horizon is down"


async def test_worker_wake_dispatches_at_once_and_stops_cleanly(rig: Rig) -> None:
    import asyncio

    from anchorpay.scheduler.worker import Worker

    @dataclass
    class Services:
        settings: Settings
        sessions: async_sessionmaker[AsyncSession]
        ledger: Any = None
        clock: clocks.Clock = clocks.SYSTEM
        metrics: Metrics = field(default_factory=Metrics)

    rig.clock.now = datetime.now(UTC)  # the worker runs on the wall clock here
    settings = Settings(worker_tick_s=60, payout_lease_s=30)  # type: ignore[call-arg]
    worker = Worker(
        Services(settings, rig.sessions),
        adapter=rig.custodian,
        run_method=rig.workflow,
        optional_jobs=False,
    )
    await worker.start()
    try:
        await asyncio.sleep(0.1)  # the first tick ran with nothing to do
        p = await rig.intent("tx1")
        worker.wake()
        for _ in range(100):
            if (await rig.payout(p.id)).state == "confirmed":
                break
            await asyncio.sleep(0.01)
        assert (await rig.payout(p.id)).state == "confirmed"
    finally:
        await worker.stop()


async def test_transaction_moved_before_sending_cancels_the_payout(rig: Rig) -> None:
    p = await rig.intent("tx1")
    async with rig.sessions() as s, s.begin():
        tx = await tx_store.get(s, "tx1")
        assert tx is not None
        tx.status = Status.ERROR  # the business gave up on it before the worker ran
        await tx_store.update(s, tx)
    await rig.worker().run_batch()
    row = await rig.payout(p.id)
    assert (row.state, row.last_error) == (
        "cancelled",
        "transaction was in status error before anything was sent; payout cancelled",
    )
    assert rig.custodian.prepared == 0 and rig.workflow.calls == []


class Unbounded(FakeCustodian):
    """Fireblocks-like: the material is an external id with no time bound; a create is
    idempotent; `lookup` answers Pending until `final_after` lookups, then Confirmed."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.created: set[str] = set()
        self.lookups = 0
        self.final_after = 0

    async def prepare(self, order: PayoutOrder) -> PayoutUpdate:
        self.prepared += 1
        return PayoutUpdate(adapter_ref=order.id)

    async def submit(self, order: PayoutOrder) -> SubmitOutcome:
        self.submits += 1
        step = self.script.pop(0) if self.script else "ok"
        if step == "drop":
            raise TransientCustodyError("Fireblocks answered HTTP 503")
        self.created.add(order.id)  # a second create of the same id changes nothing
        return Pending("SUBMITTED")

    async def lookup(self, order: PayoutOrder) -> LookupResult:
        self.lookups += 1
        if order.id not in self.created:
            return NotFound(dead=False)
        if self.lookups > self.final_after:
            return Confirmed(hash=f"hash-{order.id}", ledger=9)
        return Pending("BROADCASTING")


async def test_unbounded_material_is_resent_after_max_attempts(rig: Rig) -> None:
    """With no bound nothing resolves by itself: after PAYOUT_MAX_ATTEMPTS (4) failed
    creates the worker still resends the same create, and pays once when it goes through."""
    rig.custodian = Unbounded(rig.clock)
    rig.custodian.script = ["drop"] * 6
    p = await rig.intent("tx1")
    w = rig.worker()
    for _ in range(8):
        await w.run_batch()
        rig.clock.advance(60)
    row = await rig.payout(p.id)
    assert (row.state, row.tx_hash) == ("confirmed", f"hash-{p.id}")
    assert rig.custodian.submits == 7 and rig.custodian.prepared == 1
    assert rig.custodian.created == {p.id}


async def test_pending_is_polled_with_a_growing_capped_delay(rig: Rig) -> None:
    rig.custodian = Unbounded(rig.clock)
    rig.custodian.final_after = 100
    rig.settings = Settings(  # type: ignore[call-arg]
        payout_lease_s=30, payout_max_attempts=4, payout_retry_base_s=1, payout_poll_max_s=5
    )
    p = await rig.intent("tx1")
    w = rig.worker()
    await w.run_batch()  # created: SUBMITTED
    delays = []
    for _ in range(6):
        row = await rig.payout(p.id)
        assert row.state == "submitted" and row.next_attempt_at is not None
        delays.append((row.next_attempt_at - rig.clock()).total_seconds())
        rig.clock.now = row.next_attempt_at
        await w.run_batch()
    assert delays == [1.0, 1.5, 2.25, 3.375, 5.0, 5.0]
    assert (await rig.payout(p.id)).polls == 7  # the create answered pending, then 6 looks
