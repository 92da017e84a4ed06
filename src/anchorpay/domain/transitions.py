"""The SEP-24 state machine as one table (spec/rpc.md §3.0).

Each row says: this method, for this kind, is allowed from these statuses under this
funds-received condition, and leads to this status (or to a computed one, named by a rule).
A (method, kind, status, funds) combination that no row allows is the state error of §2.4
step 3. Nothing else in the domain decides which transitions exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from anchorpay.domain.statuses import Kind, Status


class Funds(StrEnum):
    """The funds-received condition (spec §2.5: `transfer_received_at` is set)."""

    ANY = "any"
    RECEIVED = "received"  # ✓
    NOT_RECEIVED = "not_received"  # ✗

    def admits(self, funds_received: bool) -> bool:
        if self is Funds.ANY:
            return True
        return funds_received == (self is Funds.RECEIVED)


class Rule(StrEnum):
    """Next statuses that depend on more than the row."""

    # refunded when the refund total equals amount_in, else pending_anchor (§3.12)
    REFUND_TOTAL = "refund_total"
    # pending_stellar when custody is enabled and success is true, else pending_anchor (§3.19)
    TRUST_SET = "trust_set"
    # pending_stellar when the destination trusts the asset, else pending_trust (§3.20)
    TRUSTLINE = "trustline"


# Every SEP-24 status (§5.1) except error, expired, completed and refunded (§3.14).
NOT_CLOSED = tuple(
    s for s in Status if s not in (Status.ERROR, Status.EXPIRED, Status.COMPLETED, Status.REFUNDED)
)

TRUSTLINE_LOST = "trustline_lost"

D = (Kind.DEPOSIT,)
W = (Kind.WITHDRAWAL,)
DW = (Kind.DEPOSIT, Kind.WITHDRAWAL)
ANY, YES, NO = Funds.ANY, Funds.RECEIVED, Funds.NOT_RECEIVED
S = Status


@dataclass(frozen=True, slots=True)
class Transition:
    method: str
    kinds: tuple[Kind, ...]
    sources: tuple[tuple[Status, Funds], ...]  # allowed statuses, each with its condition
    to: Status | Rule


def _row(
    method: str, kinds: tuple[Kind, ...], sources: dict[Status, Funds], to: Status | Rule
) -> Transition:
    return Transition(method, kinds, tuple(sources.items()), to)


# fmt: off
TABLE: tuple[Transition, ...] = (
    # The interactive flow ends with the amounts known.
    _row("notify_interactive_flow_completed", DW, {S.INCOMPLETE: ANY}, S.PENDING_ANCHOR),
    # Asking the user to pay: fiat for a deposit, Stellar funds for a withdrawal.
    _row("request_offchain_funds", D, {S.INCOMPLETE: ANY, S.PENDING_ANCHOR: NO},
         S.PENDING_USER_TRANSFER_START),
    _row("request_onchain_funds", W, {S.INCOMPLETE: ANY, S.PENDING_ANCHOR: NO},
         S.PENDING_USER_TRANSFER_START),
    # The user's funds arrived.
    _row("notify_offchain_funds_received", D,
         {S.PENDING_USER_TRANSFER_START: ANY, S.ON_HOLD: ANY, S.PENDING_EXTERNAL: ANY},
         S.PENDING_ANCHOR),
    _row("notify_onchain_funds_received", W,
         {S.PENDING_USER_TRANSFER_START: ANY, S.ON_HOLD: ANY}, S.PENDING_ANCHOR),
    # Off-chain funds sent: a deposit's user payment is in flight; a withdrawal is paid out.
    _row("notify_offchain_funds_sent", D, {S.PENDING_USER_TRANSFER_START: ANY},
         S.PENDING_EXTERNAL),
    _row("notify_offchain_funds_sent", W,
         {S.PENDING_USER_TRANSFER_COMPLETE: ANY, S.PENDING_EXTERNAL: ANY,
          S.PENDING_ANCHOR: YES},
         S.COMPLETED),
    _row("notify_offchain_funds_pending", W, {S.PENDING_ANCHOR: YES}, S.PENDING_EXTERNAL),
    _row("notify_offchain_funds_available", W, {S.PENDING_ANCHOR: YES, S.ON_HOLD: YES},
         S.PENDING_USER_TRANSFER_COMPLETE),
    # The deposit's Stellar payout was made.
    _row("notify_onchain_funds_sent", D, {S.PENDING_STELLAR: ANY, S.PENDING_ANCHOR: YES},
         S.COMPLETED),
    _row("notify_amounts_updated", W, {S.PENDING_ANCHOR: YES}, S.PENDING_ANCHOR),
    # Refunds.
    _row("notify_refund_pending", D, {S.PENDING_ANCHOR: ANY}, S.PENDING_EXTERNAL),
    _row("notify_refund_pending", W,
         {S.PENDING_USER_TRANSFER_COMPLETE: ANY, S.PENDING_EXTERNAL: ANY}, S.PENDING_ANCHOR),
    _row("notify_refund_sent", D, {S.PENDING_EXTERNAL: YES, S.PENDING_ANCHOR: YES},
         Rule.REFUND_TOTAL),
    _row("notify_refund_sent", W, {S.PENDING_STELLAR: ANY, S.PENDING_ANCHOR: YES},
         Rule.REFUND_TOTAL),
    _row("do_stellar_refund", W, {S.PENDING_ANCHOR: YES}, S.PENDING_STELLAR),
    # Errors, expiry, hold and recovery.
    _row("notify_transaction_error", DW, dict.fromkeys(NOT_CLOSED, ANY), S.ERROR),
    _row("notify_transaction_expired", DW, dict.fromkeys(NOT_CLOSED, NO), S.EXPIRED),
    _row("notify_transaction_on_hold", D, {S.PENDING_USER_TRANSFER_START: ANY}, S.ON_HOLD),
    _row("notify_transaction_on_hold", W,
         {S.PENDING_USER_TRANSFER_START: ANY, S.PENDING_ANCHOR: ANY}, S.ON_HOLD),
    _row("notify_transaction_recovery", DW, {S.ERROR: YES, S.EXPIRED: YES}, S.PENDING_ANCHOR),
    # Trustlines and the custody payout of a deposit.
    _row("request_trust", D, {S.PENDING_ANCHOR: YES}, S.PENDING_TRUST),
    _row("notify_trust_set", D, {S.PENDING_TRUST: ANY}, Rule.TRUST_SET),
    _row("do_stellar_payment", D, {S.PENDING_ANCHOR: YES}, Rule.TRUSTLINE),
    # SEP-6 and SEP-31 only: never allowed for SEP-24.
    _row("notify_customer_info_updated", DW, {}, S.PENDING_ANCHOR),
    # The worker's own, not an RPC method: the destination dropped its trustline before the
    # payout was sent; the deposit waits for it again (the trustline poller takes over).
    _row(TRUSTLINE_LOST, D, {S.PENDING_STELLAR: ANY}, S.PENDING_TRUST),
)
# fmt: on

# Methods only anchorpay itself applies: the state machine knows them, the RPC does not.
INTERNAL_METHODS: frozenset[str] = frozenset({TRUSTLINE_LOST})
# The status-changing RPC methods (spec §2.2 minus the reads and get_quote).
METHODS: frozenset[str] = frozenset(t.method for t in TABLE) - INTERNAL_METHODS


def find(method: str, kind: Kind, status: Status, funds_received: bool) -> Transition | None:
    """The row allowing `method` here, or None (the state error)."""
    for row in TABLE:
        if row.method != method or kind not in row.kinds:
            continue
        for source, condition in row.sources:
            if source == status and condition.admits(funds_received):
                return row
    return None


def state_error_message(
    method: str, kind: str | None, status: str, funds_received: bool, protocol: str = "24"
) -> str:
    """The exact template of spec §2.4 step 3."""
    return (
        f"RPC method[{method}] is not supported. Status[{status}], kind[{kind or 'null'}], "
        f"protocol[{protocol}], funds received[{'true' if funds_received else 'false'}]"
    )


def possible_targets(method: str, kind: Kind) -> frozenset[Status]:
    """Every status `method` may lead to for `kind` (rules expanded), for checks and tests."""
    expanded: dict[Rule, tuple[Status, ...]] = {
        Rule.REFUND_TOTAL: (S.REFUNDED, S.PENDING_ANCHOR),
        Rule.TRUST_SET: (S.PENDING_STELLAR, S.PENDING_ANCHOR),
        Rule.TRUSTLINE: (S.PENDING_STELLAR, S.PENDING_TRUST),
    }
    targets: set[Status] = set()
    for row in TABLE:
        if row.method == method and kind in row.kinds and row.sources:
            targets.update(expanded[row.to] if isinstance(row.to, Rule) else (row.to,))
    return frozenset(targets)
