"""Exactly once for batched payouts (several payouts, one envelope), on SQLite and on
PostgreSQL: Horizon answering 504 after applying, a submission lost before the ledger, a
worker SIGKILLed right after storing the envelope and right after submitting it, two workers
at once, and an envelope failed by one of its operations. Real processes: `anchorpay sandbox`
is the network, the RPC server runs here without a worker, and `anchorpay worker` processes
are started once the intents are recorded (so they find a backlog to batch).

Each test counts, on the ledger, one payment per payout (its own hash, destination and
amount), and checks the transactions' final status and their own `stellar_transactions`."""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from support.app import POSTGRES_ENV, _pg_admin
from support.payout_fixtures import XLM, Env, funded_deposit, running_app
from support.process_fixtures import Workers, sandbox_server, until_dead

DATABASES = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=pytest.mark.skipif(
            not os.environ.get(POSTGRES_ENV), reason=f"needs PostgreSQL: set {POSTGRES_ENV}"
        ),
    ),
]


@pytest.fixture(scope="module")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with sandbox_server(tmp_path_factory.mktemp("sandbox"), "/sandbox/distribution") as base:
        yield base


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database the server and the workers share: a SQLite file, or a fresh PostgreSQL
    database migrated here (the server migrates SQLite itself)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'anchorpay.db'}"
        return
    from anchorpay.store.migrate import upgrade_sync

    admin = make_url(os.environ[POSTGRES_ENV])
    url = admin.set(database=f"batch_{uuid.uuid4().hex[:16]}")
    _pg_admin(admin, f'CREATE DATABASE "{url.database}"')
    try:
        text = url.render_as_string(hide_password=False)
        upgrade_sync(text)
        yield text
    finally:
        _pg_admin(admin, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


@pytest.fixture
async def stack(
    tmp_path: Path, sandbox_process: str, database_url: str
) -> AsyncIterator[tuple[Env, Workers]]:
    workers = Workers(tmp_path, sandbox_process, DATABASE_URL=database_url)
    async with running_app(
        tmp_path, run_worker=False, sandbox_url=sandbox_process, database_url=database_url
    ) as env:
        try:
            yield env, workers
        finally:
            workers.stop()


async def backlog(env: Env, n: int, asset: str = "") -> tuple[list[str], list[str]]:
    """`n` deposits to `n` new accounts with their do_stellar_payment recorded (no worker
    runs yet). Returns (transaction ids, destinations)."""
    tx_ids, users = [], []
    for i in range(n):
        user = await env.account()
        kwargs: dict[str, Any] = {"asset": asset} if asset else {}
        tx_id = await funded_deposit(env, user.public_key, amount_out=f"2.{i + 1:02d}", **kwargs)
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        tx_ids.append(tx_id)
        users.append(user.public_key)
    return tx_ids, users


async def paid_once_each(env: Env, tx_ids: list[str]) -> list[dict[str, Any]]:
    """Each transaction completed, its one payout confirmed, and the ledger holding exactly
    one payment to its destination: the payout's own (hash, amount). Returns the payouts."""
    payouts = []
    for tx_id in tx_ids:
        tx = await env.tx(tx_id)
        assert tx["status"] == "completed", tx
        (payout,) = await env.payouts(tx_id)
        assert payout["state"] == "confirmed", payout
        received = await env.payments_to(tx["destination_account"])
        assert [(p["transaction_hash"], Decimal(p["amount"])) for p in received] == [
            (payout["tx_hash"], Decimal(payout["amount"]))
        ]
        (entry,) = tx["stellar_transactions"]
        assert entry["id"] == payout["tx_hash"]
        # Its own payment operation, not the batch's others.
        assert [p["destination_account"] for p in entry["payments"]] == [tx["destination_account"]]
        payouts.append(payout)
    return payouts


def one_envelope(payouts: list[dict[str, Any]]) -> str:
    """The payouts went out in one envelope, one operation each."""
    hashes = {p["tx_hash"] for p in payouts}
    assert len(hashes) == 1, hashes
    assert sorted(p["op_index"] for p in payouts) == list(range(len(payouts)))
    return hashes.pop()


async def all_completed(env: Env, tx_ids: list[str]) -> bool:
    return all([(await env.tx(t))["status"] == "completed" for t in tx_ids])


@pytest.mark.parametrize("fault", ["gateway_timeout_after_apply", "drop_next_submission"])
async def test_a_lost_answer_or_submission_pays_the_batch_once(
    stack: tuple[Env, Workers], fault: str
) -> None:
    env, workers = stack
    tx_ids, _ = await backlog(env, 5)
    await env.fault(kind=fault, count=1)
    workers.start()
    await env.drive(lambda: all_completed(env, tx_ids), timeout_s=40)
    payouts = await paid_once_each(env, tx_ids)
    shared = one_envelope(payouts)
    # The envelope, then one ambiguous answer: looked up (504) or resent (dropped).
    assert {p["attempts"] for p in payouts} == {2}
    # The shared hash is each batched transaction's own; no other deposit may claim it.
    other = await funded_deposit(env, (await env.account()).public_key)
    params = {"transaction_id": other, "stellar_transaction_id": shared}
    error = (await env.rpc("notify_onchain_funds_sent", params))["error"]
    assert error["code"] == -32602
    assert error["message"].startswith(f"Stellar transaction[{shared}] is already recorded on ")
    assert error["message"].endswith(" as a payment; one on-chain transaction has one purpose")
    assert (await env.tx(other))["status"] == "pending_anchor"


@pytest.mark.parametrize("crash_at", ["after_prepare", "after_submit"])
async def test_worker_killed_mid_batch_restarts_and_pays_once(
    stack: tuple[Env, Workers], crash_at: str
) -> None:
    env, workers = stack
    tx_ids, users = await backlog(env, 6)
    first = workers.start(crash_at=crash_at)
    assert await until_dead(env, first, timeout_s=30) == -signal.SIGKILL, workers.logs()

    stored = [p for t in tx_ids for p in await env.payouts(t)]
    assert {p["state"] for p in stored} == {"submitting"}  # every row holds the envelope
    stored_hash = one_envelope(stored)
    on_ledger = [p["transaction_hash"] for u in users for p in await env.payments_to(u)]
    assert on_ledger == ([] if crash_at == "after_prepare" else [stored_hash] * len(users))

    workers.start()  # takes over once the dead one's leases expire
    await env.drive(lambda: all_completed(env, tx_ids), timeout_s=40)
    payouts = await paid_once_each(env, tx_ids)
    assert one_envelope(payouts) == stored_hash  # the same envelope, not a second payment


async def test_two_workers_at_once_pay_a_backlog_once(stack: tuple[Env, Workers]) -> None:
    env, workers = stack
    tx_ids, _ = await backlog(env, 12)
    workers.start()
    workers.start()
    await env.drive(lambda: all_completed(env, tx_ids), timeout_s=60)
    payouts = await paid_once_each(env, tx_ids)
    logs = workers.logs()
    assert "Traceback" not in logs, logs
    assert logs.count("to=confirmed") == len(tx_ids), logs
    # Batches they were: fewer envelopes than payouts, each operation index used once.
    envelopes = Counter(p["tx_hash"] for p in payouts)
    assert len(envelopes) < len(payouts), envelopes
    ops = Counter((p["tx_hash"], p["op_index"]) for p in payouts)
    assert set(ops.values()) == {1}


async def test_one_failing_operation_fails_its_payout_and_the_rest_are_rebuilt(
    stack: tuple[Env, Workers],
) -> None:
    env, workers = stack
    tx_ids, _ = await backlog(env, 3, asset=XLM)
    # An XLM deposit to an account that does not exist: op_no_destination in the envelope.
    ghost = await funded_deposit(env, _unfunded_account(), asset=XLM, amount_out="1.5")
    await env.ok("do_stellar_payment", {"transaction_id": ghost})
    more, _ = await backlog(env, 2, asset=XLM)
    workers.start()

    async def settled() -> bool:
        return (
            await all_completed(env, tx_ids + more) and (await env.tx(ghost))["status"] == "error"
        )

    await env.drive(settled, timeout_s=40)
    payouts = await paid_once_each(env, tx_ids + more)
    one_envelope(payouts)  # rebuilt without the failing one: one envelope for the rest
    # All six went out together first; that envelope failed, the five were built again.
    assert {p["attempts"] for p in payouts} == {2}
    failed = await env.tx(ghost)
    (payout,) = await env.payouts(ghost)
    assert payout["state"] == "failed" and payout["attempts"] == 1
    assert payout["last_error"].endswith("does not exist on the ledger (op_no_destination)")
    assert failed["message"] == payout["last_error"]
    assert await env.payments_to(failed["destination_account"]) == []


def _unfunded_account() -> str:
    from stellar_sdk import Keypair

    return str(Keypair.random().public_key)
