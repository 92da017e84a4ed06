"""The trustline poller over the real store and state machine: one read per distinct account,
resumption, the timeout window (stored, so it survives a restart), a failing account that
delays only its own payouts, and a payout whose transaction the business moved."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from stellar_sdk import Keypair
from test_rpc_concurrency import USD, call, create_tx

from anchorpay.adapters.ledger import Account, LedgerUnavailable
from anchorpay.scheduler.trustlines import TrustlinePoller
from anchorpay.store import payouts as payout_store
from support.app import USDC, AppClient, ClientFactory, FakeLedger, SettingsFactory


class CountingLedger(FakeLedger):
    """Counts account reads; an account in `broken` answers like a Horizon 500."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()
        self.broken: set[str] = set()
        self.hanging: set[str] = set()

    async def get_account(self, account_id: str) -> Account:
        self.reads[account_id] += 1
        if account_id in self.hanging:
            await asyncio.sleep(3600)
        if account_id in self.broken:
            raise LedgerUnavailable("Horizon answered 500", status=500)
        return await super().get_account(account_id)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def waiting_deposit(client: AppClient, account: str) -> str:
    """A deposit paid out with do_stellar_payment to an account without a USDC trustline."""
    tx_id: str = (await create_tx(client, destination_account=account))["id"]
    for step in (
        call(
            "request_offchain_funds",
            {
                "transaction_id": tx_id,
                "amount_in": {"amount": "10", "asset": USD},
                "amount_out": {"amount": "9", "asset": USDC},
                "fee_details": {"total": "1", "asset": USD},
            },
        ),
        call("notify_offchain_funds_received", {"transaction_id": tx_id}),
        call("do_stellar_payment", {"transaction_id": tx_id}),
    ):
        answer = (await client.rpc(step)).json()
        assert "result" in answer, answer
    assert answer["result"]["status"] == "pending_trust"
    return tx_id


async def status_of(client: AppClient, tx_id: str) -> str:
    status: str = (await client.get(f"/transactions/{tx_id}")).json()["status"]
    return status


async def payout_states(client: AppClient, tx_id: str) -> list[str]:
    body: Any = (await client.get("/payouts", params={"transaction_id": tx_id})).json()
    records = body["payouts"]
    return [p["state"] for p in records]


def stellar_settings(settings_factory: SettingsFactory, **kw: Any) -> Any:
    return settings_factory(custody_type="stellar", trustline_check_timeout_s=3600, **kw)


async def test_one_read_per_account_and_resume(
    settings_factory: SettingsFactory, client_factory: ClientFactory
) -> None:
    ledger = CountingLedger()
    accounts = [Keypair.random().public_key for _ in range(4)]
    for account in accounts:
        ledger.add_account(account)  # no USDC trustline yet
    async with client_factory(stellar_settings(settings_factory), ledger=ledger) as client:
        txs = [await waiting_deposit(client, accounts[i % 4]) for i in range(20)]
        ledger.reads.clear()
        poller = TrustlinePoller(client.services)

        report = await poller.run_cycle()
        assert ledger.reads == Counter({a: 1 for a in accounts})  # 20 payouts, 4 reads
        assert (report.accounts_read, report.trusted, report.timed_out) == (4, 0, 0)
        assert {await status_of(client, t) for t in txs} == {"pending_trust"}

        ledger.add_account(accounts[0], USDC)  # one account trusts USDC now
        report = await poller.run_cycle()
        resumed = [t for i, t in enumerate(txs) if i % 4 == 0]
        assert report.trusted == len(resumed) == 5
        for tx_id in txs:
            expected = "pending_stellar" if tx_id in resumed else "pending_trust"
            assert await status_of(client, tx_id) == expected
            states = await payout_states(client, tx_id)
            assert states == (["queued"] if tx_id in resumed else ["waiting_trust"])


async def test_window_passes_from_stored_start_across_restart(
    settings_factory: SettingsFactory, client_factory: ClientFactory
) -> None:
    ledger = CountingLedger()
    account = Keypair.random().public_key
    ledger.add_account(account)
    settings = stellar_settings(
        settings_factory, trustline_timeout_message="No trustline after the window"
    )
    async with client_factory(settings, ledger=ledger) as client:
        tx_id = await waiting_deposit(client, account)
    clock = Clock()
    # A new process (a restarted worker) measures from the stored `waiting_since`.
    async with client_factory(settings, ledger=ledger) as client:
        clock.now = datetime.now(UTC) + timedelta(seconds=3599)
        await TrustlinePoller(client.services, clock=clock).run_cycle()
        assert await status_of(client, tx_id) == "pending_trust"

        clock.now += timedelta(seconds=2)
        report = await TrustlinePoller(client.services, clock=clock).run_cycle()
        assert report.timed_out == 1
        tx = (await client.get(f"/transactions/{tx_id}")).json()
        assert (tx["status"], tx["message"]) == ("pending_anchor", "No trustline after the window")
        assert await payout_states(client, tx_id) == ["cancelled"]


