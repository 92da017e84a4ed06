"""get_transactions' order and paging exactly as spec/rpc.md §4.2 states them: filter by
status, order by the column either way with NULLS LAST and then by id ascending, LIMIT
page_size OFFSET page_number × page_size. The store's index-backed query (`list_page`), on
SQLite and PostgreSQL, against that rule computed here, over rows where ties and NULLs are
the common case, for every filter, order and page."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.store import transactions as repo
from anchorpay.store.transactions import Order, OrderBy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATUSES = (Status.INCOMPLETE, Status.PENDING_ANCHOR, Status.COMPLETED, Status.ERROR)
COLUMNS: dict[OrderBy, str] = {
    "created_at": "started_at",
    "transfer_received_at": "transfer_received_at",
    "user_action_required_by": "user_action_required_by",
}
FILTERS: list[list[str] | None] = [
    None,
    [],
    ["pending_anchor"],
    ["incomplete", "error"],
    ["error", "incomplete", "error"],  # a repeated status counts once
    [s.value for s in STATUSES],
    ["refunded"],  # nothing has it
]


def _transactions(n: int = 61, seed: int = 5) -> list[Transaction]:
    """Six instants only, so most rows tie on the column and the id decides; a third NULL."""
    rng = random.Random(seed)

    def instant() -> datetime:
        return T0 + timedelta(minutes=rng.randrange(6))

    def maybe() -> datetime | None:
        return None if rng.random() < 0.35 else instant()

    return [
        Transaction(
            id=f"{rng.getrandbits(64):016x}",
            kind=Kind.DEPOSIT,
            status=rng.choice(STATUSES),
            started_at=instant(),
            transfer_received_at=maybe(),
            user_action_required_by=maybe(),
        )
        for _ in range(n)
    ]


def _expected(
    txs: list[Transaction], statuses: list[str] | None, order_by: OrderBy, order: Order
) -> list[str]:
    column = COLUMNS[order_by]
    kept = sorted((t for t in txs if not statuses or t.status in statuses), key=lambda t: t.id)
    # Python's sort is stable, reverse=True too: equal values keep the id order.
    present = sorted(
        (t for t in kept if getattr(t, column) is not None),
        key=lambda t: getattr(t, column),
        reverse=order == "desc",
    )
    return [t.id for t in present] + [t.id for t in kept if getattr(t, column) is None]


async def test_every_filter_order_and_page_is_the_rule(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    txs = _transactions()
    for column in COLUMNS.values():  # what the rule is tested on: ties, and NULLs but one
        values = [getattr(t, column) for t in txs if getattr(t, column) is not None]
        assert len(set(values)) == 6 and len(values) >= 35
        assert len(values) < len(txs) or column == "started_at"
    async with sessions() as session, session.begin():
        for tx in txs:
            await repo.insert(session, tx)
    async with sessions() as session:
        for statuses in FILTERS:
            for order_by in COLUMNS:
                for order in ("asc", "desc"):
                    expected = _expected(txs, statuses, order_by, order)
                    for size in (7, 200):
                        for number in range(len(expected) // size + 2):  # and one past the end
                            page = await repo.list_page(
                                session,
                                statuses=statuses,
                                order_by=order_by,
                                order=order,
                                page_number=number,
                                page_size=size,
                            )
                            want = expected[number * size : (number + 1) * size]
                            assert [t.id for t in page] == want, (statuses, order_by, order, number)
    # The rows come back whole, not just in order.
    async with sessions() as session:
        first = await repo.list_page(session, order_by="user_action_required_by", page_size=1)
    assert first == [await _stored(sessions, first[0].id)]


async def _stored(sessions: async_sessionmaker[AsyncSession], tx_id: str) -> Transaction:
    async with sessions() as session:
        found = await repo.get(session, tx_id)
    assert found is not None
    return found
