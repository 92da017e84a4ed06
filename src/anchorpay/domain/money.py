"""The money ledger of one transaction: what has left, or may still leave, the treasury.

Pure (no I/O): the workflow hands in the transaction's payouts as `PayoutEntry` values. The
rules (README, "Money safety"):

- A payout counts against what is owed from the moment it is recorded until it is proven
  never to reach the ledger: every state but `failed` and `cancelled` counts. (`failed` is
  only ever written when nothing was paid: a permanent refusal, or material proven dead;
  `cancelled` only before any envelope existed.)
- A withdrawal's refunds: the refunds recorded on the transaction (on-chain ones, whose id is
  their hash, and off-chain ones the business recorded) plus every counting refund payout not
  yet recorded there, amounts and fees, never exceed `amount_in`.
- A deposit is paid once: a second payment payout is refused while one counts, a deposit
  whose on-chain payment counts cannot be refunded, and a deposit with a refund recorded
  cannot be paid on-chain (either way the user would be paid twice: once on the ledger, once
  by the refund; `amount_out` is fixed, so a partial refund leaves nothing to pay it from).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from anchorpay.domain.amounts import parse_decimal, plain, rescale, total
from anchorpay.domain.errors import InvalidParams
from anchorpay.domain.payout_states import COUNTING_STATES, PayoutState
from anchorpay.domain.plan import Outcome, PayoutIntent
from anchorpay.domain.statuses import Kind
from anchorpay.domain.transaction import RefundPayment, Transaction

# The methods whose outcome changes what is paid or refunded.
MONEY_METHODS = frozenset(
    {"do_stellar_payment", "do_stellar_refund", "notify_refund_pending", "notify_refund_sent"}
)


@dataclass(frozen=True, slots=True)
class PayoutEntry:
    """One payout as the money ledger sees it."""

    id: str
    purpose: str  # "payment" | "refund"
    state: PayoutState
    amount: str
    fee: str | None
    tx_hash: str | None

    @property
    def counts(self) -> bool:
        return self.state in COUNTING_STATES


def _amount(text: str | None, decimals: int | None) -> Decimal:
    value = parse_decimal(text) if text else None
    return rescale(value if value is not None else Decimal(0), decimals)


def _show(value: Decimal) -> str:
    return plain(value.normalize())


def _describe(entry: PayoutEntry) -> str:
    fee = f" + fee {entry.fee}" if entry.fee and _amount(entry.fee, None) != 0 else ""
    return f"refund payout {entry.id} of {entry.amount}{fee} ({entry.state})"


def unrecorded_refunds(
    entries: Iterable[PayoutEntry], payments: Sequence[RefundPayment]
) -> list[PayoutEntry]:
    """Counting refund payouts not (yet) in the transaction's refunds: a confirmed one is
    recorded under its hash, so it is counted once, there."""
    recorded = {p.id for p in payments}
    return [
        e
        for e in entries
        if e.purpose == "refund" and e.counts and (e.tx_hash is None or e.tx_hash not in recorded)
    ]


def check(
    method: str,
    before: Transaction,
    outcome: Outcome,
    entries: Sequence[PayoutEntry],
    decimals: int | None,
    *,
    settling: str | None = None,
) -> None:
    """Refuse (InvalidParams, nothing written) an outcome of `method` that would pay or refund
    more than is owed. `settling` is the payout whose own confirmation is being recorded: it
    is already in the outcome's refunds, so it is not counted a second time."""
    if method not in MONEY_METHODS:
        return
    entries = [e for e in entries if e.id != settling]
    tx = outcome.transaction
    _check_ledger_ids(tx, entries, decimals)
    if tx.kind is Kind.DEPOSIT:
        _check_deposit(method, tx, outcome.payout, entries)
        return
    payments = tx.refunds.payments if tx.refunds is not None else []
    if not _refunds_changed(before, tx) and _is_refund(outcome.payout) is None:
        return
    pending = unrecorded_refunds(entries, payments)
    new = _is_refund(outcome.payout)
    in_flight = total(*(_amount(e.amount, decimals) + _amount(e.fee, decimals) for e in pending))
    recorded = total(*(_amount(p.amount, decimals) + _amount(p.fee, decimals) for p in payments))
    asked = Decimal(0)
    if new is not None:
        asked = _amount(new.amount, decimals) + _amount(new.refund_fee, decimals)
    owed = _amount(tx.amount_in, decimals)
    if total(recorded, in_flight, asked) <= owed:
        return
    if pending:
        listed = ", ".join(_describe(e) for e in pending)
        raise InvalidParams(
            f"Refund amount exceeds amount_in: {listed} already counts against it "
            f"(recorded {_show(recorded)}, in flight {_show(in_flight)}, "
            f"amount_in {_show(owed)})"
        )
    raise InvalidParams("Refund amount exceeds amount_in")


def _check_ledger_ids(
    tx: Transaction, entries: Sequence[PayoutEntry], decimals: int | None
) -> None:
    """A refund recorded under the hash of one of our refund payouts is that payout's ledger
    payment: its amount and fee are the payout's, or it would count for less than what the
    ledger paid (and the difference could be refunded again)."""
    if tx.refunds is None:
        return
    ours = {e.tx_hash: e for e in entries if e.purpose == "refund" and e.counts and e.tx_hash}
    for payment in tx.refunds.payments:
        entry = ours.get(payment.id)
        if entry is None:
            continue
        same = _amount(payment.amount, decimals) == _amount(entry.amount, decimals) and _amount(
            payment.fee, decimals
        ) == _amount(entry.fee, decimals)
        if not same:
            fee = _show(_amount(entry.fee, decimals))
            raise InvalidParams(
                f"refund.id {payment.id} is the ledger payment of refund payout {entry.id}: "
                f"its amount is {entry.amount} and its fee {fee}"
            )


def _is_refund(intent: PayoutIntent | None) -> PayoutIntent | None:
    return intent if intent is not None and intent.purpose == "refund" else None


def _refunds_changed(before: Transaction, after: Transaction) -> bool:
    return before.refunds != after.refunds


def _check_deposit(
    method: str, tx: Transaction, intent: PayoutIntent | None, entries: Sequence[PayoutEntry]
) -> None:
    if intent is not None and intent.purpose == "payment" and tx.refunds is not None:
        if tx.refunds.payments:
            raise InvalidParams(
                f"Transaction[{tx.id}] was refunded {tx.refunds.amount_refunded}: "
                "an on-chain payment of amount_out would pay the user twice"
            )
    paying = [e for e in entries if e.purpose == "payment" and e.counts]
    if not paying:
        return
    payout = paying[-1]
    if intent is not None and intent.purpose == "payment":
        if payout.state is PayoutState.CONFIRMED:
            raise InvalidParams(
                f"Transaction[{tx.id}] was already paid on-chain by payout {payout.id} "
                f"(hash {payout.tx_hash})"
            )
        raise InvalidParams(
            f"Transaction[{tx.id}] already has a payment payout in flight: payout "
            f"{payout.id} is {payout.state}"
        )
    if method in ("notify_refund_pending", "notify_refund_sent"):
        raise InvalidParams(
            f"Transaction[{tx.id}] is paid on-chain by payout {payout.id} ({payout.state}); "
            "a refund would pay the user twice"
        )
