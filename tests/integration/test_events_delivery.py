"""Business events end to end over HTTP: the app with its sandbox network, SQLite and the
worker; a real receiver (tests/support/event_receiver.py) on its own socket verifying every
callback's signature. A deposit driven through the RPC and completed by the worker reaches
the receiver as every change, in order; through a receiver that is down for a while, that
answers 500, and that answers 410 (failed, visible, redelivered on request)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from support.event_receiver import SECRET, Receiver, receiving
from support.payout_fixtures import (
    USDC,
    XLM,
    Env,
    create_withdrawal,
    funded_deposit,
    onchain_funds_params,
    running_app,
)
from support.sandbox_fixtures import free_port

# Statuses a funded deposit paid by the worker goes through, one event each.
DEPOSIT_STATUSES = [
    "incomplete",
    "pending_user_transfer_start",
    "pending_anchor",
    "pending_stellar",
    "completed",
]
DEPOSIT_TYPES = ["transaction_created"] + ["transaction_status_changed"] * 4


def callback_settings(port: int) -> dict[str, Any]:
    return {
        "business_callback_url": f"http://127.0.0.1:{port}/",
        "business_callback_secret": SECRET,
        "events_poll_s": 0.05,
        "events_retry_base_s": 0.05,
        "events_retry_max_s": 0.2,
        "events_delivery_timeout_s": 2.0,
    }


async def completed_deposit(env: Env) -> str:
    user = await env.account()
    tx_id = await funded_deposit(env, user.public_key)
    await env.ok("do_stellar_payment", {"transaction_id": tx_id})
    assert await env.until_status(tx_id, "completed") == "completed"
    return tx_id


async def feed_of(env: Env, tx_id: str) -> list[dict[str, Any]]:
    """Every event of `tx_id` from the pull feed, in feed order."""
    answer = await env.client.get("/events", params={"limit": 500})
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["events"]
    return [e for e in events if e["transaction_id"] == tx_id]


async def until_delivery(
    env: Env, event_id: str, state: str, timeout_s: float = 20.0
) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            event: dict[str, Any] = (await env.client.get(f"/events/{event_id}")).json()
            if event["delivery"]["state"] == state:
                return event
            await asyncio.sleep(0.03)


async def test_every_change_reaches_the_receiver_in_order_signed(tmp_path: Path) -> None:
    port = free_port()
    receiver = Receiver()
    async with receiving(receiver, port), running_app(tmp_path, **callback_settings(port)) as env:
        tx_id = await completed_deposit(env)
        arrived = await receiver.until_accepted(tx_id, len(DEPOSIT_STATUSES))
        feed = await feed_of(env, tx_id)
        for event in feed:
            await until_delivery(env, event["id"], "delivered")
        final = await env.tx(tx_id)

    assert await outbox_matches_versions(tmp_path) == {tx_id: 5}
    assert receiver.invalid == 0
    assert [e["transaction"]["status"] for e in arrived] == DEPOSIT_STATUSES
    assert [e["type"] for e in arrived] == DEPOSIT_TYPES
    assert [e["id"] for e in arrived] == [e["id"] for e in feed]
    assert [e["sequence"] for e in feed] == [1, 2, 3, 4, 5]
    assert all(set(e) == {"id", "type", "sep", "transaction"} for e in arrived)
    assert {e["sep"] for e in arrived} == {"24"}
    # The last event carries the transaction exactly as get_transaction answers it.
    assert arrived[-1]["transaction"] == final
    assert final["stellar_transactions"][0]["id"]
    # No event of this transaction was accepted out of order, even counting repeats.
    order = {e["id"]: i for i, e in enumerate(arrived)}
    repeats = [order[p["id"]] for p in receiver.accepted if p["transaction"]["id"] == tx_id]
    assert repeats == sorted(repeats)


async def test_receiver_down_then_back_gets_everything_in_order(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    receiver = Receiver()
    async with running_app(tmp_path, **callback_settings(port)) as env:
        tx_id = await completed_deposit(env)
        feed = await feed_of(env, tx_id)
        assert [e["transaction"]["status"] for e in feed] == DEPOSIT_STATUSES
        first = await env.client.get(f"/events/{feed[0]['id']}")
        async with asyncio.timeout(10):
            while first.json()["delivery"]["attempts"] < 2:
                await asyncio.sleep(0.03)
                first = await env.client.get(f"/events/{feed[0]['id']}")
        delivery = first.json()["delivery"]
        assert delivery["state"] == "pending"
        assert delivery["last_error"] == "connection failed: ConnectError"
        # A later event waits for the earlier undelivered one: it was never tried.
        later = (await env.client.get(f"/events/{feed[1]['id']}")).json()["delivery"]
        assert later == {"state": "pending", "attempts": 0}

        async with receiving(receiver, port):
            arrived = await receiver.until_accepted(tx_id, len(DEPOSIT_STATUSES))

    assert receiver.invalid == 0
    assert [e["transaction"]["status"] for e in arrived] == DEPOSIT_STATUSES
    assert [e["id"] for e in arrived] == [e["id"] for e in feed]


async def test_500_answers_are_retried(tmp_path: Path) -> None:
    def first_try_fails(payload: dict[str, Any], attempt: int) -> tuple[int, dict[str, str]]:
        if attempt > 1:
            return 200, {}
        if payload["type"] == "transaction_created":  # come back in 1 s, not in 0.05 s
            return 503, {"retry-after": "1"}
        return 500, {}

    port = free_port()
    receiver = Receiver(script=first_try_fails)
    async with receiving(receiver, port), running_app(tmp_path, **callback_settings(port)) as env:
        tx_id = await completed_deposit(env)
        arrived = await receiver.until_accepted(tx_id, len(DEPOSIT_STATUSES))
        feed = await feed_of(env, tx_id)
        deliveries = [(await until_delivery(env, e["id"], "delivered"))["delivery"] for e in feed]

    assert [e["transaction"]["status"] for e in arrived] == DEPOSIT_STATUSES
    # Each event: one 5xx, then one 200; both attempts counted, nothing left over.
    for event in feed:
        statuses = [a.status for a in receiver.attempts if a.event_id == event["id"]]
        assert statuses == ([503, 200] if event["sequence"] == 1 else [500, 200])
    created = [a.at for a in receiver.attempts if a.event_id == feed[0]["id"]]
    assert created[1] - created[0] >= 0.95  # Retry-After honoured over the 0.2 s backoff
    assert [(d["attempts"], "last_error" in d) for d in deliveries] == [(2, False)] * 5


async def test_410_fails_the_event_visibly_and_redeliver_sends_it(tmp_path: Path) -> None:
    gone = {"on": True}

    def refuses_pending_anchor(payload: dict[str, Any], attempt: int) -> tuple[int, dict[str, str]]:
        if gone["on"] and payload["transaction"]["status"] == "pending_anchor":
            return 410, {}
        return 204, {}

    port = free_port()
    receiver = Receiver(script=refuses_pending_anchor)
    async with receiving(receiver, port), running_app(tmp_path, **callback_settings(port)) as env:
        tx_id = await completed_deposit(env)
        feed = await feed_of(env, tx_id)
        refused = feed[2]
        assert refused["transaction"]["status"] == "pending_anchor"
        failed = await until_delivery(env, refused["id"], "failed")
        # A failed event holds no later one back: they all arrive, in order.
        arrived = await receiver.until_accepted(tx_id, len(DEPOSIT_STATUSES) - 1)
        assert [e["transaction"]["status"] for e in arrived] == [
            s for s in DEPOSIT_STATUSES if s != "pending_anchor"
        ]
        statuses = [a.status for a in receiver.attempts if a.event_id == refused["id"]]
        assert statuses == [410]  # failed at once, never retried
        listed = (await env.client.get("/events", params={"state": "failed"})).json()
        assert [e["id"] for e in listed["events"]] == [refused["id"]]
        scraped = (await env.client.get("/metrics")).text  # the worker's process is this one
        assert 'anchorpay_event_deliveries_total{outcome="failed"} 1.0' in scraped
        delivered_line = f'anchorpay_event_deliveries_total{{outcome="delivered"}} {len(arrived)}.0'
        assert delivered_line in scraped
        assert 'anchorpay_events{state="failed"} 1.0' in scraped

        assert (await env.client.post("/events/nope/redeliver")).status_code == 404
        gone["on"] = False
        again = await env.client.post(f"/events/{refused['id']}/redeliver")
        assert again.status_code == 202, again.text
        assert again.json()["delivery"] == {"state": "pending", "attempts": 0}
        delivered = await until_delivery(env, refused["id"], "delivered")
        twice = await env.client.post(f"/events/{refused['id']}/redeliver")
        assert twice.status_code == 202
        await until_delivery(env, refused["id"], "delivered")

    assert failed["delivery"] == {
        "state": "failed",
        "attempts": 1,
        "last_error": "HTTP 410: refused by the business server",
    }
    assert delivered["delivery"]["attempts"] == 1
    resent = [p for p in receiver.accepted if p["id"] == refused["id"]]
    assert len(resent) == 2 and resent[0] == resent[1]
    assert resent[0]["transaction"]["status"] == "pending_anchor"


async def test_a_failed_payout_reaches_the_receiver_as_transaction_error(tmp_path: Path) -> None:
    from stellar_sdk import Keypair

    port = free_port()
    receiver = Receiver()
    async with receiving(receiver, port), running_app(tmp_path, **callback_settings(port)) as env:
        nobody = Keypair.random().public_key  # not on the ledger: the payment fails for good
        tx_id = await funded_deposit(env, nobody, asset=XLM, amount_out="5")
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert await env.until_status(tx_id, "error") == "error"
        arrived = await receiver.until_accepted(tx_id, 5)
        final = await env.tx(tx_id)

    assert [(e["type"], e["transaction"]["status"]) for e in arrived] == [
        ("transaction_created", "incomplete"),
        ("transaction_status_changed", "pending_user_transfer_start"),
        ("transaction_status_changed", "pending_anchor"),
        ("transaction_status_changed", "pending_stellar"),
        ("transaction_error", "error"),
    ]
    assert arrived[-1]["transaction"] == final
    assert final["message"] == (
        f"The destination account {nobody} does not exist on the ledger (op_no_destination)"
    )


async def outbox_matches_versions(tmp_path: Path) -> dict[str, int]:
    """Every transaction has exactly one event per committed write: created + one per version
    bump (the repository's only writes), numbered 1..n. Returns events per transaction."""
    from sqlalchemy import text

    from anchorpay.store.db import create_engine

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'anchorpay.db'}")
    try:
        async with engine.connect() as conn:
            versions = dict(
                (await conn.execute(text("SELECT id, version FROM sep24_transactions"))).all()
            )
            seqs: dict[str, list[int]] = {}
            for tx_id, seq in await conn.execute(
                text("SELECT transaction_id, seq FROM events ORDER BY transaction_id, seq")
            ):
                seqs.setdefault(tx_id, []).append(seq)
    finally:
        await engine.dispose()
    assert set(seqs) == set(versions)
    for tx_id, version in versions.items():
        assert seqs[tx_id] == list(range(1, version + 2)), (tx_id, version, seqs[tx_id])
    return {tx_id: len(s) for tx_id, s in seqs.items()}


