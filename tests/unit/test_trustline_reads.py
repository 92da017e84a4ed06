"""The RPC's trustline reads (anchorpay.trustline_reads): one ledger request for concurrent
reads of one account, a positive reused while fresh, a negative or a failure never."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from anchorpay.adapters.ledger import Account, Balance, LedgerNotFound, LedgerUnavailable
from anchorpay.trustline_reads import TrustlineReads

USDC = "stellar:USDC:GISSUER"
EURC = "stellar:EURC:GISSUER"


class Ledger:
    """Counts get_account calls; each waits for `gate` so reads overlap."""

    def __init__(self) -> None:
        self.reads: list[str] = []
        self.trusted: dict[str, tuple[str, ...]] = {}
        self.fail: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()

    async def get_account(self, account_id: str) -> Account:
        self.reads.append(account_id)
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        if account_id not in self.trusted:
            raise LedgerNotFound(account_id)
        balances = tuple(Balance(a, Decimal(0), True) for a in self.trusted[account_id])
        return Account(account_id, 1, balances)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reads(ledger: Ledger, clock: Clock, **kw: Any) -> TrustlineReads:
    return TrustlineReads(
        ledger,  # type: ignore[arg-type]  # the part of LedgerClient it uses
        fresh_s=kw.pop("fresh_s", 2.0),
        timeout_s=1.0,
        monotonic=clock,
        **kw,
    )


async def test_concurrent_reads_of_one_account_share_one_request() -> None:
    ledger, clock = Ledger(), Clock()
    ledger.trusted["GA"] = (USDC,)
    ledger.gate.clear()
    subject = reads(ledger, clock)
    asks = [asyncio.create_task(subject.trusts("GA", USDC)) for _ in range(20)]
    other = asyncio.create_task(subject.trusts("GB", USDC))
    await asyncio.sleep(0)
    ledger.gate.set()
    assert await asyncio.gather(*asks) == [True] * 20
    assert await other is False
    assert sorted(ledger.reads) == ["GA", "GB"]


async def test_a_positive_is_reused_while_fresh_a_negative_never() -> None:
    ledger, clock = Ledger(), Clock()
    ledger.trusted["GA"] = (USDC,)
    subject = reads(ledger, clock)
    assert await subject.trusts("GA", USDC)
    clock.now += 1.9
    assert await subject.trusts("GA", USDC)
    assert ledger.reads == ["GA"]  # fresh: not read again
    assert not await subject.trusts("GA", EURC)  # not trusted: always asked again
    ledger.trusted["GA"] = (USDC, EURC)
    assert await subject.trusts("GA", EURC)  # the user just added it: seen at once
    assert ledger.reads == ["GA", "GA", "GA"]
    clock.now += 2.1
    assert await subject.trusts("GA", USDC)
    assert ledger.reads == ["GA"] * 4  # stale: read again


async def test_a_failed_read_is_no_trustline_and_is_not_remembered() -> None:
    ledger, clock = Ledger(), Clock()
    ledger.trusted["GA"] = (USDC,)
    ledger.fail = LedgerUnavailable("503")
    subject = reads(ledger, clock)
    assert not await subject.trusts("GA", USDC)
    ledger.fail = None
    assert await subject.trusts("GA", USDC)
    assert ledger.reads == ["GA", "GA"]


async def test_off_and_bounded() -> None:
    ledger, clock = Ledger(), Clock()
    for account in ("GA", "GB", "GC"):
        ledger.trusted[account] = (USDC,)
    off = reads(ledger, clock, fresh_s=0.0)
    assert await off.trusts("GA", USDC) and await off.trusts("GA", USDC)
    assert ledger.reads == ["GA", "GA"]
    ledger.reads.clear()
    small = reads(ledger, clock, max_accounts=2)
    for account in ("GA", "GB", "GC", "GA"):
        assert await small.trusts(account, USDC)
    assert ledger.reads == ["GA", "GB", "GC", "GA"]  # GA was pushed out by GC
