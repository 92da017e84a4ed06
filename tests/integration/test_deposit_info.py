"""Deposit info for withdrawals (DEPOSIT_INFO_GENERATOR=self): unique random `id` memos."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import deposit_info
from anchorpay.domain.assets import Asset, AssetList
from anchorpay.domain.errors import InternalError
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.store import observer as store
from anchorpay.store import transactions
from anchorpay.store.db import create_engine, session_factory
from anchorpay.store.migrate import upgrade

DIST = "GDPWCPMWBW6PCXSXVZ4ISXK7245P6QEVSARTRJ4AG3ZMHBJTMCLZQ5GS"
OTHER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USDC = f"stellar:USDC:{OTHER}"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ASSETS = AssetList(
    (
        Asset(id=USDC, significant_decimals=7, distribution_account=DIST),
        Asset(id="stellar:native", significant_decimals=7, distribution_account=OTHER),
        Asset(id="iso4217:USD", significant_decimals=2),
    )
)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'memos.db'}"
    await upgrade(url)
    engine = create_engine(url)
    yield session_factory(engine)
    await engine.dispose()


def withdrawal(tx_id: str, asset: str | None = USDC) -> Transaction:
    return Transaction(
        id=tx_id,
        kind=Kind.WITHDRAWAL,
        status=Status.INCOMPLETE,
        started_at=NOW,
        amount_in_asset=asset,
        requested_asset=asset,
    )


def forced(values: list[int]) -> Iterator[int]:
    yield from values


async def test_ten_thousand_memos_are_unique(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    memos: list[str] = []
    async with sessions() as session, session.begin():
        for i in range(10_000):
            memos.append(await deposit_info.allocate_memo_value(session, DIST, f"tx-{i}", now=NOW))
    assert len(set(memos)) == 10_000
    assert all(0 < int(m) < 2**63 and str(int(m)) == m for m in memos)
    async with sessions() as session:
        assert await store.count_memos(session) == 10_000


async def test_collision_is_drawn_again(sessions: async_sessionmaker[AsyncSession]) -> None:
    draws = forced([42, 42, 0, 2**63, 43])
    async with sessions() as session, session.begin():
        first = await deposit_info.allocate_memo_value(
            session, DIST, "tx-a", now=NOW, rng=lambda: next(draws)
        )
        # 42 is taken, 0 and 2^63 are out of range: the next valid draw wins.
        second = await deposit_info.allocate_memo_value(
            session, DIST, "tx-b", now=NOW, rng=lambda: next(draws)
        )
    assert (first, second) == ("42", "43")


async def test_same_memo_on_another_account_is_allowed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        a = await deposit_info.allocate_memo_value(session, DIST, "tx-a", rng=lambda: 7)
        b = await deposit_info.allocate_memo_value(session, OTHER, "tx-b", rng=lambda: 7)
    assert a == b == "7"


async def test_memo_named_by_a_business_transaction_is_not_issued(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    draws = forced([1234, 99])
    tx = withdrawal("tx-none")
    tx.to_account, tx.memo, tx.memo_type = DIST, "1234", "id"
    async with sessions() as session, session.begin():
        await transactions.insert(session, tx)
        memo = await deposit_info.allocate_memo_value(
            session, DIST, "tx-self", rng=lambda: next(draws)
        )
    assert memo == "99"


async def test_gives_up_after_repeated_collisions(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await deposit_info.allocate_memo_value(session, DIST, "tx-a", rng=lambda: 5)
        with pytest.raises(InternalError, match="unique memo"):
            await deposit_info.allocate_memo_value(session, DIST, "tx-b", rng=lambda: 5)


async def test_unique_constraint_refuses_a_reused_memo(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The database, not only the pre-check, guarantees uniqueness (two servers racing)."""
    async with sessions() as session, session.begin():
        await store.insert_memo(session, DIST, "77", "tx-a", NOW)
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            await store.insert_memo(session, DIST, "77", "tx-b", NOW)


async def test_a_transaction_keeps_its_memo(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        first = await deposit_info.allocate_memo_value(session, DIST, "tx-a")
    async with sessions() as session, session.begin():
        again = await deposit_info.allocate_memo_value(session, DIST, "tx-a")
    assert first == again


async def test_allocate_memo_gives_the_distribution_account(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        info = await deposit_info.allocate_memo(session, withdrawal("tx-a"), ASSETS)
        native = await deposit_info.allocate_memo(
            session, withdrawal("tx-b", asset=None), ASSETS, asset_id="stellar:native"
        )
    assert info.destination_account == DIST
    assert info.memo_type == "id"
    assert 0 < int(info.memo) < 2**63
    assert native.destination_account == OTHER


def test_distribution_account_fallbacks() -> None:
    tx = withdrawal("tx", asset="iso4217:USD")
    with pytest.raises(InternalError, match="No distribution account"):
        deposit_info.distribution_account(tx, ASSETS)
    tx.to_account = "GCURRENT"
    assert deposit_info.distribution_account(tx, ASSETS) == "GCURRENT"


def test_random_memo_range() -> None:
    values = {deposit_info.random_memo() for _ in range(1000)}
    assert len(values) == 1000
    assert all(0 < v < 2**63 for v in values)
