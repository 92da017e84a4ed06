"""The pure money rules: the transaction's money ledger (domain/money.py), one hash one
purpose (domain/hashes.py) and recording a settled payout (domain/settlement.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from anchorpay.domain.assets import AssetList
from anchorpay.domain.errors import InvalidParams
from anchorpay.domain.hashes import Claim, HashPurpose, Holder, claims, refusal
from anchorpay.domain.money import PayoutEntry, check
from anchorpay.domain.payout_states import PayoutState
from anchorpay.domain.plan import Outcome, PayoutIntent
from anchorpay.domain.settlement import SettledPayout, record
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import (
    RefundPayment,
    Refunds,
    StellarTransaction,
    Transaction,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USDC = "stellar:USDC:GISSUER"


def withdrawal(*payments: RefundPayment) -> Transaction:
    refunds = Refunds("0", "0", list(payments)) if payments else None
    return Transaction(
        id="w1",
        kind=Kind.WITHDRAWAL,
        status=Status.PENDING_ANCHOR,
        started_at=T0,
        amount_in="10",
        amount_in_asset=USDC,
        refunds=refunds,
    )


def refund_payout(
    state: PayoutState, amount: str = "5", fee: str = "0", h: str | None = None
) -> PayoutEntry:
    return PayoutEntry("p1", "refund", state, amount, fee, h)


def refund_intent(amount: str, fee: str = "0") -> PayoutIntent:
    return PayoutIntent("refund", "GUSER", USDC, amount, None, None, fee, False)


def test_a_refund_payout_in_flight_counts_against_a_new_refund() -> None:
    tx = withdrawal()
    out = Outcome(withdrawal(), payout=refund_intent("6"))
    with pytest.raises(InvalidParams) as caught:
        check("do_stellar_refund", tx, out, [refund_payout(PayoutState.SUBMITTED)], None)
    assert caught.value.message == (
        "Refund amount exceeds amount_in: refund payout p1 of 5 (submitted) already counts "
        "against it (recorded 0, in flight 5, amount_in 10)"
    )
    # What fits beside it is accepted; a failed or cancelled payout does not count.
    check(
        "do_stellar_refund",
        tx,
        Outcome(withdrawal(), payout=refund_intent("5")),
        [refund_payout(PayoutState.SUBMITTED)],
        None,
    )
    for unpaid in (PayoutState.FAILED, PayoutState.CANCELLED):
        check("do_stellar_refund", tx, out, [refund_payout(unpaid)], None)


def test_a_confirmed_refund_is_counted_once_where_it_is_recorded() -> None:
    recorded = RefundPayment("h1", "stellar", "5", "0")
    entry = refund_payout(PayoutState.CONFIRMED, h="h1")
    tx = withdrawal(recorded)
    check(
        "do_stellar_refund",
        tx,
        Outcome(withdrawal(recorded), payout=refund_intent("5")),
        [entry],
        None,
    )
    with pytest.raises(InvalidParams, match=r"^Refund amount exceeds amount_in$"):
        check(
            "do_stellar_refund",
            tx,
            Outcome(withdrawal(recorded), payout=refund_intent("5.1")),
            [entry],
            None,
        )
    # A confirmed payout not (yet) recorded still counts: money on the ledger always does.
    with pytest.raises(InvalidParams, match="refund payout p1 of 5 \\(confirmed\\)"):
        check(
            "do_stellar_refund",
            withdrawal(),
            Outcome(withdrawal(), payout=refund_intent("6")),
            [entry],
            None,
        )


def test_an_offchain_refund_is_refused_when_a_payout_covers_the_amount() -> None:
    after = withdrawal(RefundPayment("bank-1", "stellar", "9", "1"))
    with pytest.raises(InvalidParams, match="refund payout p1 of 5 \\+ fee 1 \\(queued\\)"):
        check(
            "notify_refund_sent",
            withdrawal(),
            Outcome(after),
            [refund_payout(PayoutState.QUEUED, fee="1")],
            None,
        )
    # The payout being settled is already in the outcome: it is not counted twice.
    settled = withdrawal(RefundPayment("h9", "stellar", "9", "1"))
    entry = PayoutEntry("p9", "refund", PayoutState.SUBMITTED, "9", "1", None)
    check("notify_refund_sent", withdrawal(), Outcome(settled), [entry], None, settling="p9")
    # Other methods are not the money ledger's concern.
    check("notify_transaction_error", withdrawal(), Outcome(after), [entry], None)


def test_a_deposit_is_paid_once_and_not_refunded_once_paid() -> None:
    tx = Transaction(id="d1", kind=Kind.DEPOSIT, status=Status.PENDING_ANCHOR, started_at=T0)
    paid = PayoutEntry("p1", "payment", PayoutState.CONFIRMED, "9", None, "h1")
    intent = PayoutIntent("payment", "GUSER", USDC, "9", None, None, None, False)
    with pytest.raises(InvalidParams) as caught:
        check("do_stellar_payment", tx, Outcome(tx.clone(), payout=intent), [paid], None)
    assert (
        caught.value.message == "Transaction[d1] was already paid on-chain by payout p1 (hash h1)"
    )
    with pytest.raises(InvalidParams) as caught:
        check("notify_refund_pending", tx, Outcome(tx.clone()), [paid], None)
    assert caught.value.message == (
        "Transaction[d1] is paid on-chain by payout p1 (confirmed); a refund would pay the "
        "user twice"
    )
    failed = PayoutEntry("p1", "payment", PayoutState.FAILED, "9", None, None)
    check("do_stellar_payment", tx, Outcome(tx.clone(), payout=intent), [failed], None)


def test_a_refunded_deposit_is_not_paid_on_chain() -> None:
    refunded = Refunds("2", "0", [RefundPayment("bank-1", "external", "2", "0")])
    tx = Transaction(
        id="d1",
        kind=Kind.DEPOSIT,
        status=Status.PENDING_ANCHOR,
        started_at=T0,
        amount_in="10",
        refunds=refunded,
    )
    intent = PayoutIntent("payment", "GUSER", USDC, "9", None, None, None, False)
    with pytest.raises(InvalidParams) as caught:
        check("do_stellar_payment", tx, Outcome(tx.clone(), payout=intent), [], None)
    assert caught.value.message == (
        "Transaction[d1] was refunded 2: an on-chain payment of amount_out would pay the user twice"
    )
    # Without a refund recorded, the payment goes.
    tx.refunds = None
    check("do_stellar_payment", tx, Outcome(tx.clone(), payout=intent), [], None)


def test_the_ledger_payment_of_a_refund_payout_keeps_its_amount() -> None:
    entry = refund_payout(PayoutState.CONFIRMED, amount="5", fee="1", h="h1")
    recorded = RefundPayment("h1", "stellar", "5", "1")
    for amount, fee in (("1", "1"), ("5", "0")):
        rewritten = withdrawal(RefundPayment("h1", "stellar", amount, fee))
        with pytest.raises(InvalidParams) as caught:
            check("notify_refund_sent", withdrawal(recorded), Outcome(rewritten), [entry], None)
        assert caught.value.message == (
            "refund.id h1 is the ledger payment of refund payout p1: its amount is 5 and its fee 1"
        )
    # The same amount and fee (the business repeating what the worker recorded) is accepted,
    # and so is the same id while the payout is submitted.
    check("notify_refund_sent", withdrawal(recorded), Outcome(withdrawal(recorded)), [entry], None)
    submitted = refund_payout(PayoutState.SUBMITTED, amount="5", fee="1", h="h1")
    with pytest.raises(InvalidParams, match="refund payout p1: its amount is 5"):
        check(
            "notify_refund_sent",
            withdrawal(),
            Outcome(withdrawal(RefundPayment("h1", "stellar", "1", "0"))),
            [submitted],
            None,
        )


def test_claims_name_each_new_hash_with_its_purpose() -> None:
    before = withdrawal()
    after = withdrawal(RefundPayment("r1", "stellar", "1", "0"))
    after.stellar_transactions.append(StellarTransaction("in1", T0, None))
    assert claims(before, after) == [
        Claim("in1", HashPurpose.INCOMING),
        Claim("r1", HashPurpose.REFUND),
    ]
    assert claims(after, after) == []  # nothing new
    deposit = Transaction(id="d1", kind=Kind.DEPOSIT, status=Status.COMPLETED, started_at=T0)
    paid = deposit.clone()
    paid.stellar_transactions.append(StellarTransaction("out1", T0, None))
    paid.refunds = Refunds("1", "0", [RefundPayment("bank", "external", "1", "0")])
    assert claims(deposit, paid) == [Claim("out1", HashPurpose.PAYMENT)]  # bank ids are not


def test_refusal_messages() -> None:
    claim = Claim("h", HashPurpose.REFUND)
    assert refusal(claim, "t1", Holder("t1", HashPurpose.REFUND)) is None
    assert refusal(claim, "t1", Holder("t1", HashPurpose.INCOMING)) == (
        "Stellar transaction[h] is already recorded on this transaction as an incoming "
        "payment; one on-chain transaction has one purpose"
    )
    assert refusal(claim, "t1", Holder("t2", HashPurpose.PAYMENT, "p7")) == (
        "Stellar transaction[h] is already recorded on transaction[t2] as a payment "
        "(payout p7); one on-chain transaction has one purpose"
    )


def test_record_a_settled_refund_and_payment_without_touching_the_status() -> None:
    assets = AssetList([])
    tx = withdrawal(RefundPayment("bank", "stellar", "2", "0"))
    tx.status = Status.ERROR
    settled = SettledPayout("p1", "w1", "refund", "h1", "5", "1")
    out = record(tx, settled, None, assets, T0)
    assert out.status is Status.ERROR and out.updated_at == T0
    assert out.refunds is not None
    assert [(p.id, p.amount, p.fee) for p in out.refunds.payments] == [
        ("bank", "2", "0"),
        ("h1", "5", "1"),
    ]
    assert (out.refunds.amount_refunded, out.refunds.amount_fee) == ("8", "1")
    assert record(out, settled, None, assets, T0) is out  # already recorded: unchanged

    deposit = Transaction(id="d1", kind=Kind.DEPOSIT, status=Status.ERROR, started_at=T0)
    found = StellarTransaction("h2", T0, "xdr")
    paid = record(deposit, SettledPayout("p2", "d1", "payment", "h2", "9", None), found, assets, T0)
    assert ([s.id for s in paid.stellar_transactions], paid.stellar_transaction_id) == (
        ["h2"],
        "h2",
    )
    assert paid.status is Status.ERROR
