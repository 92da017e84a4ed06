"""A refund anchorpay paid keeps its ledger record in `stellar_transactions` (issue 16), marked
as a refund: its hash has one purpose (refund), it is never taken for the user's payment
(where a refund goes back to), and a business's own `notify_refund_sent` adds nothing (the
reference records refunds in `refunds` only)."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime

from anchorpay.domain.assets import Asset, AssetList
from anchorpay.domain.hashes import Claim, HashPurpose, claims
from anchorpay.domain.plan import Facts, MachineContext
from anchorpay.domain.settlement import SettledPayout, record
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import StellarPayment, StellarTransaction, Transaction
from anchorpay.rpc.result import transaction_result
from anchorpay.store.tables import TransactionRow
from anchorpay.store.transactions import from_row, to_row_values
from support.domain_fixtures import run

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USDC = f"stellar:USDC:{ISSUER}"
DIST = "GDPWCPMWBW6PCXSXVZ4ISXK7245P6QEVSARTRJ4AG3ZMHBJTMCLZQ5GS"
USER = "GDJLBYYKMCXNVVNABOE66NYXQGIA5AC5D223Z2KF6ZEYK4UBCA7FKLTG"
ASSETS = AssetList((Asset(USDC, 7, DIST),))
CTX = MachineContext(ASSETS, True, "stellar", "self", T1)


def ledger_record(tx_hash: str, source: str, to: str, amount: str) -> StellarTransaction:
    payment = StellarPayment("op-" + tx_hash, amount, f"USDC:{ISSUER}", "payment", source, to)
    return StellarTransaction(tx_hash, T0, "AAAA-" + tx_hash, [payment])


INCOMING = ledger_record("in1", USER, DIST, "10.0000000")
REFUND = ledger_record("r1", DIST, USER, "4.0000000")


def withdrawal(status: Status = Status.PENDING_STELLAR) -> Transaction:
    """A withdrawal the user paid (from_account unknown: only the ledger record says who)."""
    return Transaction(
        id="w1",
        kind=Kind.WITHDRAWAL,
        status=status,
        started_at=T0,
        amount_in="10",
        amount_in_asset=USDC,
        amount_fee="0",
        amount_fee_asset=USDC,
        transfer_received_at=T0,
        stellar_transactions=[replace(INCOMING)],
        stellar_transaction_id="in1",
        refund_memo="back",
        refund_memo_type="text",
    )


def refund_sent(tx_hash: str = "r1") -> dict[str, object]:
    return {
        "transaction_id": "w1",
        "refund": {
            "id": tx_hash,
            "amount": {"amount": "4", "asset": USDC},
            "amount_fee": {"amount": "0", "asset": USDC},
        },
    }


def test_the_worker_s_refund_joins_stellar_transactions_marked_as_a_refund() -> None:
    before = withdrawal()
    out = run(before, "notify_refund_sent", refund_sent(), CTX, Facts(refund_record=REFUND))
    tx = out.transaction
    assert tx.status is Status.PENDING_ANCHOR  # a partial refund
    assert [(s.id, s.refund) for s in tx.stellar_transactions] == [("in1", False), ("r1", True)]
    assert (tx.stellar_transactions[1].memo, tx.stellar_transactions[1].memo_type) == (
        "back",
        "text",
    )  # the memo the refund was sent with, not the withdrawal's
    assert tx.stellar_transaction_id == "in1"  # still the user's payment
    assert tx.transfer_received_at == T0
    # one hash, one purpose: the refund's record and its refunds entry claim it as a refund
    assert claims(before, tx) == [Claim("r1", HashPurpose.REFUND)]
    result = transaction_result(tx, ASSETS)
    assert [s["id"] for s in result["stellar_transactions"]] == ["in1", "r1"]  # type: ignore[index]
    assert result["stellar_transactions"][1] == {  # type: ignore[index]
        "id": "r1",
        "memo": "back",
        "memo_type": "text",
        "created_at": "2026-01-01T00:00:00Z",
        "envelope": "AAAA-r1",
        "payments": [
            {
                "id": "op-r1",
                "amount": {"amount": "4.0000000", "asset": f"USDC:{ISSUER}"},
                "payment_type": "payment",
                "source_account": DIST,
                "destination_account": USER,
            }
        ],
    }


def test_a_business_s_notify_refund_sent_records_the_refund_only() -> None:
    out = run(withdrawal(), "notify_refund_sent", refund_sent(), CTX)
    assert [s.id for s in out.transaction.stellar_transactions] == ["in1"]
    assert out.transaction.refunds is not None
    assert [p.id for p in out.transaction.refunds.payments] == ["r1"]


def test_a_record_of_another_hash_is_not_added() -> None:
    """The record must be the refund being recorded (its hash is the refund's id)."""
    out = run(
        withdrawal(), "notify_refund_sent", refund_sent("r2"), CTX, Facts(refund_record=REFUND)
    )
    assert [s.id for s in out.transaction.stellar_transactions] == ["in1"]


def test_a_refund_record_is_not_where_the_next_refund_goes() -> None:
    """Without from_account the refund goes to the sender of the user's payment: the refund
    record (sent by the distribution account) comes later and must be skipped."""
    refunded = run(
        withdrawal(), "notify_refund_sent", refund_sent(), CTX, Facts(refund_record=REFUND)
    )
    tx = refunded.transaction
    assert tx.status is Status.PENDING_ANCHOR and tx.from_account is None
    params = {
        "transaction_id": "w1",
        "refund": {
            "amount": {"amount": "6", "asset": USDC},
            "amount_fee": {"amount": "0", "asset": USDC},
        },
    }
    again = run(tx, "do_stellar_refund", params, CTX)
    assert again.payout is not None
    assert (again.payout.destination, again.payout.amount) == (USER, "6")


def test_a_refund_recorded_without_a_status_change_gets_its_record_once() -> None:
    tx = withdrawal(Status.ERROR)
    settled = SettledPayout("p1", "w1", "refund", "r1", "4", "0", REFUND)
    out = record(tx, settled, REFUND, ASSETS, T1)
    assert out.status is Status.ERROR and out.updated_at == T1
    assert [(s.id, s.refund) for s in out.stellar_transactions] == [("in1", False), ("r1", True)]
    assert out.refunds is not None and [p.id for p in out.refunds.payments] == ["r1"]
    assert claims(tx, out) == [Claim("r1", HashPurpose.REFUND)]
    assert record(out, settled, REFUND, ASSETS, T1) is out  # already recorded: unchanged
    # recorded by the business before (same hash), the record is still added, once
    business = run(withdrawal(Status.PENDING_STELLAR), "notify_refund_sent", refund_sent(), CTX)
    added = record(business.transaction, settled, REFUND, ASSETS, T1)
    assert [s.id for s in added.stellar_transactions] == ["in1", "r1"]
    assert added.refunds == business.transaction.refunds
    # without the record, the refund is recorded in refunds alone
    bare = record(tx, replace(settled, record=None), None, ASSETS, T1)
    assert [s.id for s in bare.stellar_transactions] == ["in1"]
    assert bare.refunds is not None and [p.id for p in bare.refunds.payments] == ["r1"]


def test_the_mark_is_stored_and_rows_without_it_read_as_not_refunds() -> None:
    tx = run(withdrawal(), "notify_refund_sent", refund_sent(), CTX, Facts(refund_record=REFUND))
    values = to_row_values(tx.transaction)
    assert [s["refund"] for s in values["stellar_transactions"]] == [False, True]
    row = TransactionRow(**values)
    assert from_row(row).stellar_transactions == tx.transaction.stellar_transactions
    old = [{k: v for k, v in s.items() if k != "refund"} for s in values["stellar_transactions"]]
    row.stellar_transactions = old  # written before the mark existed
    assert [s.refund for s in from_row(row).stellar_transactions] == [False, False]
    assert asdict(from_row(row).stellar_transactions[0])["id"] == "in1"
