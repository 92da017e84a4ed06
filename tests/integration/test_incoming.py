"""The matching rules of incoming payments, once for every road (observer, Fireblocks poll,
Fireblocks webhook): the incoming-payments service driven with payment values, through the
real workflow, on SQLite and PostgreSQL. Each rule and its exact message is tested here; the
roads' own tests cover their cursors and records."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.ledger import LedgerTransaction
from anchorpay.domain.errors import InternalError
from anchorpay.domain.payments import ObservedPayment
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import StellarPayment, StellarTransaction, Transaction
from anchorpay.incoming import (
    Credit,
    IncomingPayments,
    Unmatched,
    amount_message,
    memo_candidates,
)
from anchorpay.store import observer as store
from anchorpay.store import transactions
from anchorpay.workflow import Services
from support.app import DIST, USDC, USER, FakeLedger, SettingsFactory

OTHER = "GCOTHERXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BASE = "Received an incoming payment"


@dataclass
class World:
    services: Services
    ledger: FakeLedger
    incoming: IncomingPayments
    paid: int = 0

    def pay(
        self,
        amount: str = "10",
        memo: str | None = "111",
        *,
        to: str = DIST,
        memo_type: str = "id",
        asset: str = USDC,
        source: str = USER,
        successful: bool = True,
        type_: str = "payment",
        on_ledger: bool = True,
    ) -> ObservedPayment:
        """A payment value; with `on_ledger`, its transaction is on the (fake) ledger too."""
        self.paid += 1
        tx_hash = f"{self.paid:064x}"
        if on_ledger:
            record = StellarTransaction(
                id=tx_hash,
                created_at=T0,
                envelope="AAAA",
                payments=[StellarPayment(str(self.paid), amount, "USDC:x", "payment", source, to)],
            )
            self.ledger.transactions[tx_hash] = LedgerTransaction(
                tx_hash, 7, True, T0, "AAAA", memo, memo_type, source, record
            )
        return ObservedPayment(
            id=str(100 + self.paid),
            paging_token=str(100 + self.paid),
            transaction_hash=tx_hash,
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

    async def withdrawal(
        self,
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
        async with self.services.sessions() as session, session.begin():
            await transactions.insert(session, tx)

    async def decide(self, payment: ObservedPayment, account: str = DIST) -> Any:
        async with self.services.sessions() as session:
            return await self.incoming.decide(session, account, payment)

    async def get(self, tx_id: str) -> Transaction:
        async with self.services.sessions() as session:
            tx = await transactions.get(session, tx_id)
        assert tx is not None
        return tx


@pytest.fixture
async def world(
    sessions: async_sessionmaker[AsyncSession], settings_factory: SettingsFactory
) -> AsyncIterator[World]:
    settings = settings_factory()
    ledger = FakeLedger()
    services = Services(settings, settings.load_assets(), sessions, ledger)
    yield World(services, ledger, IncomingPayments(services))


async def cursor_finish(session: AsyncSession) -> None:
    """What a road commits with the credit (here: a cursor row)."""
    assert await store.claim_page(session, "road", None, "1", 1, T0)


async def cursor(world: World) -> str | None:
    async with world.services.sessions() as session:
        return await store.get_cursor(session, "road")


# ---- the rules -------------------------------------------------------------------------


async def test_what_is_not_an_incoming_payment_is_skipped(world: World) -> None:
    await world.withdrawal("w1", "111")
    assert await world.decide(world.pay(source=DIST, to=USER)) is None  # our own payout
    assert await world.decide(world.pay(source=DIST)) is None  # to ourselves
    assert await world.decide(world.pay(to=OTHER)) is None  # not to this account
    assert await world.decide(world.pay(successful=False)) is None
    assert await world.decide(world.pay(type_="create_account")) is None


async def test_no_memo(world: World) -> None:
    expected = Unmatched("no_memo", "The payment has no memo")
    assert await world.decide(world.pay(memo=None)) == expected
    assert await world.decide(world.pay(memo="111", memo_type="none")) == expected


async def test_no_match_is_by_account_and_memo(world: World) -> None:
    await world.withdrawal("w1", "111", to=OTHER)
    expected = Unmatched("no_match", "No withdrawal uses this memo for this account")
    assert await world.decide(world.pay(memo="999")) == expected
    assert await world.decide(world.pay(memo="111")) == expected  # w1 is paid on OTHER


async def test_not_awaiting_payment(world: World) -> None:
    await world.withdrawal("w1", "111", status=Status.PENDING_ANCHOR)  # e.g. paid before
    assert await world.decide(world.pay()) == Unmatched(
        "not_awaiting_payment",
        "Transaction[w1] uses this memo but is in status pending_anchor",
        "w1",
    )


async def test_two_open_withdrawals_with_the_memo_credit_nobody(world: World) -> None:
    await world.withdrawal("w3", "333")
    await world.withdrawal("w4", "333")  # a business reused a memo (generator none)
    assert await world.decide(world.pay(memo="333")) == Unmatched(
        "ambiguous", "Several open withdrawals use this memo: w3, w4", "w3"
    )


async def test_wrong_asset(world: World) -> None:
    await world.withdrawal("w1", "111")
    assert await world.decide(world.pay(asset="stellar:native")) == Unmatched(
        "wrong_asset", f"Transaction[w1] expects {USDC}, the payment is stellar:native", "w1"
    )


@pytest.mark.parametrize(
    ("amount", "expected", "message"),
    [
        ("10.0000000", "10", BASE),
        ("9.5000000", "10", f"{BASE}. Amount mismatch: received 9.5 but 10 was expected"),
        ("12", None, f"{BASE}. Amount mismatch: received 12 but 10 was expected"),  # amount_in
    ],
)
async def test_a_match_credits_the_amount_received_with_its_message(
    world: World, amount: str, expected: str | None, message: str
) -> None:
    await world.withdrawal("w1", "111", expected=expected)
    payment = world.pay(amount)
    decision = await world.decide(payment)
    assert decision == Credit(
        "w1",
        {
            "transaction_id": "w1",
            "stellar_transaction_id": payment.transaction_hash,
            "amount_in": {"amount": amount},
            "message": message,
        },
    )
    assert await world.incoming.credit(payment, decision, cursor_finish) == decision
    tx = await world.get("w1")
    assert tx.status == Status.PENDING_ANCHOR
    assert (tx.amount_in, tx.message) == (amount, message)
    assert [s.id for s in tx.stellar_transactions] == [payment.transaction_hash]
    assert await cursor(world) == "1"  # committed with the credit


@pytest.mark.parametrize(
    "type_", ["path_payment", "path_payment_strict_receive", "path_payment_strict_send"]
)
async def test_path_payments_count(world: World, type_: str) -> None:
    await world.withdrawal("w1", "111")
    assert isinstance(await world.decide(world.pay(type_=type_)), Credit)


async def test_a_hash_memo_matches_in_hex_and_base64(world: World) -> None:
    raw = bytes(range(32))
    await world.withdrawal("w1", base64.b64encode(raw).decode())
    await world.withdrawal("w2", bytes(range(1, 33)).hex())
    as_hex = await world.decide(world.pay(memo=raw.hex(), memo_type="hash"))
    assert isinstance(as_hex, Credit) and as_hex.transaction_id == "w1"
    as_b64 = base64.b64encode(bytes(range(1, 33))).decode()
    found = await world.decide(world.pay(memo=as_b64, memo_type="hash"))
    assert isinstance(found, Credit) and found.transaction_id == "w2"


# ---- crediting and recording --------------------------------------------------------------


async def test_a_refusal_by_the_state_machine_is_rejected_and_nothing_commits(
    world: World,
) -> None:
    await world.withdrawal("w1", "111")
    payment = world.pay("10.123456789")  # more decimals than the asset allows
    decision = await world.decide(payment)
    assert isinstance(decision, Credit)
    refused = await world.incoming.credit(payment, decision, cursor_finish)
    assert isinstance(refused, Unmatched)
    assert refused == Unmatched(
        "rejected",
        "notify_onchain_funds_received was refused: "
        "'10.123456789' has invalid significant decimals. Expected: '7'",
        "w1",
    )
    assert (await world.get("w1")).status == Status.PENDING_USER_TRANSFER_START
    assert await cursor(world) is None


async def test_a_transient_failure_propagates_and_nothing_commits(world: World) -> None:
    await world.withdrawal("w1", "111")
    payment = world.pay(on_ledger=False)  # the ledger cannot show the transaction (yet)
    decision = await world.decide(payment)
    assert isinstance(decision, Credit)
    with pytest.raises(InternalError, match="Failed to retrieve Stellar transaction by ID"):
        await world.incoming.credit(payment, decision, cursor_finish)
    assert (await world.get("w1")).status == Status.PENDING_USER_TRANSFER_START
    assert await cursor(world) is None


async def test_what_fails_in_the_callers_part_rolls_the_credit_back(world: World) -> None:
    await world.withdrawal("w1", "111")
    payment = world.pay()
    decision = await world.decide(payment)
    assert isinstance(decision, Credit)

    async def lost_race(session: AsyncSession) -> None:
        raise LookupError("another worker took it")

    with pytest.raises(LookupError):
        await world.incoming.credit(payment, decision, lost_race)
    assert (await world.get("w1")).status == Status.PENDING_USER_TRANSFER_START


async def test_an_unmatched_payment_is_recorded_once_with_its_reason(world: World) -> None:
    payment = world.pay(memo="999")
    decision = await world.decide(payment)
    assert isinstance(decision, Unmatched)
    for first in (True, False):
        async with world.services.sessions() as session, session.begin():
            assert await world.incoming.record_unmatched(session, DIST, payment, decision, T0) is (
                first
            )
    async with world.services.sessions() as session:
        (row,) = await store.list_unmatched(session)
    assert (row.id, row.account, row.transaction_hash, row.memo) == (
        payment.id,
        DIST,
        payment.transaction_hash,
        "999",
    )
    assert (row.reason, row.detail, row.transaction_id) == (
        "no_match",
        "No withdrawal uses this memo for this account",
        None,
    )


# ---- pure helpers ----------------------------------------------------------------------


def test_memo_candidates_and_amount_message() -> None:
    assert memo_candidates(None, "none") == set()
    assert memo_candidates("42", "id") == {"42"}
    raw = bytes(range(32))
    both = memo_candidates(raw.hex(), "hash")
    assert raw.hex() in both and len(both) == 2
    assert memo_candidates("not-hash", "hash") == {"not-hash"}
    assert amount_message("M", "10.0000000", "10") == "M"
    assert amount_message("M", "10.5", None) == "M"
    assert amount_message("M", "12", "10.50") == (
        "M. Amount mismatch: received 12 but 10.5 was expected"
    )
