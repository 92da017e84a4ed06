"""The payout state machine table (domain/payout_states.py): every (move, state) pair is
enumerated, allowed ones lead where the table says, the others are typed errors; and the
store refuses an illegal move without writing anything."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.payout_states import (
    COUNTING_STATES,
    FINAL_STATES,
    OPEN_STATES,
    IllegalPayoutMove,
    PayoutMove,
    PayoutState,
    sources,
    target,
)
from anchorpay.domain.plan import PayoutIntent
from anchorpay.store import payouts as store

S = PayoutState
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# The whole table, written out: (move, from) -> to. Anything absent is illegal.
EXPECTED: dict[tuple[PayoutMove, PayoutState | None], PayoutState] = {
    (PayoutMove.RECORD, None): S.QUEUED,
    (PayoutMove.RECORD_WAITING, None): S.WAITING_TRUST,
    (PayoutMove.RESUME, S.WAITING_TRUST): S.QUEUED,
    (PayoutMove.PARK, S.QUEUED): S.WAITING_TRUST,
    (PayoutMove.PARK, S.WAITING_TRUST): S.WAITING_TRUST,
    (PayoutMove.PREPARE, S.QUEUED): S.SUBMITTING,
    (PayoutMove.PREPARE, S.WAITING_TRUST): S.SUBMITTING,
    (PayoutMove.ACCEPT, S.SUBMITTING): S.SUBMITTED,
    (PayoutMove.ACCEPT, S.SUBMITTED): S.SUBMITTED,
    (PayoutMove.CONFIRM, S.SUBMITTING): S.CONFIRMED,
    (PayoutMove.CONFIRM, S.SUBMITTED): S.CONFIRMED,
    (PayoutMove.FAIL, S.QUEUED): S.FAILED,
    (PayoutMove.FAIL, S.WAITING_TRUST): S.FAILED,
    (PayoutMove.FAIL, S.SUBMITTING): S.FAILED,
    (PayoutMove.FAIL, S.SUBMITTED): S.FAILED,
    (PayoutMove.CANCEL, S.QUEUED): S.CANCELLED,
    (PayoutMove.CANCEL, S.WAITING_TRUST): S.CANCELLED,
    (PayoutMove.DISCARD, S.SUBMITTING): S.QUEUED,
    (PayoutMove.DISCARD, S.SUBMITTED): S.QUEUED,
    (PayoutMove.KEEP, S.QUEUED): S.QUEUED,
    (PayoutMove.KEEP, S.WAITING_TRUST): S.WAITING_TRUST,
    (PayoutMove.KEEP, S.SUBMITTING): S.SUBMITTING,
    (PayoutMove.KEEP, S.SUBMITTED): S.SUBMITTED,
}


@pytest.mark.parametrize("move", list(PayoutMove))
@pytest.mark.parametrize("state", [None, *PayoutState])
def test_every_move_from_every_state(move: PayoutMove, state: PayoutState | None) -> None:
    expected = EXPECTED.get((move, state))
    if expected is None:
        with pytest.raises(IllegalPayoutMove) as caught:
            target(move, state)
        assert str(caught.value) == (
            f"payout move {move} is not allowed from state {state or 'new'}"
        )
    else:
        assert target(move, state) == expected


def test_final_states_have_no_way_out_and_what_counts() -> None:
    for state in FINAL_STATES:
        assert not [m for m in PayoutMove if (m, state) in EXPECTED]
    assert COUNTING_STATES == {*OPEN_STATES, S.CONFIRMED}  # failed/cancelled: proven unpaid
    # Money can reach the ledger only from submitting/submitted, so only those confirm.
    assert {s for (m, s) in EXPECTED if m is PayoutMove.CONFIRM} == {S.SUBMITTING, S.SUBMITTED}
    # Cancelling never touches a payout with material that may be on its way.
    assert sources(PayoutMove.CANCEL) == (S.QUEUED, S.WAITING_TRUST)


async def test_the_store_refuses_an_illegal_move_and_writes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    intent = PayoutIntent("payment", "GDEST", "stellar:native", "1", None, None, None, False)
    async with sessions() as s, s.begin():
        row = await store.record_intent(s, "tx1", intent, "stellar", T0)
    async with sessions() as s, s.begin():
        (held,) = await store.claim_due(s, "w1", T0, 30, 1)
    with pytest.raises(IllegalPayoutMove):
        async with sessions() as s, s.begin():
            await store.save(s, held, "w1", T0, PayoutMove.CONFIRM, tx_hash="h")
    async with sessions() as s:
        after = await store.get(s, row.id)
    assert after is not None
    assert (after.state, after.tx_hash, after.version) == ("queued", None, held.version)