async def test_observer_credit_and_worker_refund_reach_the_receiver(tmp_path: Path) -> None:
    """The paths no business call makes: the payment observer crediting a withdrawal, the
    worker recording its refund (a `refunds` change) and its status."""
    port = free_port()
    receiver = Receiver()
    settings = {**callback_settings(port), "observer_interval_s": 0.1}
    async with receiving(receiver, port), running_app(tmp_path, **settings) as env:
        user = await env.account(trust=(USDC,))
        funding = await funded_deposit(env, user.public_key, amount_out="10")
        await env.ok("do_stellar_payment", {"transaction_id": funding})
        assert await env.until_status(funding, "completed") == "completed"

        tx_id: str = (await create_withdrawal(env.client, user.public_key))["id"]
        asked = await env.ok("request_onchain_funds", onchain_funds_params(tx_id))
        assert asked["memo_type"] == "id"
        await env.pay(user, asked["destination_account"], "10", memo_id=int(asked["memo"]))
        assert await env.until_status(tx_id, "pending_anchor") == "pending_anchor"
        refund = {
            "amount": {"amount": "9", "asset": USDC},
            "amount_fee": {"amount": "1", "asset": USDC},
        }
        await env.ok("do_stellar_refund", {"transaction_id": tx_id, "refund": refund})
        assert await env.until_status(tx_id, "refunded") == "refunded"
        arrived = await receiver.until_accepted(tx_id, 5)
        final = await env.tx(tx_id)
    counts = await outbox_matches_versions(tmp_path)

    assert [e["transaction"]["status"] for e in arrived] == [
        "incomplete",
        "pending_user_transfer_start",
        "pending_anchor",  # the observer credited the payment
        "pending_stellar",
        "refunded",  # the worker confirmed the refund
    ]
    assert "refunds" not in arrived[3]["transaction"]
    assert arrived[-1]["transaction"]["refunds"] == final["refunds"]
    assert arrived[-1]["transaction"] == final
    assert counts == {funding: 5, tx_id: 5}
