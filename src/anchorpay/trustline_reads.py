"""The RPC's trustline reads (`do_stellar_payment`, `request_trust`... ask whether the
deposit's account trusts the asset before answering `pending_stellar` or `pending_trust`):
concurrent reads of one account share one ledger request, and an account seen trusting the
asset moments ago is not read again.

Only a positive answer is reused: a stale positive is safe (the worker checks the trustline
again before it sends anything, and parks the payout if it is gone); a negative or a failed
read is always asked again, so a user who just added the trustline is not made to wait for
the poller. The cache is bounded (least recently used entries go first)."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from anchorpay.adapters.ledger import Account, LedgerClient

log = logging.getLogger("anchorpay.workflow")

MAX_ACCOUNTS = 10_000


class TrustlineReads:
    def __init__(
        self,
        ledger: LedgerClient,
        *,
        fresh_s: float,
        timeout_s: float,
        monotonic: Callable[[], float],
        max_accounts: int = MAX_ACCOUNTS,
    ) -> None:
        self._ledger = ledger
        self._fresh_s = fresh_s
        self._timeout_s = timeout_s
        self._monotonic = monotonic
        self._max = max_accounts
        self._seen: OrderedDict[str, tuple[float, Account]] = OrderedDict()
        self._reading: dict[str, asyncio.Future[Account | None]] = {}

    async def trusts(self, account: str, asset: str) -> bool:
        """Whether `account` trusts `asset`; any failure to read is no trustline, like the
        reference."""
        seen = self._seen.get(account)
        if seen is not None and self._monotonic() - seen[0] < self._fresh_s:
            if seen[1].trusts(asset):
                self._seen.move_to_end(account)
                return True
        found = await self._read(account)
        return found is not None and found.trusts(asset)

    async def _read(self, account: str) -> Account | None:
        pending = self._reading.get(account)
        if pending is not None:  # another request is reading it: share its answer
            return await asyncio.shield(pending)
        future: asyncio.Future[Account | None] = asyncio.get_running_loop().create_future()
        self._reading[account] = future
        try:
            found = await self._read_once(account)
            future.set_result(found)
            return found
        finally:
            del self._reading[account]
            if not future.done():  # cancelled mid-read: the others read again
                future.set_result(None)

    async def _read_once(self, account: str) -> Account | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                found = await self._ledger.get_account(account)
        except Exception as exc:
            log.info("trustline read for %s failed (%s): treated as no trustline", account, exc)
            return None
        if self._fresh_s > 0:
            self._seen[account] = (self._monotonic(), found)
            self._seen.move_to_end(account)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
        return found
