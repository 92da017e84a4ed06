"""Trustlines end to end: the app with its sandbox network and worker over a real socket.

A deposit paid to an account without the trustline waits in `pending_trust`; adding the
trustline on the sandbox completes it within one poll interval; a second deposit whose window
passes ends in `pending_anchor` with the timeout message and nothing on the ledger. And the
poller's cost, counted at the sandbox: 500 waiting payouts over 20 accounts, 20 reads."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.scheduler.trustlines import TrustlinePoller
from anchorpay.store import transactions as repo
from anchorpay.store.tables import PayoutRow
from support.payout_fixtures import USDC, app_settings, funded_deposit, running_app, served
from support.sandbox_fixtures import free_port

TIMEOUT_MESSAGE = "No USDC trustline within the window"


async def test_waits_for_trust_then_completes_or_times_out(tmp_path: Path) -> None:
    async with running_app(
        tmp_path,
        trustline_check_interval_s=0.2,
        trustline_check_timeout_s=3.0,
        trustline_timeout_message=TIMEOUT_MESSAGE,
    ) as env:
        patient = await env.account(trust=())
        never = await env.account(trust=())
        first = await funded_deposit(env, patient.public_key, amount_out="7")
        second = await funded_deposit(env, never.public_key, amount_out="8")
        for tx_id in (first, second):
            answer = await env.ok("do_stellar_payment", {"transaction_id": tx_id})
            assert answer["status"] == "pending_trust"
            assert [p["state"] for p in await env.payouts(tx_id)] == ["waiting_trust"]

        added = await env.ledger.post(
            f"/accounts/{patient.public_key}/trustlines", json={"asset": USDC}
        )
        assert added.status_code == 201, added.text
        assert await env.until_status(first, "completed", timeout_s=10) == "completed"
        (payout,) = await env.payouts(first)
        (payment,) = await env.payments_to(patient.public_key)
        assert (payout["state"], payment["transaction_hash"]) == ("confirmed", payout["tx_hash"])
        assert payment["amount"] == "7.0000000"

        assert await env.until_status(second, "pending_anchor", timeout_s=10) == "pending_anchor"
        tx = await env.tx(second)
        assert tx["message"] == TIMEOUT_MESSAGE
        assert [p["state"] for p in await env.payouts(second)] == ["cancelled"]
        await env.close_ledger()
        assert await env.payments_to(never.public_key) == []


async def test_500_waiting_payouts_over_20_accounts_cost_20_reads(tmp_path: Path) -> None:
    from anchorpay.app import create_app

    port = free_port()
    app = create_app(app_settings(tmp_path, platform_server_port=port), run_worker=False)
    async with served(app, port) as base, httpx.AsyncClient(base_url=base) as client:
        services = app.state.services
        accounts = []
        for _ in range(20):
            created = await client.post("/sandbox/accounts", json={"xlm": "10", "trust": []})
            accounts.append(created.json()["account_id"])
        now = datetime.now(UTC)
        async with services.sessions() as session, session.begin():
            for i in range(500):
                tx_id = str(uuid.uuid4())
                await repo.insert(
                    session,
                    Transaction(
                        id=tx_id,
                        kind=Kind.DEPOSIT,
                        status=Status.PENDING_TRUST,
                        started_at=now,
                        requested_asset=USDC,
                        amount_out="1",
                        amount_out_asset=USDC,
                        to_account=accounts[i % 20],
                        transfer_received_at=now,
                    ),
                )
                session.add(
                    PayoutRow(
                        id=str(uuid.uuid4()),
                        transaction_id=tx_id,
                        purpose="payment",
                        state="waiting_trust",
                        destination=accounts[i % 20],
                        asset=USDC,
                        amount="1",
                        adapter="stellar",
                        waiting_since=now,
                        created_at=now,
                        updated_at=now,
                    )
                )

        def reads() -> dict[str, int]:
            counters: dict[str, int] = app.state.sandbox.counters["GET /accounts/{id}"]
            return {a: counters.get(a, 0) for a in accounts}

        before = reads()
        report = await TrustlinePoller(services).run_cycle()
        after = reads()
        assert {a: after[a] - before[a] for a in accounts} == {a: 1 for a in accounts}
        assert (report.accounts_read, report.trusted) == (20, 0)

        # One account's reads fail with 500: only its 25 payouts are held back.
        await client.post("/sandbox/accounts/" + accounts[0] + "/trustlines", json={"asset": USDC})
        await client.post("/sandbox/accounts/" + accounts[1] + "/trustlines", json={"asset": USDC})
        fault = {"kind": "account_error", "account": accounts[1], "status": 500}
        assert (await client.post("/sandbox/faults", json=fault)).status_code == 204
        poller = TrustlinePoller(services, backoff_initial_s=0.01, backoff_max_s=0.02)
        report = await asyncio.wait_for(poller.run_cycle(), 60)
        assert (report.accounts_read, report.accounts_failed, report.trusted) == (19, 1, 25)
        async with services.sessions() as session:
            stuck = await repo.list_page(session, statuses=["pending_trust"], page_size=500)
        assert len(stuck) == 475
        assert {t.to_account for t in stuck} == set(accounts[1:])
