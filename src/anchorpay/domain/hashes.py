"""One on-chain hash, one purpose: a Stellar transaction hash is money that moved once, so it
is recorded on one transaction for one purpose (an incoming payment, the deposit's payment,
or a refund). Pure: the workflow looks up who holds a hash and asks `refusal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from anchorpay.domain.statuses import Kind
from anchorpay.domain.transaction import Transaction


class HashPurpose(StrEnum):
    INCOMING = "incoming"  # the user's payment of a withdrawal
    PAYMENT = "payment"  # a deposit's payment to the user
    REFUND = "refund"  # a withdrawal's refund to the user


LABELS = {
    HashPurpose.INCOMING: "an incoming payment",
    HashPurpose.PAYMENT: "a payment",
    HashPurpose.REFUND: "a refund",
}


@dataclass(frozen=True, slots=True)
class Claim:
    hash: str
    purpose: HashPurpose


@dataclass(frozen=True, slots=True)
class Holder:
    """Who already holds a hash: a transaction's record, or a payout's envelope."""

    transaction_id: str
    purpose: HashPurpose
    payout_id: str | None = None


def claims(before: Transaction, after: Transaction) -> list[Claim]:
    """The hashes `after` records that `before` did not, each with its purpose.

    `stellar_transactions` holds a deposit's payment or a withdrawal's incoming payment, and
    the ledger records of refunds we paid (marked `refund`); a withdrawal's refunds are
    Stellar payments whose id is their hash (a deposit's refunds are off-chain, their ids the
    business's own)."""
    found: dict[str, HashPurpose] = {}
    known = {s.id for s in before.stellar_transactions}
    entry_purpose = HashPurpose.PAYMENT if after.kind is Kind.DEPOSIT else HashPurpose.INCOMING
    for entry in after.stellar_transactions:
        if entry.id not in known:
            found.setdefault(entry.id, HashPurpose.REFUND if entry.refund else entry_purpose)
    if after.kind is Kind.WITHDRAWAL and after.refunds is not None:
        old = {p.id for p in before.refunds.payments} if before.refunds is not None else set()
        for payment in after.refunds.payments:
            if payment.id and payment.id not in old:
                found.setdefault(payment.id, HashPurpose.REFUND)
    return [Claim(h, p) for h, p in found.items()]


def refusal(claim: Claim, transaction_id: str, holder: Holder) -> str | None:
    """The exact message refusing `claim` for `transaction_id`, or None when `holder` is the
    same purpose of the same transaction (a repeated refund id updates that refund)."""
    if holder.transaction_id == transaction_id and holder.purpose == claim.purpose:
        return None
    where = (
        "this transaction"
        if holder.transaction_id == transaction_id
        else f"transaction[{holder.transaction_id}]"
    )
    by = f" (payout {holder.payout_id})" if holder.payout_id else ""
    return (
        f"Stellar transaction[{claim.hash}] is already recorded on {where} as "
        f"{LABELS[holder.purpose]}{by}; one on-chain transaction has one purpose"
    )
