"""Model-based test of the money invariants (issue 13, part 7): a hypothesis state machine
interleaves business JSON-RPC calls, worker steps (with crashes at each durable step) and
ledger closes, on the real store (SQLite and PostgreSQL, the `db_url` parametrisation) and
the sandbox ledger, and checks after every step what the LEDGER paid against what each
transaction owes.

Size: ANCHORPAY_MODEL_EXAMPLES examples per database (default 50, the CI size: about 25 s
per database on a 2-core machine) of ANCHORPAY_MODEL_STEPS steps (default 20). A
longer hunt:

    ANCHORPAY_MODEL_EXAMPLES=2000 ANCHORPAY_MODEL_STEPS=40 \
        .venv/bin/pytest tests/integration/test_money_model.py -s

(-s prints what the calls did: how often each method was accepted or refused, and which
crash points were reached.) A failure prints the shortest sequence of steps hypothesis found
that breaks an invariant, one line per step:
- `state.rpc(call=Call('do_stellar_refund', 2, amount=10, fee=0))`: one JSON-RPC request as
  the business sends it (`POST /`), on pool transaction 2 (see `Call` and `resolve`);
  `state.repeat_last_call()`, `state.rpc_concurrently(first, second)` (two at once);
- `state.worker(sync=...)`: one `run_batch()` of the payout worker; `sync=False`, Horizon
  answers 504 and the envelope stays queued; `sync=True`, ledgers close while it waits;
- `state.worker_crashes(at=...)`: a run_batch() whose process dies at that point, then the
  lease passes and the next worker is another process;
- `state.rpc_while_the_worker_runs(call=..., at=...)`: the call made while the worker is
  at that point of a payout (e.g. between reading the ledger's answer and recording it);
- `state.close_ledger()`, `state.time_passes()` (past every envelope's time bound).
Everything runs on one hand-driven clock, so a printed sequence replays the same; hypothesis
also keeps it in its example database (.hypothesis/) and tries it first next time.

The pool (built once per test; each example starts from it again): DEPOSITS deposits in
`pending_anchor` with funds received (amount_in 10 USD, amount_out 9 USDC), then
WITHDRAWALS withdrawals whose user paid 10 USDC on the ledger, notified with
notify_onchain_funds_received. Each transaction has its own user account, so what the ledger
paid a transaction is what the distribution account paid that account; each ledger payment
is tied to its payout by the envelope hashes the (instrumented) signer prepared, never by
what anchorpay says.

Invariants, after every step:
1. per transaction, the ledger paid at most what is owed: a deposit at most one payment, of
   amount_out; a withdrawal's refund payments plus their fees at most amount_in (10);
   1b. counting the off-chain refunds the business recorded too: a deposit paid on the
   ledger is refunded nothing more, a withdrawal's refunds on and off the ledger total at
   most amount_in;
2. each payout has at most one ledger payment;
3. a ledger payment whose payout is final is recorded on its transaction (deposit: its hash
   in `stellar_transactions`; refund: a `refunds.payments[].id`), whatever the status, and
   that payout is `confirmed` with that hash;
4. `refunds.amount_refunded` = the on-ledger refund payments (amount + the payout's fee)
   + the refunds recorded with an id that is not one of them (off-chain);
5. a refused call changed nothing (the transaction and its payouts read the same).
At the end of each example the worker runs and ledgers close until no payout is open (a
payout that never settles fails the test), and the invariants must still hold.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from support.money_model_fixtures import (
    CRASH_POINTS,
    DEPOSIT_OUT,
    DEPOSITS,
    OPEN,
    TX_TIMEOUT_S,
    WITHDRAWAL_IN,
    WITHDRAWALS,
    WORKER_POINTS,
    Snapshot,
    World,
    Worlds,
    event_loop,
    unknown_hash,
)

EXAMPLES = int(os.environ.get("ANCHORPAY_MODEL_EXAMPLES", "50"))
STEPS = int(os.environ.get("ANCHORPAY_MODEL_STEPS", "20"))
POOL = DEPOSITS + WITHDRAWALS
STATS: Counter[str] = Counter()  # what the calls and crashes did, printed at the end (-s)
DEPOSIT_IN = Decimal(10)  # the deposit's amount_in (10 USD): amount_out 9 USDC + fee 1 USD


def tally(outcome: str) -> None:
    """Count what a step did (hypothesis' statistics, and STATS for the summary)."""
    STATS[outcome] += 1
    if currently_in_test_context():
        event(outcome)


# --- the business calls ----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One JSON-RPC call on pool transaction `tx`; `ref` names the id or hash it carries,
    resolved when the call is made: "none" (no refund object), "id:N" (an off-chain refund
    id; a few, so they repeat), "payout:N" (the N-th envelope hash the worker prepared, any
    transaction's), "ledger:N" (the N-th transaction on the ledger), "own" (the
    withdrawal's incoming payment), "unknown:N" (a hash on no ledger). With `match`, a
    refund naming a payout's hash carries that payout's own amount and fee."""

    method: str
    tx: int  # the index in the pool: deposits first
    amount: int = 0
    fee: int = 0
    ref: str = ""
    match: bool = False


any_tx = st.integers(0, POOL - 1)
deposits = st.integers(0, DEPOSITS - 1)
withdrawals = st.integers(DEPOSITS, POOL - 1)
amounts = st.integers(1, 10)
fees = st.integers(0, 2)
refund_ids = st.integers(0, 2).map(lambda n: f"id:{n}")
payout_refs = st.integers(0, 5).map(lambda n: f"payout:{n}")
ledger_refs = st.integers(0, 9).map(lambda n: f"ledger:{n}")
unknown_refs = st.integers(0, 2).map(lambda n: f"unknown:{n}")


def _call(
    method: str, kind: st.SearchStrategy[int] = any_tx, **fields: st.SearchStrategy[Any]
) -> st.SearchStrategy[Call]:
    """`method` mostly on the transactions of the kind it applies to, sometimes on any."""
    tx = st.one_of(kind, kind, kind, any_tx)
    return st.builds(Call, st.just(method), tx, **fields)


# The calls that move money, and error/recovery, come twice: they matter most.
calls: st.SearchStrategy[Call] = st.one_of(
    _call("do_stellar_payment", deposits),
    _call("do_stellar_refund", withdrawals, amount=amounts, fee=fees),
    _call("notify_transaction_error"),
    _call("notify_transaction_recovery"),
    _call("do_stellar_refund", withdrawals, amount=amounts, fee=fees),
    _call(
        "notify_refund_pending", deposits, amount=amounts, fee=fees, ref=refund_ids | payout_refs
    ),
    _call(
        "notify_refund_sent",
        amount=amounts,
        fee=fees,
        ref=st.just("none") | refund_ids | payout_refs,
        match=st.booleans(),
    ),
    _call("notify_onchain_funds_sent", deposits, ref=payout_refs | ledger_refs | unknown_refs),
    _call("notify_transaction_error"),
    _call("notify_transaction_recovery"),
    _call(
        "notify_onchain_funds_received",
        withdrawals,
        amount=st.just(10) | amounts,
        ref=st.just("own") | ledger_refs | payout_refs,
    ),
    _call("notify_transaction_on_hold", withdrawals),
)


def resolve(world: World, snapshot: Snapshot, call: Call) -> dict[str, Any]:
    """The params of `call` as the business would send them, in the transaction's assets."""
    party = world.parties[call.tx]
    tx, _ = snapshot.of(party.tx_id)
    in_asset = (tx.get("amount_in") or {}).get("asset")
    fee_asset = (tx.get("amount_fee") or {}).get("asset") or in_asset
    params: dict[str, Any] = {"transaction_id": party.tx_id}
    ref = reference(world, party.incoming, call.ref)
    amount, fee = str(call.amount), str(call.fee)
    if call.match and call.ref.startswith("payout:"):
        payout = next(
            (p for ps in snapshot.payouts.values() for p in ps if p["tx_hash"] == ref), None
        )
        if payout is not None:
            amount, fee = payout["amount"], payout["refund_fee"] or "0"
    refund = {
        "amount": {"amount": amount, "asset": in_asset},
        "amount_fee": {"amount": fee, "asset": fee_asset},
    }
    if call.method == "do_stellar_refund":
        params["refund"] = refund
    elif call.method in ("notify_refund_pending", "notify_refund_sent"):
        if call.ref != "none":
            params["refund"] = {"id": ref, **refund}
    elif call.method == "notify_onchain_funds_sent":
        params["stellar_transaction_id"] = ref
    elif call.method == "notify_onchain_funds_received":
        params["stellar_transaction_id"] = ref
        params["amount_in"] = {"amount": amount}
    elif call.method in ("notify_transaction_error", "notify_transaction_on_hold"):
        params["message"] = "set by the business"
    return params


def reference(world: World, incoming: str | None, ref: str) -> str:
    kind, _, number = ref.partition(":")
    n = int(number or 0)
    if kind == "id":
        return f"offchain-refund-{n}"
    if kind == "payout":
        hashes = list(world.hashes)
        return hashes[n % len(hashes)] if hashes else unknown_hash(n)
    if kind == "ledger":
        on_ledger = world.ledger_hashes()
        return on_ledger[n % len(on_ledger)]
    if kind == "own" and incoming is not None:
        return incoming
    return unknown_hash(n)


# --- the invariants --------------------------------------------------------------------------


def dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


class MoneyInvariantBroken(AssertionError):
    """An invariant of the module docstring does not hold; one subclass per invariant, so
    that hypothesis reports (and shrinks) each broken invariant on its own."""


class OverpaidOnLedger(MoneyInvariantBroken):  # 1
    pass


class OverpaidWithOffchainRefunds(MoneyInvariantBroken):  # 1b
    pass


class PayoutPaidTwice(MoneyInvariantBroken):  # 2
    pass


class PaymentNotRecorded(MoneyInvariantBroken):  # 3
    pass


class RefundedAmountWrong(MoneyInvariantBroken):  # 4
    pass


class RefusedCallChangedSomething(MoneyInvariantBroken):  # 5
    pass


BROKEN: dict[str, type[MoneyInvariantBroken]] = {
    "1": OverpaidOnLedger,
    "1b": OverpaidWithOffchainRefunds,
    "2": PayoutPaidTwice,
    "3": PaymentNotRecorded,
    "4": RefundedAmountWrong,
    "5": RefusedCallChangedSomething,
}


def check_money(world: World, snapshot: Snapshot) -> None:
    """Raises for the first broken invariant, naming every one that is broken."""
    broken = violations(world, snapshot)
    if broken:
        first = broken[0].split(":", 1)[0].removeprefix("invariant ")
        raise BROKEN[first]("\n".join(broken))


def violations(world: World, snapshot: Snapshot) -> list[str]:
    """Invariants 1-4 (module docstring), from the ledger's own records."""
    broken: list[str] = []
    payouts = {p["id"]: p for ps in snapshot.payouts.values() for p in ps}
    by_user = {p.user: p for p in world.parties}
    paid: dict[str, list[tuple[str, Decimal, dict[str, Any]]]] = {}
    per_payout: Counter[str] = Counter()
    for pay in world.payments_from_distribution():
        payout_id = world.hashes.get(pay.hash)
        assert payout_id is not None, f"ledger payment {pay} was made by no payout"
        payout = payouts.get(payout_id)
        assert payout is not None, f"ledger payment {pay}: payout {payout_id} is not listed"
        party = by_user.get(pay.to)
        assert party is not None and party.tx_id == payout["transaction_id"], (pay, payout)
        per_payout[payout_id] += 1
        paid.setdefault(party.tx_id, []).append((pay.hash, pay.amount, payout))

    for payout_id, count in per_payout.items():
        if count > 1:
            hashes = [h for h, p in world.hashes.items() if p == payout_id]
            broken.append(
                f"invariant 2: payout {payout_id} reached the ledger {count} times: {hashes}"
            )

    for party in world.parties:
        tx, _ = snapshot.of(party.tx_id)
        where = f"transaction {party.index} ({party.kind}, {tx['status']})"
        entries = paid.get(party.tx_id, [])
        stellar_ids = {s["id"] for s in tx.get("stellar_transactions") or []}
        refunds = tx.get("refunds") or {}
        records = refunds.get("payments") or []
        record_ids = [r["id"] for r in records]

        for tx_hash, _, payout in entries:
            if payout["state"] in OPEN:
                continue  # may be on the ledger before the worker has looked
            if (payout["state"], payout["tx_hash"]) != ("confirmed", tx_hash):
                broken.append(
                    f"invariant 3: {where}: ledger payment {tx_hash} but its payout is "
                    f"{payout['state']} with hash {payout['tx_hash']}: {payout}"
                )
            recorded = stellar_ids if payout["purpose"] == "payment" else set(record_ids)
            if tx_hash not in recorded:
                broken.append(
                    f"invariant 3: {where}: {payout['purpose']} {tx_hash} is on the ledger, "
                    f"its payout {payout['state']}, but the transaction does not record it: "
                    f"stellar_transactions={sorted(stellar_ids)} refunds={records}"
                )

        onchain = {h: a + dec(p["refund_fee"]) for h, a, p in entries if p["purpose"] == "refund"}
        offchain = sum(
            (
                dec(r["amount"]["amount"]) + dec(r["fee"]["amount"])
                for r in records
                if r["id"] not in onchain
            ),
            Decimal(0),
        )
        if party.kind == "deposit":
            amounts = [a for _, a, _ in entries]
            if len(amounts) > 1 or any(a != DEPOSIT_OUT for a in amounts):
                broken.append(
                    f"invariant 1: {where}: the ledger paid {amounts}, owed one payment of "
                    f"{DEPOSIT_OUT}"
                )
            if (DEPOSIT_IN if amounts else 0) + offchain > DEPOSIT_IN:
                broken.append(
                    f"invariant 1b: {where}: paid on the ledger ({amounts}) and refunded "
                    f"{offchain} off the ledger: {records}"
                )
        else:
            on_ledger = sum(onchain.values(), Decimal(0))
            if on_ledger > WITHDRAWAL_IN:
                broken.append(
                    f"invariant 1: {where}: the ledger refunded {on_ledger} (fees included) "
                    f"of {WITHDRAWAL_IN} paid in: {sorted(onchain.items())}"
                )
            if on_ledger + offchain > WITHDRAWAL_IN:
                broken.append(
                    f"invariant 1b: {where}: refunded {on_ledger} on the ledger and "
                    f"{offchain} off it, of {WITHDRAWAL_IN} paid in: {records}"
                )
        counted = sum(
            (
                total
                for h, total in onchain.items()
                if h in record_ids or payouts[world.hashes[h]]["state"] not in OPEN
            ),
            Decimal(0),
        )
        refunded = dec((refunds.get("amount_refunded") or {}).get("amount"))
        if refunded != counted + offchain:
            broken.append(
                f"invariant 4: {where}: amount_refunded {refunded}, but the ledger shows "
                f"{counted} refunded and {offchain} was recorded off the ledger: {records}"
            )
    return broken


# --- the machine -----------------------------------------------------------------------------


class MoneyModel(RuleBasedStateMachine):
    worlds: ClassVar[Worlds]  # set by the test: one app and database per test

    def __init__(self) -> None:
        super().__init__()
        self.world = self.worlds.run(self.worlds.open())
        self.before = self.worlds.run(self.world.snapshot())
        self.unchanged: list[str] = []  # transactions a refused call must have left as they were
        self.last: Call | None = None

    def run(self, coro: Any) -> Any:
        return self.worlds.run(coro)

    def _record(self, call: Call, answer: dict[str, Any]) -> bool:
        error = answer.get("error")
        outcome = f"{call.method}: accepted"
        if error:
            outcome = f"{call.method}: refused {error.get('code')}"
            if error.get("code") == -32603:  # internal: which one is worth knowing
                outcome += f" ({str(error.get('message')).split('[')[0]})"
        tally(outcome)
        return error is not None

    @rule(call=calls)
    def rpc(self, call: Call) -> None:
        self.last = call
        answer = self.run(self.world.rpc(call.method, resolve(self.world, self.before, call)))
        if self._record(call, answer):
            self.unchanged.append(self.world.parties[call.tx].tx_id)

    @rule()
    def repeat_last_call(self) -> None:
        if self.last is not None:
            self.rpc(self.last)

    @rule(first=calls, second=calls)
    def rpc_concurrently(self, first: Call, second: Call) -> None:
        world = self.world
        a, b = self.run(
            gather(
                world.rpc(first.method, resolve(world, self.before, first)),
                world.rpc(second.method, resolve(world, self.before, second)),
            )
        )
        refused_a, refused_b = self._record(first, a), self._record(second, b)
        for call, refused, other, other_refused in (
            (first, refused_a, second, refused_b),
            (second, refused_b, first, refused_a),
        ):
            if refused and (other_refused or other.tx != call.tx):
                self.unchanged.append(world.parties[call.tx].tx_id)

    @rule(call=calls, at=st.sampled_from(WORKER_POINTS), sync=st.booleans())
    def rpc_while_the_worker_runs(self, call: Call, at: str, sync: bool) -> None:
        """One run_batch() with a business call made when the worker is at `at` (module
        money_model_fixtures, WORKER_POINTS), e.g. between reading the ledger's answer and
        recording it; deterministic, unlike two tasks racing. Whether a refusal changed
        nothing cannot be told apart from what the worker did next: not checked here."""
        world = self.world
        params = resolve(world, self.before, call)
        answers: list[dict[str, Any]] = []

        async def business() -> None:
            answers.append(await world.rpc(call.method, params))

        self.run(world.worker_step(sync=sync, interlude=business, interlude_at=at))
        self._record(call, answers[0])

    @rule(sync=st.booleans())
    def worker(self, sync: bool) -> None:
        """One run_batch(); with `sync`, ledgers close while a submission waits (Horizon's
        synchronous answer), else the submission times out (504) and stays queued."""
        self.run(self.world.worker_step(sync=sync))

    @rule(at=st.sampled_from(CRASH_POINTS), sync=st.booleans())
    def worker_crashes(self, at: str, sync: bool) -> None:
        """One run_batch() that dies at `at`; the lease then passes and the next worker step
        is another process's."""
        crashed = self.run(self.world.worker_step(sync=sync, crash_at=at))
        outcome = f"worker crash at {at}: {'happened' if crashed else 'not reached'}"
        tally(outcome)

    @rule()
    def close_ledger(self) -> None:
        self.run(self.world.close_ledger())

    @rule()
    def time_passes(self) -> None:
        """Beyond any envelope's time bound (and any lease)."""
        self.world.clock.advance(TX_TIMEOUT_S + 2)

    @invariant()
    def money_is_safe(self) -> None:
        # Ledger closes, time passing and idle worker steps leave the database as it was.
        snapshot = self.run(self.world.snapshot()) if self.world.dirty else self.before
        for tx_id in self.unchanged:
            if snapshot.of(tx_id) != self.before.of(tx_id):
                raise BROKEN["5"](
                    f"invariant 5: a refused call changed transaction {tx_id}:\n"
                    f"before {self.before.of(tx_id)}\nafter  {snapshot.of(tx_id)}"
                )
        self.unchanged = []
        self.before = snapshot
        check_money(self.world, snapshot)

    def teardown(self) -> None:
        try:
            if sys.exc_info()[1] is None:  # the example passed so far: settle, check again
                snapshot = self.run(self.world.drain())
                assert not snapshot.open_payouts()
                check_money(self.world, snapshot)
        finally:
            self.run(self.worlds.close(self.world))


async def gather(*coros: Any) -> list[Any]:
    return list(await asyncio.gather(*coros))


def test_money_model(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="anchorpay")  # the worker's warnings are expected
    STATS.clear()
    with event_loop() as runner:
        MoneyModel.worlds = worlds = Worlds(runner, db_url)
        try:
            run_state_machine_as_test(
                MoneyModel,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                ),
            )
        finally:
            runner.run(worlds.aclose())
    print("\n".join(f"{n:6d}  {what}" for what, n in sorted(STATS.items())))
