"""Which ledger network the database follows (`network_guard`, table `ledger_network`), on
SQLite and PostgreSQL: recorded at the first start, another network refused in one line, a
ledger behind what the observer processed refused at each run and reported by /health, and
`ledger_network.forget` (what `anchorpay sandbox reset` does) accepting the next network."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.ledger import LedgerNetwork
from anchorpay.api.observer_health import observer_health
from anchorpay.network_guard import RESET, NetworkChanged, check
from anchorpay.scheduler.observer import PaymentObserver
from anchorpay.store import ledger_network
from anchorpay.store import observer as observer_store
from support.app import USDC, USER, AppClient

PASS = "anchorpay sandbox ; 2026"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NET_A = LedgerNetwork(PASS, "a" * 64, T0, latest_ledger=10)
NET_B = LedgerNetwork(PASS, "b" * 64, T0, latest_ledger=10)
SOURCE = "the sandbox (state data/sandbox.db)"

Sessions = async_sessionmaker[AsyncSession]


async def refusal(sessions: Sessions, network: LedgerNetwork) -> str:
    with pytest.raises(NetworkChanged) as refused:
        await check(sessions, network, SOURCE, T0)
    return str(refused.value)


async def test_the_first_network_is_recorded_and_another_refused(sessions: Sessions) -> None:
    await check(sessions, NET_A, SOURCE, T0)
    await check(sessions, NET_A, SOURCE, T0 + timedelta(hours=1))  # the same: no change
    async with sessions() as session:
        row = await ledger_network.get(session)
    assert row is not None
    assert (row.passphrase, row.genesis_hash, row.recorded_at) == (PASS, "a" * 64, T0)

    assert await refusal(sessions, NET_B) == (
        f"the ledger network changed: the database follows network aaaaaaaaaaaa but {SOURCE} "
        f"is network bbbbbbbbbbbb, a new one (was its state deleted or replaced?); {RESET}"
    )
    testnet = LedgerNetwork("Test SDF Network ; September 2015", None, None, 10)
    assert await refusal(sessions, testnet) == (
        f"the ledger network changed: the database follows the network {PASS!r} but {SOURCE} "
        f"is 'Test SDF Network ; September 2015'; {RESET}"
    )


async def test_a_ledger_behind_the_observer_is_another_network(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        await observer_store.save_caught_up(session, 50, T0, T0)
    reset_testnet = LedgerNetwork("Test SDF Network ; September 2015", None, None, 3)
    assert await refusal(sessions, reset_testnet) == (
        f"the ledger network changed: the observer processed ledger 50 but {SOURCE} is at "
        f"ledger 3; {RESET}"
    )


async def test_older_transactions_refuse_a_newer_network_until_reset(
    sessions: Sessions, app_client: AppClient
) -> None:
    created = await app_client.post(
        "/transactions",
        json={"kind": "withdrawal", "amount_expected": {"asset": USDC}, "source_account": USER},
    )
    assert created.status_code == 201, created.text
    now = datetime.now(UTC)
    newer = LedgerNetwork(PASS, "c" * 64, now + timedelta(minutes=1), latest_ledger=1)
    message = await refusal(sessions, newer)
    assert message.startswith("the ledger network changed: the database holds transactions since ")
    assert message.endswith(
        f" but {SOURCE} is network cccccccccccc, created "
        f"{newer.created_at:%Y-%m-%d %H:%M:%S} UTC; {RESET}"
    )
    older = LedgerNetwork(PASS, "d" * 64, now - timedelta(days=1), latest_ledger=1)
    await check(sessions, older, SOURCE, T0)  # a network older than the data: recorded

    async with sessions() as session, session.begin():
        await observer_store.save_caught_up(session, 9, T0, T0)
        for account in (USER, "fireblocks:0"):
            await observer_store.claim_page(session, account, None, "42", 1, T0)
        assert await ledger_network.forget(session, PASS, T0) == 1
    await check(sessions, newer, SOURCE, T0)  # after a reset: any network of the passphrase
    async with sessions() as session:
        row = await ledger_network.get(session)
        assert row is not None and row.genesis_hash == "c" * 64
        assert await observer_store.get_cursor(session, USER) is None
        assert await observer_store.get_cursor(session, "fireblocks:0") == "42"
        assert await observer_store.get_state(session) is None


async def test_the_observer_refuses_a_ledger_behind_it_and_health_says_so(
    app_client: AppClient,
) -> None:
    services = app_client.services
    async with services.sessions() as session, session.begin():
        await observer_store.save_caught_up(session, 50, T0, datetime.now(UTC))
    run = await PaymentObserver(services).run_once()  # the fake ledger is at ledger 1
    assert run.error == (
        "NetworkChanged: the ledger network changed: the observer processed ledger 50 but "
        f"Horizon at http://horizon.invalid is at ledger 1; {RESET}"
    )
    assert run.payments == 0 and not run.caught_up
    info = await observer_health(services)
    assert (info["healthy"], info["status"]) == (False, "network_changed")
    health = await app_client.get("/health")
    assert health.status_code == 503
    assert health.json()["observer"]["status"] == "network_changed"


async def test_processes_starting_together_both_record_the_network(sessions: Sessions) -> None:
    await asyncio.gather(*(check(sessions, NET_A, SOURCE, T0) for _ in range(3)))
    async with sessions() as session:
        row = await ledger_network.get(session)
    assert row is not None and row.genesis_hash == "a" * 64
