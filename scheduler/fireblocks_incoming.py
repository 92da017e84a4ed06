"""Incoming Fireblocks transfers credited to withdrawals (DEPOSIT_INFO_GENERATOR=custody).

With custody deposit addresses the user pays the Fireblocks vault, with the tag anchorpay
got from Fireblocks as the memo. Fireblocks is then the authority on what arrived: a
COMPLETED incoming transfer to the vault is matched to the withdrawal by (address, tag),
with the same rules and messages as the payment observer (`PaymentObserver.decide`), and
`notify_onchain_funds_received` is applied with its Stellar hash and amount.

Two roads lead here and both may carry the same transfer at once:
- a webhook names the transfer; anchorpay fetches it from Fireblocks and handles it;
- the poll (every OBSERVER_INTERVAL_S while a withdrawal waits for its funds) lists the
  vault's transfers by creation time from a stored cursor.
The decision is recorded in `fireblocks_incoming` (keyed by the Fireblocks id) in the same
database transaction as the credit, so a transfer takes effect exactly once. The cursor only
passes incoming transfers that are final (or older than BLOCK_MAX_S, left to their webhook),
so one still CONFIRMING is listed again until it completes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.fireblocks.client import FireblocksClient
from anchorpay.adapters.fireblocks.config import FireblocksConfig
from anchorpay.adapters.fireblocks.models import FAILURES, SUCCESS, FbTransaction
from anchorpay.adapters.ledger import ObservedPayment
from anchorpay.domain.errors import INTERNAL_ERROR, RpcError
from anchorpay.scheduler.observer import (
    FIRST_RUN_DELAY_S,
    METHOD,
    Apply,
    Credit,
    Finish,
    PaymentObserver,
    Unmatched,
)
from anchorpay.scheduler.singleton import add_periodic_job
from anchorpay.services import JobServices
from anchorpay.settings import ConfigError
from anchorpay.store import fireblocks as fb_store
from anchorpay.store import observer as observer_store

log = logging.getLogger("anchorpay.fireblocks")

JOB_ID = "fireblocks_incoming"
PAGE_LIMIT = 200
MAX_PAGES = 20  # per run
FIRST_LOOKBACK = timedelta(days=1)  # where a vault never polled before starts
BLOCK_MAX_S = 3600.0  # an incoming transfer not final after this no longer holds the cursor


class _AlreadyRecorded(Exception):
    """Another worker (or the other road) decided on this transfer first: roll back."""


class IncomingTransfers:
    def __init__(
        self,
        services: JobServices,
        config: FireblocksConfig,
        client: FireblocksClient,
        apply: Apply | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.services = services
        self.config = config
        self.client = client
        self.clock = clock or (lambda: datetime.now(UTC))
        self._observer = PaymentObserver(services, apply, clock=self.clock)
        self.cursor_key = f"fireblocks:{config.vault_account_id}"

    def is_incoming(self, fb: FbTransaction) -> bool:
        return (
            fb.destination_type == "VAULT_ACCOUNT"
            and fb.destination_id == self.config.vault_account_id
            and not (fb.source_type == "VAULT_ACCOUNT" and fb.source_id == fb.destination_id)
        )

    async def handle(self, fb: FbTransaction) -> str | None:
        """Decide on one transfer: returns "credited", an unmatched reason, "seen" (decided
        before) or None (not an incoming transfer, or not COMPLETED yet)."""
        if not self.is_incoming(fb) or fb.status != SUCCESS:
            return None
        async with self.services.sessions() as session:
            if await fb_store.incoming_seen(session, fb.id):
                return "seen"
            payment = self.as_payment(fb)
            decision = await self._observer.decide(session, fb.destination_address, payment)
        if decision is None:  # an asset anchorpay does not map: nothing to credit
            decision = Unmatched("wrong_asset", f"Fireblocks asset {fb.asset_id} is not mapped")
        if isinstance(decision, Credit):
            try:
                await self._observer.apply(decision.params, self._record(fb, decision))
            except _AlreadyRecorded:
                return "seen"
            except RpcError as exc:
                if exc.code == INTERNAL_ERROR:
                    raise  # transient (the ledger lookup): the next poll or webhook retries
                decision = Unmatched(
                    "rejected", f"{METHOD} was refused: {exc.message}", decision.transaction_id
                )
            else:
                log.info(
                    "fireblocks: incoming %s (tx %s) credited to withdrawal %s",
                    fb.id,
                    fb.tx_hash,
                    decision.transaction_id,
                )
                return "credited"
        try:
            async with self.services.sessions() as session, session.begin():
                await self._record(fb, decision)(session)
                await observer_store.record_unmatched(
                    session,
                    payment,
                    fb.destination_address,
                    decision.reason,
                    decision.detail,
                    self.clock(),
                    decision.transaction_id,
                )
        except _AlreadyRecorded:
            return "seen"
        log.warning(
            "fireblocks: unmatched incoming %s (tx %s) of %s %s tag %r: %s",
            fb.id,
            fb.tx_hash,
            payment.amount,
            payment.asset,
            payment.memo,
            decision.detail,
        )
        return decision.reason

    def _record(self, fb: FbTransaction, decision: Credit | Unmatched) -> Finish:
        outcome = "credited" if isinstance(decision, Credit) else decision.reason

        async def record(session: AsyncSession) -> None:
            if not await fb_store.record_incoming(
                session, fb.id, fb.tx_hash, outcome, decision.transaction_id, self.clock()
            ):
                raise _AlreadyRecorded(fb.id)

        return record

    def as_payment(self, fb: FbTransaction) -> ObservedPayment:
        """The transfer in the observer's terms (its memo is the deposit tag)."""
        tag = fb.destination_tag.strip()
        return ObservedPayment(
            id=f"fireblocks:{fb.id}",
            paging_token=str(fb.created_at_ms),
            transaction_hash=fb.tx_hash,
            type="payment",
            source_account=fb.source_address,
            destination_account=fb.destination_address,
            asset=self.config.stellar_asset(fb.asset_id) or f"fireblocks:{fb.asset_id}",
            amount=format(fb.amount, "f") if fb.amount is not None else "0",
            memo=tag or None,
            memo_type=("id" if tag.isdigit() else "text") if tag else "none",
            successful=True,
            created_at=datetime.fromtimestamp(fb.created_at_ms / 1000, UTC),
        )

    # --- the poll ------------------------------------------------------------------------

    async def poll(self) -> int:
        """List the vault's transfers from the cursor and handle the incoming ones. Returns
        how many were handled (credited or recorded unmatched)."""
        handled = 0
        for _ in range(MAX_PAGES):
            async with self.services.sessions() as session:
                cursor = await observer_store.get_cursor(session, self.cursor_key)
            after = int(cursor) if cursor else self._first_after()
            page = await self.client.list_transactions(after_ms=after, limit=PAGE_LIMIT)
            new_cursor = after
            for fb in page:
                if not self.is_incoming(fb):
                    new_cursor = max(new_cursor, fb.created_at_ms)
                    continue
                if fb.status == SUCCESS:
                    outcome = await self.handle(fb)
                    handled += outcome not in (None, "seen")
                elif fb.status not in FAILURES and self._holds_cursor(fb):
                    break  # listed again next time, until it is final
                new_cursor = max(new_cursor, fb.created_at_ms)
            if new_cursor != after:
                async with self.services.sessions() as session, session.begin():
                    moved = await observer_store.claim_page(
                        session, self.cursor_key, cursor, str(new_cursor), len(page), self.clock()
                    )
                if not moved:
                    return handled  # another worker polls: it goes on from its cursor
            if len(page) < PAGE_LIMIT or new_cursor == after:
                return handled
        return handled

    def _first_after(self) -> int:
        return int((self.clock() - FIRST_LOOKBACK).timestamp() * 1000)

    def _holds_cursor(self, fb: FbTransaction) -> bool:
        age_s = self.clock().timestamp() - fb.created_at_ms / 1000
        return age_s < BLOCK_MAX_S

    async def aclose(self) -> None:
        await self.client.aclose()

    async def run_once(self) -> None:
        """The job: only while a withdrawal waits for its funds; never raises."""
        try:
            async with self.services.sessions() as session:
                waiting = await observer_store.open_withdrawal_accounts(session)
            if waiting:
                await self.poll()
        except Exception as exc:
            log.warning("fireblocks: incoming poll failed (%s); retrying next run", exc)


def add_fireblocks_incoming_job(scheduler: Any, services: JobServices) -> IncomingTransfers | None:
    """Register the poll when custody deposit addresses are in use (Fireblocks)."""
    settings = services.settings
    if settings.effective_custody_type != "fireblocks":
        return None
    if settings.deposit_info_generator != "custody":
        return None
    from anchorpay.adapters.fireblocks import build_client

    config = services.fireblocks
    if config is None:
        raise ConfigError("CUSTODY_TYPE=fireblocks but its configuration was not loaded")
    incoming = IncomingTransfers(services, config, build_client(config))
    add_periodic_job(
        scheduler,
        services,
        JOB_ID,
        settings.observer_interval_s,
        incoming.run_once,
        first_run_delay_s=FIRST_RUN_DELAY_S,
    )
    return incoming
