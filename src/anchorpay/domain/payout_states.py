"""The payout state machine as one table (DESIGN.md, "Payout states and the exactly-once
protocol"), like `transitions` is for SEP-24 transactions.

Each move is named; the store applies only named moves, so a write can never put a payout in
a state its current state does not lead to (`IllegalPayoutMove`). States:

- `queued`: recorded, due; nothing exists that could reach the ledger.
- `waiting_trust`: the destination has no trustline yet; nothing sent.
- `submitting`: idempotency material stored; it may or may not have reached the ledger.
- `submitted`: accepted by the network or custodian, not final.
- `confirmed`: final, on the ledger.
- `failed`: final, proven never to reach the ledger (refused, or its material proven dead).
- `cancelled`: final, closed before any envelope existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PayoutState(StrEnum):
    QUEUED = "queued"
    WAITING_TRUST = "waiting_trust"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"


Q, W, SG, SD = (
    PayoutState.QUEUED,
    PayoutState.WAITING_TRUST,
    PayoutState.SUBMITTING,
    PayoutState.SUBMITTED,
)

OPEN_STATES: tuple[PayoutState, ...] = (Q, W, SG, SD)
# Material exists: a lookup decides, never a new envelope.
IN_FLIGHT_STATES: tuple[PayoutState, ...] = (SG, SD)
# Nothing exists that could reach the ledger: the business may still close these.
NOT_SENT_STATES: tuple[PayoutState, ...] = (Q, W)
FINAL_STATES: tuple[PayoutState, ...] = (
    PayoutState.CONFIRMED,
    PayoutState.FAILED,
    PayoutState.CANCELLED,
)
# What counts against what a transaction is owed: every payout not proven unpaid.
COUNTING_STATES: frozenset[PayoutState] = frozenset((*OPEN_STATES, PayoutState.CONFIRMED))


class PayoutMove(StrEnum):
    RECORD = "record"  # do_stellar_payment / do_stellar_refund, trustline known
    RECORD_WAITING = "record_waiting"  # do_stellar_payment without the trustline
    RESUME = "resume"  # the trustline appeared
    PARK = "park"  # the trustline vanished before submission
    PREPARE = "prepare"  # material stored before it can reach the network
    ACCEPT = "accept"  # the network or custodian has it, not final
    CONFIRM = "confirm"  # final on the ledger
    FAIL = "fail"  # permanent: nothing was or will be paid
    CANCEL = "cancel"  # closed before anything was sent
    DISCARD = "discard"  # the material is proven dead: start over
    KEEP = "keep"  # bookkeeping only (retry schedule, attempts, polls, lease)


@dataclass(frozen=True, slots=True)
class Move:
    name: PayoutMove
    sources: tuple[PayoutState | None, ...]  # None: the payout does not exist yet
    to: PayoutState | None  # None: the state stays (KEEP)


# fmt: off
TABLE: tuple[Move, ...] = (
    Move(PayoutMove.RECORD, (None,), Q),
    Move(PayoutMove.RECORD_WAITING, (None,), W),
    Move(PayoutMove.RESUME, (W,), Q),
    # The worker parks a payout it found without trustline (it may re-park its own).
    Move(PayoutMove.PARK, (Q, W), W),
    # The worker prepares queued payouts and the refunds it parked itself.
    Move(PayoutMove.PREPARE, (Q, W), SG),
    Move(PayoutMove.ACCEPT, (SG, SD), SD),
    Move(PayoutMove.CONFIRM, (SG, SD), PayoutState.CONFIRMED),
    Move(PayoutMove.FAIL, OPEN_STATES, PayoutState.FAILED),
    Move(PayoutMove.CANCEL, NOT_SENT_STATES, PayoutState.CANCELLED),
    Move(PayoutMove.DISCARD, (SG, SD), Q),
    Move(PayoutMove.KEEP, OPEN_STATES, None),
)
# fmt: on

MOVES: dict[PayoutMove, Move] = {m.name: m for m in TABLE}


class IllegalPayoutMove(Exception):
    """A write asked for a move the payout's current state does not allow: a bug."""

    def __init__(self, move: PayoutMove, state: PayoutState | str | None) -> None:
        super().__init__(f"payout move {move} is not allowed from state {state or 'new'}")
        self.move = move
        self.state = state


def target(move: PayoutMove, state: PayoutState | str | None) -> PayoutState:
    """The state `move` leads to from `state`; IllegalPayoutMove when it is not allowed."""
    row = MOVES[move]
    current = PayoutState(state) if state is not None else None
    if current not in row.sources:
        raise IllegalPayoutMove(move, state)
    if row.to is None:
        assert current is not None  # KEEP never applies to a new payout
        return current
    return row.to


def sources(move: PayoutMove) -> tuple[PayoutState, ...]:
    """The existing states `move` applies to (for conditional bulk updates)."""
    return tuple(s for s in MOVES[move].sources if s is not None)
