"""The payouts repository on a real SQLite file (migrated with Alembic): intents, numbering,
leases, the one-in-flight rule, conditional writes; and the retry backoff."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.payout_states import PayoutMove, PayoutState
from anchorpay.scheduler.retry import Backoff
from anchorpay.store import payouts as store
from anchorpay.store.db import create_engine, session_factory
from anchorpay.store.migrate import upgrade
from anchorpay.store.tables import PayoutRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEST = "GCUSERXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"


@dataclass
class Intent:  # the fields of domain.machine.PayoutIntent the store reads
    purpose: str = "payment"
    destination: str = DEST
    asset: str = "stellar:native"
    amount: str = "10"
    memo: str | None = None
    memo_type: str | None = None
    refund_fee: str | None = None
    wait_for_trust: bool = False


async def record(
    sessions: async_sessionmaker[AsyncSession], tx: str, intent: Intent, adapter: str = "stellar"
) -> PayoutRow:
    async with sessions() as s, s.begin():
        return await store.record_intent(s, tx, intent, adapter, T0)  # type: ignore[arg-type]


async def force_state(sessions: async_sessionmaker[AsyncSession], pid: str, state: str) -> None:
    async with sessions() as s, s.begin():
        conn = await s.connection()
        await conn.execute(
            update(PayoutRow.__table__).where(PayoutRow.__table__.c.id == pid).values(state=state)
        )  # type: ignore[attr-defined]


async def claim(
    sessions: async_sessionmaker[AsyncSession], owner: str, now: datetime = T0, **kw: object
) -> list[PayoutRow]:
    async with sessions() as s, s.begin():
        return await store.claim_due(s, owner, now, 30, 10, **kw)  # type: ignore[arg-type]


async def test_record_intent_states_and_numbering(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    p = await record(sessions, "tx1", Intent())
    assert (p.state, p.seq, p.next_attempt_at) == ("queued", 1, T0)
    w = await record(sessions, "tx2", Intent(wait_for_trust=True))
    assert (w.state, w.next_attempt_at, w.waiting_since) == ("waiting_trust", None, T0)

    with pytest.raises(
        store.PayoutConflict, match=r"already has a payment payout in flight: payout .* is queued"
    ):
        await record(sessions, "tx1", Intent())

    r1 = await record(sessions, "tx3", Intent(purpose="refund", refund_fee="1"))
    with pytest.raises(
        store.PayoutConflict, match=r"already has a refund payout in flight: payout .* is queued"
    ):
        await record(sessions, "tx3", Intent(purpose="refund"))
    await force_state(sessions, r1.id, PayoutState.CONFIRMED)  # refund 1 done: the next is number 2
    r2 = await record(sessions, "tx3", Intent(purpose="refund"))
    assert (r2.seq, r2.refund_fee) == (2, None)

    await force_state(sessions, p.id, PayoutState.FAILED)  # a failed payment may be tried again...
    p2 = await record(sessions, "tx1", Intent())
    assert p2.seq == 2
    await force_state(sessions, p2.id, PayoutState.CONFIRMED)  # ...a confirmed one never
    with pytest.raises(store.PayoutConflict, match=r"was already paid on-chain by payout "):
        await record(sessions, "tx1", Intent())


async def test_unique_constraint_backs_the_check(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await record(sessions, "tx1", Intent())
    with pytest.raises(IntegrityError):
        async with sessions() as s, s.begin():
            s.add(
                PayoutRow(
                    id="dup",
                    transaction_id="tx1",
                    purpose="payment",
                    seq=1,
                    state="failed",
                    destination=DEST,
                    asset="stellar:native",
                    amount="1",
                    adapter="stellar",
                    created_at=T0,
                    updated_at=T0,
                )
            )


async def test_resume_and_cancel_waiting(sessions: async_sessionmaker[AsyncSession]) -> None:
    a = await record(sessions, "tx1", Intent(wait_for_trust=True))
    b = await record(sessions, "tx2", Intent(wait_for_trust=True))
    assert await claim(sessions, "w") == []  # recorded waiting: the poller's, not the worker's
    later = T0 + timedelta(seconds=5)
    async with sessions() as s, s.begin():
        await store.resume_waiting(s, "tx1", later)
        await store.cancel_unsent(s, "tx2", "The trustline was not established in time", later)
    async with sessions() as s:
        ra, rb = await store.get(s, a.id), await store.get(s, b.id)
    assert ra is not None and rb is not None
    assert (ra.state, ra.next_attempt_at, ra.version) == ("queued", later, 1)
    assert (rb.state, rb.last_error) == ("cancelled", "The trustline was not established in time")
    assert [r.id for r in await claim(sessions, "w", later)] == [a.id]


async def test_leases_exclude_other_workers_until_expiry(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    p = await record(sessions, "tx1", Intent(), adapter="fireblocks")
    (mine,) = await claim(sessions, "w1")
    assert (mine.lease_owner, mine.version) == ("w1", 1)
    assert await claim(sessions, "w2", T0 + timedelta(seconds=29)) == []
    (taken,) = await claim(sessions, "w2", T0 + timedelta(seconds=31))
    assert taken.id == p.id and taken.lease_owner == "w2"
    # the first holder's writes are refused from now on
    with pytest.raises(store.LeaseLost):
        async with sessions() as s, s.begin():
            await store.save(s, mine, "w1", T0, PayoutMove.PREPARE)
    async with sessions() as s, s.begin():
        saved = await store.save(s, taken, "w2", T0, PayoutMove.PREPARE, lease_s=30)
    assert (saved.state, saved.version) == ("submitting", 3)


async def test_one_in_flight_per_serial_adapter(sessions: async_sessionmaker[AsyncSession]) -> None:
    a = await record(sessions, "tx1", Intent())
    b = await record(sessions, "tx2", Intent())
    c = await record(sessions, "tx3", Intent(), adapter="fireblocks")
    serial = {"lanes": {"stellar": ("GDIST",)}}
    first = await claim(sessions, "w1", **serial)
    assert {r.id for r in first} == {a.id, c.id}  # one stellar payout, fireblocks unbounded
    assert await claim(sessions, "w2", **serial) == []  # b waits: a is leased
    held = next(r for r in first if r.id == a.id)
    async with sessions() as s, s.begin():  # a goes in flight and is released for a retry
        await store.save(s, held, "w1", T0, PayoutMove.PREPARE, release=True)
    assert [r.id for r in await claim(sessions, "w2", **serial)] == [a.id]  # in flight first
    async with sessions() as s, s.begin():
        row = await store.get(s, a.id)
        assert row is not None
        await store.save(s, row, "w2", T0, PayoutMove.CONFIRM, release=True)
    assert [r.id for r in await claim(sessions, "w2", **serial)] == [b.id]


async def test_concurrent_claims_never_share_a_payout(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for i in range(6):
        await record(sessions, f"tx{i}", Intent(), adapter="fireblocks")
    results = await asyncio.gather(*(claim(sessions, f"w{i}") for i in range(4)))
    ids = [r.id for rows in results for r in rows]
    assert len(ids) == len(set(ids)) == 6


async def test_one_in_flight_holds_across_processes(db_url: str) -> None:
    """Four engines (as four worker processes) race for six queued payouts of one source
    account: exactly one is claimed, whatever the interleaving."""
    if db_url.startswith("sqlite"):
        await upgrade(db_url)
    engines = [create_engine(db_url) for _ in range(4)]
    try:
        factories = [session_factory(e) for e in engines]
        for i in range(6):
            await record(factories[0], f"tx{i}", Intent())

        async def claim_as(n: int) -> list[PayoutRow]:
            async with factories[n]() as s, s.begin():
                rows = await store.claim_due(s, f"w{n}", T0, 30, 1, lanes={"stellar": ("GDIST",)})
                await asyncio.sleep(0.05)  # hold the transaction open while others try
                return rows

        results = await asyncio.gather(*(claim_as(n) for n in range(4)))
        assert sum(len(r) for r in results) == 1, results
    finally:
        for engine in engines:
            await engine.dispose()


async def test_list_payouts(sessions: async_sessionmaker[AsyncSession]) -> None:
    await record(sessions, "tx1", Intent(purpose="refund"))
    await record(sessions, "tx2", Intent())
    async with sessions() as s:
        rows = await store.list_payouts(s, transaction_id="tx1")
        assert [r.purpose for r in rows] == ["refund"]
        assert len(await store.list_payouts(s)) == 2
        assert await store.count_by_state(s) == {"queued": 2}


def test_backoff_grows_with_jitter_and_caps() -> None:
    b = Backoff(1.0, 30.0)
    for n in range(1, 12):
        cap = min(30.0, 2 ** (n - 1))
        delays = [b.delay(n) for _ in range(50)]
        assert all(0.5 <= d <= max(cap, 0.5) for d in delays)
    assert len({round(b.delay(6), 6) for _ in range(20)}) > 1  # jittered
    assert b.next_attempt_at(T0, 1) <= T0 + timedelta(seconds=1)


async def test_lanes_carry_one_payout_each(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Three channel accounts: three payouts at once, each on its own lane; the others wait
    for a lane to free up. A row from before lanes (no source_account) holds the first."""
    lanes = {"lanes": {"stellar": ("GC1", "GC2", "GC3")}}
    rows = [await record(sessions, f"tx{i}", Intent()) for i in range(5)]
    first = await claim(sessions, "w1", **lanes)
    assert len(first) == 3
    assert sorted(r.source_account or "" for r in first) == ["GC1", "GC2", "GC3"]
    assert await claim(sessions, "w2", **lanes) == []  # every lane is taken
    held = next(r for r in first if r.source_account == "GC2")
    async with sessions() as s, s.begin():
        await store.save(s, held, "w1", T0, PayoutMove.FAIL, release=True)
    (next_one,) = await claim(sessions, "w2", **lanes)
    assert next_one.source_account == "GC2" and next_one.id not in {r.id for r in first}
    # A legacy in-flight row without a lane counts as occupying the first lane.
    for row in [*first, next_one]:
        await force_state(sessions, row.id, PayoutState.CONFIRMED)
    last = next(r for r in rows if r.id not in {*(x.id for x in first), next_one.id})
    legacy = await record(sessions, "tx-legacy", Intent())
    await force_state(sessions, legacy.id, PayoutState.SUBMITTED)
    async with sessions() as s, s.begin():
        await s.exec(  # type: ignore[call-overload]
            update(PayoutRow.__table__)  # type: ignore[attr-defined]
            .where(PayoutRow.__table__.c.id == legacy.id)  # type: ignore[attr-defined]
            .values(source_account=None, next_attempt_at=None)
        )
    (claimed,) = await claim(sessions, "w3", **lanes)
    assert (claimed.id, claimed.source_account) == (last.id, "GC2")  # GC1 is the legacy row's


