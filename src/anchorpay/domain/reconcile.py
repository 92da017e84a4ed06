"""Reconciliation, the pure part: match the ledger's payments from the payout source accounts
against anchorpay's payouts by transaction hash, and say what does not add up.

No I/O: `anchorpay.reconcile` reads the ledger and the database and hands the values here, so
every rule below is testable with plain values. Four sections (README, "Reconciliation"):

1. matched: a payout whose `tx_hash` is a ledger payment's hash (`in_flight` when the payout
   is still `submitting`/`submitted`: on the ledger, its confirmation not yet recorded); a
   batched payout (several in one envelope) matches only its own operation (`op_index`);
2. missing: confirmed payouts (created since `since`) whose hash is not among the payments;
3. unexplained: payments whose hash no payout explains: no payout has it, or the payout that
   has it says it never paid (queued, waiting_trust, failed, cancelled);
4. over-paid: per transaction and purpose, the ledger paid more than was owed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from anchorpay.domain.amounts import plain, total
from anchorpay.domain.payout_states import IN_FLIGHT_STATES, PayoutState

CONFIRMED = PayoutState.CONFIRMED
# Only these hold a hash that may be on the ledger before the payout is final.
IN_FLIGHT = frozenset(IN_FLIGHT_STATES)
PAYMENT = "payment"
REFUND = "refund"

# Operation types that move money out of an account; create_account pays its starting
# balance in XLM. account_merge is left out: Horizon does not say how much it moved.
PAYMENT_KINDS = frozenset(
    {"payment", "path_payment_strict_receive", "path_payment_strict_send", "create_account"}
)


@dataclass(frozen=True, slots=True)
class LedgerPayment:
    """One successful outgoing payment operation of a source account."""

    id: str  # Horizon's operation id: unique across accounts, so reads can be deduplicated
    tx_hash: str
    source: str
    destination: str
    asset: str  # SEP-38 id
    amount: Decimal
    created_at: datetime

    @property
    def op_index(self) -> int | None:
        """Its position in its transaction, from Horizon's operation id (a TOID: ledger,
        transaction and 1-based operation number in 32, 20 and 12 bits)."""
        try:
            number = int(self.id) & 0xFFF
        except ValueError:
            return None
        return number - 1 if number else None


@dataclass(frozen=True, slots=True)
class PayoutRecord:
    id: str
    transaction_id: str
    purpose: str  # "payment" | "refund"
    state: str
    asset: str
    amount: Decimal
    refund_fee: Decimal
    tx_hash: str | None
    created_at: datetime
    op_index: int | None = None  # its operation in an envelope it shares (batching)


@dataclass(frozen=True, slots=True)
class Owed:
    """What a transaction was owed: `amount_out` for its payment, `amount_in` for refunds
    (fees included). None when the transaction does not say."""

    transaction_id: str
    amount_in: Decimal | None
    amount_out: Decimal | None


@dataclass(frozen=True, slots=True)
class Match:
    payout: PayoutRecord
    payment: LedgerPayment

    @property
    def in_flight(self) -> bool:
        return self.payout.state in IN_FLIGHT


@dataclass(frozen=True, slots=True)
class Unexplained:
    payment: LedgerPayment
    payout: PayoutRecord | None  # the payout naming this hash, when its state denies paying

    @property
    def reason(self) -> str:
        if self.payout is None:
            return "no payout has this hash"
        return f"payout {self.payout.id} is {self.payout.state} but its hash is on the ledger"


@dataclass(frozen=True, slots=True)
class OverPaid:
    transaction_id: str
    purpose: str
    paid: Decimal  # the ledger total (refunds: plus the refund fees on their payouts)
    owed: Decimal | None
    matches: tuple[Match, ...]

    @property
    def reason(self) -> str:
        count = len(self.matches)
        parts = []
        if self.purpose == PAYMENT and count > 1:
            parts.append(f"{count} ledger payments for one payment")
        if self.owed is not None and self.paid > self.owed:
            what = "paid" if self.purpose == PAYMENT else "refunded (fees included)"
            parts.append(f"{what} {plain(self.paid)} but {plain(self.owed)} was owed")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    matched: tuple[Match, ...]
    missing: tuple[PayoutRecord, ...]
    unexplained: tuple[Unexplained, ...]
    overpaid: tuple[OverPaid, ...]

    @property
    def ok(self) -> bool:
        """Sections 2, 3 and 4 empty; in-flight matches are fine (the worker finishes them)."""
        return not (self.missing or self.unexplained or self.overpaid)


def reconcile(
    payouts: Sequence[PayoutRecord],
    payments: Sequence[LedgerPayment],
    owed: Mapping[str, Owed],
    since: datetime | None = None,
) -> Reconciliation:
    """Match `payments` (the ledger read, already limited to `since`) against `payouts` (those
    created since `since`, plus any older one whose hash is among the payments). Only the
    confirmed payouts created since `since` can be missing: an older one's payment fell
    before the window."""
    by_hash = {p.tx_hash: p for p in payouts if p.tx_hash and p.op_index is None}
    by_op: dict[tuple[str, int | None], PayoutRecord] = {
        (p.tx_hash, p.op_index): p for p in payouts if p.tx_hash and p.op_index is not None
    }
    matched: list[Match] = []
    unexplained: list[Unexplained] = []
    for payment in payments:
        payout = by_op.get((payment.tx_hash, payment.op_index)) or by_hash.get(payment.tx_hash)
        if payout is not None and (payout.state == CONFIRMED or payout.state in IN_FLIGHT):
            matched.append(Match(payout, payment))
        else:
            unexplained.append(Unexplained(payment, payout))
    paid_ids = {m.payout.id for m in matched}
    missing = {
        p.id: p
        for p in payouts
        if p.state == CONFIRMED
        and p.id not in paid_ids
        and (since is None or p.created_at >= since)
    }
    ordered = sorted(missing.values(), key=lambda p: (p.created_at, p.id))
    return Reconciliation(
        tuple(matched), tuple(ordered), tuple(unexplained), over_paid(matched, owed)
    )


def over_paid(matches: Iterable[Match], owed: Mapping[str, Owed]) -> tuple[OverPaid, ...]:
    """Per (transaction, purpose), the matches whose ledger total exceeds what was owed.
    In-flight matches count: that money has left the treasury whatever the payout says."""
    groups: dict[tuple[str, str], list[Match]] = defaultdict(list)
    for match in matches:
        groups[(match.payout.transaction_id, match.payout.purpose)].append(match)
    found = []
    for (tx_id, purpose), group in groups.items():
        paid, limit = _paid_and_owed(purpose, group, owed.get(tx_id))
        too_many = purpose == PAYMENT and len(group) > 1
        if too_many or (limit is not None and paid > limit):
            found.append(OverPaid(tx_id, purpose, paid, limit, tuple(group)))
    return tuple(found)


def _paid_and_owed(
    purpose: str, group: Sequence[Match], owed: Owed | None
) -> tuple[Decimal, Decimal | None]:
    paid = total(*(m.payment.amount for m in group))
    payouts = {m.payout.id: m.payout for m in group}.values()
    if purpose == REFUND:
        # The reference counts a refund's fee against amount_in, like its amount.
        paid = total(paid, *(p.refund_fee for p in payouts))
        return paid, owed.amount_in if owed is not None else None
    # A payment is owed the transaction's amount_out, and never more than its payout said.
    limits = [p.amount for p in payouts]
    if owed is not None and owed.amount_out is not None:
        limits.append(owed.amount_out)
    return paid, min(limits)
