"""The `Sandbox`: the ledger, its start state, the ledger-closing task, submissions that wait
for their ledger (as Horizon's POST /transactions does), fault injection and request
counters. The HTTP surfaces (`horizon_routes`, `dev_routes`) are thin layers over it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from stellar_sdk import Keypair

from anchorpay.domain.assets import AssetList
from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET, SANDBOX_NETWORK_PASSPHRASE
from anchorpay.sandbox.faults import Faults
from anchorpay.sandbox.ledger import SandboxLedger
from anchorpay.sandbox.persist import MEMORY, LedgerFile
from anchorpay.sandbox.state import (
    LedgerHeader,
    Queued,
    Rejected,
    TxRecord,
    asset_issuer,
    is_credit_asset_id,
)
from anchorpay.sandbox.wallet import PaymentRequest, sign_payment

log = logging.getLogger("anchorpay.sandbox")

DISTRIBUTION_XLM = Decimal("10000000")
DISTRIBUTION_CREDIT = Decimal("1000000")
ISSUER_XLM = Decimal("10000")


@dataclass(frozen=True, slots=True)
class TimedOut:
    """No answer to give within the wait (or a fault says so): Horizon's 504. `hash` is None
    when the envelope was dropped before the ledger saw it."""

    hash: str | None


SubmitAnswer = TxRecord | Rejected | TimedOut


class Sandbox:
    def __init__(
        self,
        assets: AssetList,
        network_passphrase: str = SANDBOX_NETWORK_PASSPHRASE,
        distribution_secret: str = SANDBOX_DISTRIBUTION_SECRET,
        ledger_close_s: float | None = 5.0,
        clock: Callable[[], datetime] | None = None,
        submit_timeout_s: float = 30.0,
        state: str = MEMORY,
    ) -> None:
        self.assets = assets
        self.network_passphrase = network_passphrase
        self.ledger_close_s = ledger_close_s
        self.submit_timeout_s = submit_timeout_s
        # SANDBOX_STATE: a file keeps the network across restarts; `:memory:` starts anew.
        self.state = state
        store = None if state == MEMORY else LedgerFile(state)
        self.ledger = SandboxLedger(network_passphrase, clock, store)
        self.faults = Faults()
        # Requests per route and per account ("" when the route names none), for tests that
        # count ledger reads: counters["GET /accounts/{id}"]["G…"].
        self.counters: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.distribution = Keypair.from_secret(distribution_secret)
        # The secrets of the accounts this sandbox made (sandbox-only keys): `POST
        # /sandbox/payments` may name the payer by its account id alone.
        self.keys = self.ledger.keys
        self.keys[self.distribution_account] = distribution_secret
        self._waiters: dict[str, asyncio.Future[SubmitAnswer]] = {}
        self._task: asyncio.Task[None] | None = None
        if self.ledger.fresh:
            self._genesis()

    @property
    def distribution_account(self) -> str:
        return str(self.distribution.public_key)

    def credit_assets(self) -> list[str]:
        """The configured non-native Stellar asset ids (what trustlines may be made for)."""
        return [a.id for a in self.assets.stellar_assets() if is_credit_asset_id(a.id)]

    def _genesis(self) -> None:
        """Issuers first, then the distribution account holding every configured asset."""
        dist = self.distribution_account
        for asset_id in self.credit_assets():
            issuer = asset_issuer(asset_id)
            if issuer and issuer != dist and issuer not in self.ledger.accounts:
                self.ledger.create_account(issuer, ISSUER_XLM)
        self.ledger.create_account(dist, DISTRIBUTION_XLM)
        for asset_id in self.credit_assets():
            if asset_issuer(asset_id) != dist:
                self.ledger.add_trustline(dist, asset_id, balance=DISTRIBUTION_CREDIT)

    # --- developer actions ---------------------------------------------------------------------

    def create_account(self, xlm: Decimal = Decimal(100), trust: tuple[str, ...] = ()) -> Keypair:
        """A new funded account (created directly, not by a transaction) with trustlines."""
        keypair = Keypair.random()
        self.ledger.create_account(keypair.public_key, xlm)
        for asset_id in trust:
            self.ledger.add_trustline(keypair.public_key, asset_id)
        self.ledger.remember_key(keypair.public_key, keypair.secret)
        return keypair

    async def pay(self, request: PaymentRequest, wait: bool = True) -> SubmitAnswer | Queued:
        """Sign the payment with the payer's next sequence number and submit it like any
        envelope: waiting for its ledger (Horizon's POST /transactions), or only queued."""
        payer = request.source.public_key
        account = self.ledger.accounts.get(payer)
        if account is None:
            return Rejected(None, "", "tx_no_source_account")
        ahead = sum(1 for pending in self.ledger.queue if pending.source == payer)
        now = int(self.ledger.clock().timestamp())
        # No await between reading the sequence number and queueing: two payments from one
        # payer cannot take the same number.
        xdr = sign_payment(request, account.sequence + ahead, self.network_passphrase, now)
        if wait:
            return await self.submit(xdr)
        outcome = self.ledger.submit(xdr)
        return (
            Rejected(outcome.hash, xdr, "tx_bad_seq") if isinstance(outcome, TxRecord) else outcome
        )

    def count(self, route: str, key: str = "") -> None:
        self.counters[route][key] += 1

    def stats(self) -> dict[str, object]:
        return {
            "ledger": self.ledger.latest.sequence,
            "queued": len(self.ledger.queue),
            "accounts": len(self.ledger.accounts),
            "transactions": len(self.ledger.transactions),
            "counters": {route: dict(c) for route, c in self.counters.items()},
            "faults": self.faults.describe(),
        }

    # --- submissions ---------------------------------------------------------------------------

    async def submit(self, envelope_xdr: str, timeout_s: float | None = None) -> SubmitAnswer:
        """Horizon's synchronous submission: wait for the ledger that applies the envelope.
        A tx-level refusal answers at once; an applied hash answers with its stored record."""
        if self.faults.take_drop():
            log.info("sandbox: fault: dropped a submission before the ledger saw it")
            return TimedOut(None)
        outcome = self.ledger.submit(envelope_xdr)
        if not isinstance(outcome, Queued):
            return outcome
        waiter = self._waiters.get(outcome.hash)
        if waiter is None:  # first submission of this hash: it is new in the queue
            waiter = self._waiters[outcome.hash] = asyncio.get_running_loop().create_future()
            delay = self.faults.take_delay()
            if delay:
                self.ledger.hold(outcome.hash, delay)
        wait = self.submit_timeout_s if timeout_s is None else timeout_s
        try:
            # shield: one caller timing out must not cancel the answer others wait for
            return await asyncio.wait_for(asyncio.shield(waiter), wait)
        except TimeoutError:
            return TimedOut(outcome.hash)  # still queued: it may apply later, like on Horizon

    def submit_async(self, envelope_xdr: str) -> tuple[str, Rejected | Queued | TxRecord]:
        """stellar-core's verdict without waiting for a ledger: PENDING (queued now),
        DUPLICATE (already queued) or ERROR (refused; an applied hash has used its sequence
        number, so core answers tx_bad_seq for it)."""
        before = len(self.ledger.queue)
        outcome = self.ledger.submit(envelope_xdr)
        if isinstance(outcome, Queued):
            return ("PENDING" if len(self.ledger.queue) > before else "DUPLICATE"), outcome
        if isinstance(outcome, TxRecord):
            return "ERROR", Rejected(outcome.hash, envelope_xdr, "tx_bad_seq")
        return "ERROR", outcome

    async def close_ledger(self) -> LedgerHeader:
        """Close a ledger now and answer the submissions it decided."""
        closed = self.ledger.close()
        for tx_hash, outcome in closed.outcomes.items():
            waiter = self._waiters.pop(tx_hash, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(outcome)
        applied = sum(1 for o in closed.outcomes.values() if isinstance(o, TxRecord))
        if closed.outcomes:
            log.info(
                "sandbox: ledger %d closed: %d applied, %d refused",
                closed.header.sequence,
                applied,
                len(closed.outcomes) - applied,
            )
        await asyncio.sleep(0)  # let the answered submissions run before the caller goes on
        return closed.header

    async def wait_queued(self, count: int = 1, timeout_s: float = 5.0) -> None:
        """Wait until `count` transactions are queued (tests: submit in a task, wait, close)."""
        async with asyncio.timeout(timeout_s):
            # The ledger is a plain synchronous object with no events to wait on: poll it.
            while len(self.ledger.queue) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.005)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        log.info(
            "sandbox: network %s at ledger %d (%s)",
            self.ledger.network_id[:12],
            self.ledger.latest.sequence,
            "new" if self.ledger.fresh else f"continued from {self.state}",
        )
        if self.ledger_close_s is not None and self._task is None:
            self._task = asyncio.create_task(self._close_every(self.ledger_close_s))

    def close_state(self) -> None:
        """Close the state file (a process that ends without it loses nothing: every change
        is committed as it happens)."""
        if self.ledger.store is not None:
            self.ledger.store.close()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for tx_hash, waiter in self._waiters.items():  # answer 504 rather than hang
            if not waiter.done():
                waiter.set_result(TimedOut(tx_hash))
        self._waiters.clear()

    async def _close_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.close_ledger()
            except Exception:  # one bad close must not stop the network
                log.exception("sandbox: closing a ledger failed")


__all__ = ["Sandbox", "SubmitAnswer", "TimedOut"]