async def test_a_lane_takes_the_oldest_payout_and_memo_less_ones_batch_with_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Operation batching: a free lane takes the oldest due payout; when it has no memo, the
    next oldest memo-less ones join it up to the batch size. A memo'd payout gets a lane to
    itself (one memo per Stellar transaction), and the oldest goes first whatever its kind."""
    memo = Intent(memo="42", memo_type="id")
    kinds = [memo, *[Intent()] * 5, memo]  # m0 a1 a2 a3 a4 a5 m6, oldest first
    rows = []
    for i, intent in enumerate(kinds):
        async with sessions() as s, s.begin():
            rows.append(
                await store.record_intent(
                    s,
                    f"tx{i}",
                    intent,  # type: ignore[arg-type]
                    "stellar",
                    T0 + timedelta(seconds=i),
                )
            )
    names = {r.id: f"{'m' if r.memo else 'a'}{i}" for i, r in enumerate(rows)}
    opts = {"lanes": {"stellar": ("GC1", "GC2")}, "batch": {"stellar": 3}}
    now = T0 + timedelta(minutes=1)

    def by_lane(claimed: list[PayoutRow]) -> dict[str, list[str]]:
        lanes: dict[str, list[str]] = {}
        for row in claimed:
            lanes.setdefault(row.source_account or "", []).append(names[row.id])
        return lanes

    first = await claim(sessions, "w1", now, **opts)
    assert by_lane(first) == {"GC1": ["m0"], "GC2": ["a1", "a2", "a3"]}
    assert await claim(sessions, "w2", now, **opts) == []  # both lanes carry an envelope
    for row in first:
        async with sessions() as s, s.begin():
            await store.save(s, row, "w1", now, PayoutMove.FAIL, release=True)
    second = await claim(sessions, "w2", now, **opts)
    assert by_lane(second) == {"GC1": ["a4", "a5"], "GC2": ["m6"]}
    assert all(r.lease_owner == "w2" for r in second)


async def test_an_envelope_on_the_ledger_frees_its_lane_before_its_completion(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A batch confirmed on the ledger has consumed its sequence number: while its
    completions are written (each payout still `submitting`, its `ledger` known), the lane
    takes the next envelope. Without `ledger` the lane stays busy."""
    opts = {"lanes": {"stellar": ("GC1",)}, "batch": {"stellar": 2}}
    for i in range(4):
        async with sessions() as s, s.begin():
            await store.record_intent(
                s,
                f"tx{i}",
                Intent(),  # type: ignore[arg-type]
                "stellar",
                T0 + timedelta(seconds=i),
            )
    now = T0 + timedelta(minutes=1)
    first = await claim(sessions, "w1", now, **opts)
    assert len(first) == 2
    async with sessions() as s, s.begin():
        sent = await store.save_all(s, first, "w1", now, PayoutMove.PREPARE, {}, lease_s=30)
    assert await claim(sessions, "w2", now, **opts) == []  # in flight: the lane is busy
    async with sessions() as s, s.begin():
        await store.save_all(
            s, sent, "w1", now, PayoutMove.KEEP, {r.id: {"ledger": 7} for r in sent}, lease_s=30
        )
    second = await claim(sessions, "w2", now, **opts)
    assert [r.source_account for r in second] == ["GC1", "GC1"]
    assert {r.id for r in second}.isdisjoint(r.id for r in first)
