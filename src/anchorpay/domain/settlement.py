"""Recording a confirmed payout on its transaction when the state machine refuses to move it
(the business put it in `error`, recovered it, ...): the money is on the ledger, so it must
count, whatever the status. Pure: returns a new transaction, the status untouched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import datetime

from anchorpay.domain.assets import AssetList
from anchorpay.domain.refunds import add_refund_record, decimals_for, totals
from anchorpay.domain.transaction import RefundPayment, StellarTransaction, Transaction


@dataclass(frozen=True, slots=True)
class SettledPayout:
    """A payout final on the ledger."""

    payout_id: str
    transaction_id: str
    purpose: str  # "payment" | "refund"
    hash: str
    amount: str
    fee: str | None
    record: StellarTransaction | None = None  # the ledger's record, when the worker has it


def record(
    tx: Transaction,
    settled: SettledPayout,
    found: StellarTransaction | None,
    assets: AssetList,
    now: datetime,
) -> Transaction:
    """`tx` with the payout recorded (unchanged when it already is). `found` is the ledger's
    record of the payout's transaction (None when `stellar_transactions` already has it, or,
    for a refund, when the worker did not hand it in: the refund is recorded in `refunds`
    all the same)."""
    out = tx.clone()
    if settled.purpose == "refund":
        stored = list(out.refunds.payments) if out.refunds is not None else []
        recorded = any(p.id == settled.hash for p in stored)
        if not recorded:
            stored.append(
                RefundPayment(
                    id=settled.hash,
                    id_type="stellar",
                    amount=settled.amount,
                    fee=settled.fee or "0",
                )
            )
            out.refunds = totals(stored, decimals_for(tx, assets))
        added = found is not None and add_refund_record(out, replace(found, id=settled.hash))
        if recorded and not added:
            return tx
    elif found is not None:
        entry = copy.deepcopy(found)
        entry.id = settled.hash
        entry.memo, entry.memo_type = tx.memo, tx.memo_type  # as the state machine records it
        out.stellar_transactions.append(entry)
        out.stellar_transaction_id = settled.hash
    else:
        return tx
    out.updated_at = now
    return out
