"""Which in-flight payouts the worker looks up when it reads the latest ledger
(`LedgerLooks`): each one nobody holds, once per ledger closed since its last look; a payout
first seen is looked up at once only if it was written before the latest ledger closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from anchorpay.adapters.ledger import LatestLedger
from anchorpay.scheduler.payout_watch import LedgerLooks, Watched

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def payout(pid: str, *, held: bool = False, written: datetime = T0) -> Watched:
    return Watched(pid, "submitting", due=False, in_flight=True, held=held, updated_at=written)


def ledger(sequence: int) -> LatestLedger:
    return LatestLedger(sequence, T0 + timedelta(seconds=5 * sequence))


def looked_up(looks: LedgerLooks, payouts: list[Watched], sequence: int) -> list[str]:
    return [w.id for w in looks.to_look_up(payouts, ledger(sequence))]


def test_a_payout_its_worker_waits_on_is_looked_up_after_the_next_close_once_free() -> None:
    looks = LedgerLooks()
    assert looked_up(looks, [payout("p", held=True)], 1) == []  # first seen, submitting
    assert looked_up(looks, [payout("p", held=True)], 2) == []  # its worker gets the answer
    # The answer was a 504 (Horizon gave up before inclusion): free now, ledger 2 may hold it.
    assert looked_up(looks, [payout("p")], 2) == ["p"]
    assert looked_up(looks, [payout("p")], 2) == []  # once per ledger
    assert looked_up(looks, [payout("p")], 3) == ["p"]
    assert looked_up(looks, [payout("p")], 3) == []


def test_a_free_payout_first_seen_is_looked_up_at_once_only_if_older_than_the_ledger() -> None:
    looks = LedgerLooks()
    before_close = T0 + timedelta(seconds=9)  # ledger 2 closed at T0 + 10 s
    after_close = T0 + timedelta(seconds=11)
    first = [payout("old", written=before_close), payout("new", written=after_close)]
    assert looked_up(looks, first, 2) == ["old"]
    assert looked_up(looks, first, 2) == []
    assert looked_up(looks, first, 3) == ["old", "new"]


def test_a_payout_no_longer_in_flight_is_forgotten() -> None:
    looks = LedgerLooks()
    assert looked_up(looks, [payout("p", held=True)], 1) == []
    assert looked_up(looks, [], 2) == []  # confirmed (or failed): gone from the watch
    # Seen again (a new envelope after the old one was proven dead): a first sight.
    assert looked_up(looks, [payout("p", held=True)], 3) == []
    assert looked_up(looks, [payout("p")], 3) == []
    assert looked_up(looks, [payout("p")], 4) == ["p"]


def test_forget_starts_over() -> None:
    looks = LedgerLooks()
    assert looked_up(looks, [payout("p", held=True)], 1) == []
    looks.forget()
    assert looked_up(looks, [payout("p", written=T0 + timedelta(seconds=6))], 1) == []
    assert looked_up(looks, [payout("p")], 2) == ["p"]
