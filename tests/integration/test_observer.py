"""The payment observer over a fake ledger: cursors, units, exactly-once across crashes,
unmatched payments, health. (The matching rules are in test_incoming.py, the sandbox
end-to-end run in test_observer_sandbox.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.ledger import (
    LatestLedger,
    LedgerError,
    LedgerNotFound,
    LedgerUnavailable,
    ObservedPayment,
    PaymentsPage,
)
from anchorpay.api.observer_health import observer_health
from anchorpay.clock import SYSTEM, Clock
from anchorpay.domain.assets import Asset, AssetList
from anchorpay.domain.errors import InternalError, InvalidParams
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import StellarTransaction, Transaction
from anchorpay.incoming import Finish, IncomingPayments
from anchorpay.metrics import Metrics
from anchorpay.scheduler import observer as observer_mod
from anchorpay.scheduler.observer import PaymentObserver
from anchorpay.settings import Settings
from anchorpay.store import observer as store
from anchorpay.store import transactions
from anchorpay.store.db import create_engine, session_factory
from anchorpay.store.migrate import upgrade

DIST = "GDPWCPMWBW6PCXSXVZ4ISXK7245P6QEVSARTRJ4AG3ZMHBJTMCLZQ5GS"
ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USER = "GCUSERXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
OTHER = "GCOTHERXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
USDC = f"stellar:USDC:{ISSUER}"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ASSETS = AssetList(
    (
        Asset(id=USDC, significant_decimals=7, distribution_account=DIST),
        Asset(id="stellar:native", significant_decimals=7, distribution_account=DIST),
        Asset(id="iso4217:USD", significant_decimals=2),
    )
)
BASE_MESSAGE = "Received an incoming payment"


class FakeLedger:
    """`/accounts/{id}/payments` over a list, paging tokens compared as integers."""

    def __init__(self) -> None:
        self.by_account: dict[str, list[ObservedPayment]] = {}
        self.sequence = 100
        self.calls = 0
        self.fail_latest = False

    def pay(
        self,
        to: str,
        amount: str,
        memo: str | None,
        *,
        memo_type: str = "id",
        asset: str = USDC,
        source: str = USER,
        successful: bool = True,
        type_: str = "payment",
    ) -> ObservedPayment:
        n = sum(len(v) for v in self.by_account.values()) + 1
        payment = ObservedPayment(
            id=str(1000 + n),
            paging_token=str(1000 + n),
            transaction_hash=f"{n:064x}",
            type=type_,
            source_account=source,
            destination_account=to,
            asset=asset,
            amount=amount,
            memo=memo,
            memo_type=memo_type if memo is not None else "none",
            successful=successful,
            created_at=T0,
        )
        for account in {to, source}:
            self.by_account.setdefault(account, []).append(payment)
        self.sequence += 1
        return payment

    async def payments(self, account_id: str, cursor: str | None, limit: int = 200) -> PaymentsPage:
        self.calls += 1
        if account_id == "testDestinationAccount":
            raise LedgerError("Horizon answered 400 Bad Request for payments")
        if account_id not in self.by_account:
            raise LedgerNotFound(account_id)
        after = int(cursor) if cursor else 0
        items = [p for p in self.by_account[account_id] if int(p.paging_token) > after][:limit]
        return PaymentsPage(items, items[-1].paging_token if items else cursor)

    async def latest_ledger(self) -> LatestLedger:
        if self.fail_latest:
            raise LedgerUnavailable("down", 503)
        return LatestLedger(self.sequence, T0)


@dataclass
class Services:
    settings: Settings
    assets: AssetList
    sessions: async_sessionmaker[AsyncSession]
    ledger: Any
    applied: list[dict[str, Any]] = field(default_factory=list)
    fail_apply: Exception | None = None
    clock: Clock = SYSTEM
    metrics: Metrics = field(default_factory=Metrics)

    async def apply(self, params: dict[str, Any], finish: Finish) -> Transaction:
        """What run_method does for notify_onchain_funds_received, minus Horizon: validate,
        apply, write, run `finish` in the same database transaction, commit."""
        if self.fail_apply is not None:
            raise self.fail_apply
        async with self.sessions() as session, session.begin():
            tx = await transactions.get(session, params["transaction_id"])
            assert tx is not None
            if tx.status != Status.PENDING_USER_TRANSFER_START:
                raise InvalidParams(f"Status[{tx.status.value}]")
            new = tx.clone()
            new.status = Status.PENDING_ANCHOR
            new.amount_in = params["amount_in"]["amount"]
            new.message = params["message"]
            new.stellar_transaction_id = params["stellar_transaction_id"]
            new.transfer_received_at = T0
            new.stellar_transactions.append(
                StellarTransaction(id=params["stellar_transaction_id"], created_at=T0, envelope="")
            )
            written = await transactions.update(session, new)
            await finish(session)
        self.applied.append(params)
        return written


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'observer.db'}"
    await upgrade(url)
    engine = create_engine(url)
    settings = Settings(database_url=url, observer_stall_s=60)
    yield Services(settings, ASSETS, session_factory(engine), FakeLedger())
    await engine.dispose()


def make_observer(services: Services, **kw: Any) -> PaymentObserver:
    return PaymentObserver(services, services.apply, **kw)


async def open_withdrawal(
    services: Services,
    tx_id: str,
    memo: str,
    *,
    to: str = DIST,
    expected: str | None = "10",
    status: Status = Status.PENDING_USER_TRANSFER_START,
) -> None:
    tx = Transaction(
        id=tx_id,
        kind=Kind.WITHDRAWAL,
        status=status,
        started_at=T0,
        amount_in="10",
        amount_in_asset=USDC,
        amount_expected=expected,
        requested_asset=USDC,
        amount_out_asset="iso4217:USD",
        to_account=to,
        withdraw_anchor_account=to,
        memo=memo,
        memo_type="id",
    )
    async with services.sessions() as session, session.begin():
        await transactions.insert(session, tx)


async def get_tx(services: Services, tx_id: str) -> Transaction:
    async with services.sessions() as session:
        tx = await transactions.get(session, tx_id)
    assert tx is not None
    return tx


async def unmatched(services: Services) -> dict[str, str]:
    async with services.sessions() as session:
        return {r.id: r.reason for r in await store.list_unmatched(session)}


async def test_matching_payment_moves_the_withdrawal_to_pending_anchor(
    services: Services,
) -> None:
    await open_withdrawal(services, "w1", "111")
    payment = services.ledger.pay(DIST, "10.0000000", "111")
    run = await make_observer(services).run_once()
    assert run.error is None and run.caught_up and run.credited == ["w1"]
    tx = await get_tx(services, "w1")
    assert tx.status == Status.PENDING_ANCHOR
    assert tx.message == BASE_MESSAGE
    assert [s.id for s in tx.stellar_transactions] == [payment.transaction_hash]
    assert services.applied[0]["amount_in"] == {"amount": "10.0000000"}
    async with services.sessions() as session:
        assert await store.get_cursor(session, DIST) == payment.paging_token
    # A second run finds nothing new and changes nothing.
    again = await make_observer(services).run_once()
    assert again.payments == 0 and len(services.applied) == 1


async def test_unknown_memo_changes_nothing_and_is_listed_once(services: Services) -> None:
    await open_withdrawal(services, "w1", "111")
    payment = services.ledger.pay(DIST, "10", "999")
    await make_observer(services).run_once()
    assert (await get_tx(services, "w1")).status == Status.PENDING_USER_TRANSFER_START
    assert await unmatched(services) == {payment.id: "no_match"}
    # A replay (cursor lost) records it once.
    async with services.sessions() as session, session.begin():
        assert not await store.record_unmatched(session, payment, DIST, "no_match", "x", T0)
    assert services.applied == []


async def test_wrong_asset_second_payment_no_memo_and_ambiguous(services: Services) -> None:
    await open_withdrawal(services, "w1", "111")
    await open_withdrawal(services, "w2", "222")
    await open_withdrawal(services, "w3", "333")
    await open_withdrawal(services, "w4", "333")  # a business reused a memo (generator none)
    wrong = services.ledger.pay(DIST, "10", "111", asset="stellar:native")
    good = services.ledger.pay(DIST, "10", "222")
    twice = services.ledger.pay(DIST, "10", "222")
    bare = services.ledger.pay(DIST, "10", None)
    both = services.ledger.pay(DIST, "10", "333")
    run = await make_observer(services).run_once()
    assert run.credited == ["w2"]
    assert await unmatched(services) == {
        wrong.id: "wrong_asset",
        twice.id: "not_awaiting_payment",
        bare.id: "no_memo",
        both.id: "ambiguous",
    }
    assert good.id not in await unmatched(services)
    for tx_id in ("w1", "w3", "w4"):
        assert (await get_tx(services, tx_id)).status == Status.PENDING_USER_TRANSFER_START


async def test_outgoing_failed_and_non_payment_operations_are_skipped(
    services: Services,
) -> None:
    await open_withdrawal(services, "w1", "111")
    services.ledger.pay(USER, "5", "111", source=DIST)  # our own payout
    services.ledger.pay(DIST, "10", "111", successful=False)
    services.ledger.pay(DIST, "10", "111", type_="create_account")
    run = await make_observer(services).run_once()
    assert run.payments == 3 and run.credited == [] and run.unmatched == []
    assert await unmatched(services) == {}


async def test_withdrawal_accounts_are_watched_too(services: Services) -> None:
    await open_withdrawal(services, "w1", "5", to=OTHER)
    await open_withdrawal(services, "w2", "6", to="GDONE", status=Status.COMPLETED)
    await open_withdrawal(services, "w3", "7", to="testDestinationAccount")  # generator none
    observer = make_observer(services)
    assert await observer.watched_accounts() == {DIST, OTHER, "testDestinationAccount"}
    services.ledger.pay(OTHER, "10", "5")
    run = await observer.run_once()
    assert run.credited == ["w1"] and run.caught_up


async def test_pages_and_resume_from_the_stored_cursor(services: Services) -> None:
    for i in range(5):
        await open_withdrawal(services, f"w{i}", str(100 + i))
        services.ledger.pay(DIST, "10", str(100 + i))
    run = await make_observer(services, page_limit=2).run_once()
    assert run.pages == 3 and len(run.credited) == 5
    await open_withdrawal(services, "w9", "109")
    services.ledger.pay(DIST, "10", "109")
    run = await make_observer(services, page_limit=2).run_once()  # "restarted"
    assert run.payments == 1 and run.credited == ["w9"]
    assert [p["transaction_id"] for p in services.applied] == [
        "w0",
        "w1",
        "w2",
        "w3",
        "w4",
        "w9",
    ]


async def test_crash_in_the_middle_of_a_page_processes_each_payment_once(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    payments = []
    for i in range(6):
        await open_withdrawal(services, f"w{i}", str(100 + i))
        payments.append(services.ledger.pay(DIST, "10", str(100 + i)))
        if i == 1:
            stray = services.ledger.pay(DIST, "1", "4242")  # unmatched, in the same page

    # 1. The process dies while deciding the 5th payment (w3): w0, w1, the stray payment
    #    and w2 are committed, with the cursor at w2.
    real_decide = IncomingPayments.decide
    calls = 0

    async def die_at_fifth(self: IncomingPayments, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("killed")
        return await real_decide(self, *args)

    monkeypatch.setattr(IncomingPayments, "decide", die_at_fifth)
    run = await make_observer(services).run_once()
    assert run.error == "RuntimeError: killed"
    assert run.credited == ["w0", "w1", "w2"] and run.unmatched == [stray.id]
    async with services.sessions() as session:
        assert await store.get_cursor(session, DIST) == payments[2].paging_token
    monkeypatch.setattr(IncomingPayments, "decide", real_decide)

    # 2. The restarted process dies inside w4's unit, after the state change was written and
    #    before commit: w3 is committed, w4's change is rolled back with its cursor.
    real_claim = store.claim_page
    claims = 0

    async def die_in_second_unit(*args: Any) -> bool:
        nonlocal claims
        claims += 1
        if claims == 2:
            raise RuntimeError("killed again")
        return await real_claim(*args)

    monkeypatch.setattr(store, "claim_page", die_in_second_unit)
    run = await make_observer(services).run_once()
    assert run.error == "RuntimeError: killed again" and run.credited == ["w3"]
    assert (await get_tx(services, "w4")).status == Status.PENDING_USER_TRANSFER_START
    async with services.sessions() as session:
        assert await store.get_cursor(session, DIST) == payments[3].paging_token
    monkeypatch.setattr(store, "claim_page", real_claim)

    # 3. The next run finishes the page: every payment took effect exactly once.
    run = await make_observer(services).run_once()
    assert run.error is None and run.credited == ["w4", "w5"]
    committed = [p["transaction_id"] for p in services.applied]
    assert committed == ["w0", "w1", "w2", "w3", "w4", "w5"]
    for i in range(6):
        tx = await get_tx(services, f"w{i}")
        assert tx.status == Status.PENDING_ANCHOR
        assert [s.id for s in tx.stellar_transactions] == [payments[i].transaction_hash]
    assert await unmatched(services) == {stray.id: "no_match"}
    again = await make_observer(services).run_once()
    assert again.payments == 0 and len(services.applied) == 6


async def test_transient_error_rolls_back_and_retries(services: Services) -> None:
    await open_withdrawal(services, "w1", "111")
    services.ledger.pay(DIST, "10", "111")
    services.fail_apply = InternalError("Failed to retrieve Stellar transaction by ID[x]")
    run = await make_observer(services).run_once()
    assert run.error is not None and "Failed to retrieve" in run.error
    assert await unmatched(services) == {}
    services.fail_apply = None
    run = await make_observer(services).run_once()
    assert run.credited == ["w1"]


async def test_refused_by_the_state_machine_is_recorded(services: Services) -> None:
    await open_withdrawal(services, "w1", "111")
    payment = services.ledger.pay(DIST, "10", "111")
    services.fail_apply = InvalidParams("amount_in.amount should be positive")
    run = await make_observer(services).run_once()
    assert run.error is None and run.unmatched == [payment.id]
    async with services.sessions() as session:
        (row,) = await store.list_unmatched(session)
    assert row.reason == "rejected" and row.transaction_id == "w1"
    assert "amount_in.amount should be positive" in row.detail


async def test_a_stale_cursor_loses_the_race(services: Services) -> None:
    async with services.sessions() as session, session.begin():
        assert await store.claim_page(session, DIST, None, "5", 5, T0)
    async with services.sessions() as session, session.begin():
        assert not await store.claim_page(session, DIST, None, "5", 5, T0)
        assert not await store.claim_page(session, DIST, "4", "6", 1, T0)
        assert await store.claim_page(session, DIST, "5", "6", 1, T0)
    async with services.sessions() as session:
        assert await store.get_cursor(session, DIST) == "6"


async def test_health_reports_and_detects_a_stall(services: Services) -> None:
    info = await observer_health(services)
    assert info["healthy"] and info["status"] == "starting"
    clock = [T0]
    observer = make_observer(services, clock=lambda: clock[0])
    await observer.run_once()
    info = await observer_health(services, now=T0 + timedelta(seconds=30))
    assert info["healthy"] and info["status"] == "ok"
    assert info["last_ledger"] == 100 and info["seconds_since_caught_up"] == 30
    # Late, but the network closed no ledger: idle, healthy.
    info = await observer_health(services, now=T0 + timedelta(seconds=120))
    assert info["healthy"] and info["status"] == "idle"
    # Late while the ledger moved on: stalled.
    services.ledger.sequence = 105
    info = await observer_health(services, now=T0 + timedelta(seconds=120))
    assert not info["healthy"] and info["status"] == "stalled" and info["latest_ledger"] == 105
    services.ledger.fail_latest = True
    info = await observer_health(services, now=T0 + timedelta(seconds=120))
    assert not info["healthy"]
    # The observer fails meanwhile: the error is reported.
    run = await observer.run_once()
    assert run.error is not None
    info = await observer_health(services, now=T0 + timedelta(seconds=120))
    assert info["last_error"] == "LedgerUnavailable: down"


def test_job_registration() -> None:
    added: dict[str, Any] = {}

    class Scheduler:
        def add_job(self, func: Any, trigger: str, **kw: Any) -> None:
            added.update(kw, func=func, trigger=trigger)

    settings = Settings(observer_interval_s=3)
    fake = Services(settings, ASSETS, None, FakeLedger())  # type: ignore[arg-type]
    observer = observer_mod.add_observer_job(Scheduler(), fake)
    assert added["trigger"] == "interval" and added["seconds"] == 3
    assert added["max_instances"] == 1 and added["id"] == observer_mod.JOB_ID
    assert observer is not None  # one worker at a time: tests/test_job_leases.py
    assert added["func"].__qualname__ == "one_worker_at_a_time.<locals>.run"


async def test_unmatched_endpoint_lists_newest_first(services: Services) -> None:
    import httpx
    from starlette.applications import Starlette

    from anchorpay.api import observer as api

    first = services.ledger.pay(DIST, "1", "999")
    second = services.ledger.pay(DIST, "2", None)
    await make_observer(services).run_once()
    app = Starlette(routes=api.routes())
    app.state.services = services
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        body = (await client.get("/observer/unmatched")).json()["unmatched_payments"]
        assert {p["id"]: p["reason"] for p in body} == {first.id: "no_match", second.id: "no_memo"}
        assert body[0]["stellar_transaction_id"] in (
            first.transaction_hash,
            second.transaction_hash,
        )
        one = (await client.get("/observer/unmatched", params={"limit": 1})).json()
        assert len(one["unmatched_payments"]) == 1
        none = await client.get("/observer/unmatched", params={"account": OTHER})
        assert none.json() == {"unmatched_payments": []}
        assert (await client.get("/observer/unmatched", params={"limit": 0})).status_code == 400