async def test_failing_account_delays_only_its_own(
    settings_factory: SettingsFactory, client_factory: ClientFactory
) -> None:
    ledger = CountingLedger()
    good, bad = Keypair.random().public_key, Keypair.random().public_key
    ledger.add_account(good, USDC)
    ledger.add_account(bad, USDC)
    async with client_factory(stellar_settings(settings_factory), ledger=ledger) as client:
        ledger.add_account(good)  # both lack trust when the payouts are recorded
        ledger.add_account(bad)
        tx_good = await waiting_deposit(client, good)
        tx_bad = await waiting_deposit(client, bad)
        ledger.add_account(good, USDC)
        ledger.add_account(bad, USDC)
        ledger.broken.add(bad)
        ledger.reads.clear()
        poller = TrustlinePoller(client.services, backoff_initial_s=0.01, backoff_max_s=0.02)
        report = await poller.run_cycle()
        assert (report.accounts_read, report.accounts_failed) == (1, 1)
        assert ledger.reads[bad] == 3  # backed off and retried, then left for the next cycle
        assert await status_of(client, tx_good) == "pending_stellar"
        assert await status_of(client, tx_bad) == "pending_trust"

        ledger.broken.clear()
        await poller.run_cycle()
        assert await status_of(client, tx_bad) == "pending_stellar"


async def test_transaction_moved_by_business_closes_payout(
    settings_factory: SettingsFactory, client_factory: ClientFactory
) -> None:
    ledger = CountingLedger()
    account = Keypair.random().public_key
    ledger.add_account(account)
    async with client_factory(stellar_settings(settings_factory), ledger=ledger) as client:
        tx_id = await waiting_deposit(client, account)
        # The business settles trust itself with success=false: the payout is closed by
        # the state machine and the poller has nothing left to do for it.
        answer = (
            await client.rpc(call("notify_trust_set", {"transaction_id": tx_id, "success": False}))
        ).json()
        assert answer["result"]["status"] == "pending_anchor"
        assert await payout_states(client, tx_id) == ["cancelled"]
        ledger.add_account(account, USDC)
        ledger.reads.clear()
        report = await TrustlinePoller(client.services).run_cycle()
        assert (report.trusted, ledger.reads[account]) == (0, 0)
        assert await status_of(client, tx_id) == "pending_anchor"
        async with client.services.sessions() as session:
            open_rows = await payout_store.list_payouts(
                session, transaction_id=tx_id, states=payout_store.OPEN_STATES
            )
        assert open_rows == []


async def test_trustline_lost_is_internal_and_hands_back_to_the_poller(
    settings_factory: SettingsFactory, client_factory: ClientFactory
) -> None:
    from anchorpay.workflow import run_method

    ledger = CountingLedger()
    account = Keypair.random().public_key
    ledger.add_account(account)
    async with client_factory(stellar_settings(settings_factory), ledger=ledger) as client:
        tx_id = await waiting_deposit(client, account)
        ledger.add_account(account, USDC)
        await TrustlinePoller(client.services).run_cycle()
        assert await status_of(client, tx_id) == "pending_stellar"

        # Not an RPC method: the business cannot call it.
        answer = (await client.rpc(call("trustline_lost", {"transaction_id": tx_id}))).json()
        assert answer["error"] == {
            "id": tx_id,
            "code": -32601,
            "message": "No matching RPC method[trustline_lost]",
        }
        # The worker can: the deposit waits for the trustline again, message kept.
        params = {"transaction_id": tx_id, "message": "trustline gone"}
        tx = await run_method(client.services, "trustline_lost", params)
        assert (tx.status, tx.message) == ("pending_trust", "trustline gone")


async def test_a_hanging_read_times_out_is_retried_and_holds_back_only_its_account(
    settings_factory: SettingsFactory, client_factory: ClientFactory
) -> None:
    ledger = CountingLedger()
    good, slow = Keypair.random().public_key, Keypair.random().public_key
    ledger.add_account(good)
    ledger.add_account(slow)
    settings = stellar_settings(settings_factory, horizon_timeout_s=0.05)
    async with client_factory(settings, ledger=ledger) as client:
        tx_good = await waiting_deposit(client, good)
        tx_slow = await waiting_deposit(client, slow)
        ledger.add_account(good, USDC)
        ledger.add_account(slow, USDC)
        ledger.hanging.add(slow)
        ledger.reads.clear()
        poller = TrustlinePoller(client.services, backoff_initial_s=0.01, backoff_max_s=0.02)
        report = await poller.run_cycle()
        assert (report.accounts_read, report.accounts_failed) == (1, 1)
        assert ledger.reads[slow] == 3  # each timeout is retried like a 503
        assert await status_of(client, tx_good) == "pending_stellar"
        assert await status_of(client, tx_slow) == "pending_trust"
