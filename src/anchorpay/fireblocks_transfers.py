"""Incoming Fireblocks transfers credited to withdrawals (DEPOSIT_INFO_GENERATOR=custody).

With custody deposit addresses the user pays the Fireblocks vault, with the tag anchorpay
got from Fireblocks as the memo. Fireblocks is then the authority on what arrived: a
COMPLETED incoming transfer to the vault is turned into a payment (its memo the tag) and
handed to the incoming-payments service (`anchorpay.incoming`), which matches it to the
withdrawal by (address, tag) with the same rules and messages as the payment observer.

Two roads lead here and both may carry the same transfer at once:
- a webhook names the transfer; anchorpay fetches it from Fireblocks and handles it;
- the poll (the worker's job, every OBSERVER_INTERVAL_S while a withdrawal waits for its
  funds) lists the vault's transfers by creation time from a stored cursor.
The decision is recorded in `fireblocks_incoming` (keyed by the Fireblocks id) in the same
database transaction as the credit, so a transfer takes effect exactly once. The cursor only
passes incoming transfers that are final (or older than BLOCK_MAX_S, left to their webhook),
so one still CONFIRMING is listed again until it completes.

Application level, not the scheduler's: the webhook endpoint (`api`) uses it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.fireblocks.client import FireblocksClient
from anchorpay.adapters.fireblocks.config import FireblocksConfig
from anchorpay.adapters.fireblocks.models import FAILURES, SUCCESS, FbTransaction
from anchorpay.domain.amounts import ledger_amount
from anchorpay.domain.payments import ObservedPayment
from anchorpay.incoming import Apply, Credit, Finish, IncomingPayments, Unmatched
from anchorpay.services import JobServices
from anchorpay.store import fireblocks as fb_store
from anchorpay.store import observer as observer_store

log = logging.getLogger("anchorpay.fireblocks")

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
        self.clock = clock or services.clock.now
        self.payments = IncomingPayments(services, apply)
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
        account = fb.destination_address
        payment = self.as_payment(fb)
        async with self.services.sessions() as session:
            if await fb_store.incoming_seen(session, fb.id):
                return "seen"
            decision = await self.payments.decide(session, account, payment)
        if decision is None:  # an asset anchorpay does not map: nothing to credit
            decision = Unmatched("wrong_asset", f"Fireblocks asset {fb.asset_id} is not mapped")
        try:
            if isinstance(decision, Credit):
                decision = await self.payments.credit(payment, decision, self._record(fb, decision))
                if isinstance(decision, Credit):
                    return "credited"
            async with self.services.sessions() as session, session.begin():
                await self._record(fb, decision)(session)
                await self.payments.record_unmatched(
                    session, account, payment, decision, self.clock()
                )
        except _AlreadyRecorded:
            return "seen"
        return decision.reason

    def _record(self, fb: FbTransaction, decision: Credit | Unmatched) -> Finish:
        """The `fireblocks_incoming` row, committed with the decision's effect; refused when
        the other road recorded the transfer first."""
        outcome = "credited" if isinstance(decision, Credit) else decision.reason

        async def record(session: AsyncSession) -> None:
            if not await fb_store.record_incoming(
                session, fb.id, fb.tx_hash, outcome, decision.transaction_id, self.clock()
            ):
                raise _AlreadyRecorded(fb.id)

        return record

    def as_payment(self, fb: FbTransaction) -> ObservedPayment:
        """The transfer as a payment to the vault's address (its memo is the deposit tag)."""
        tag = fb.destination_tag.strip()
        return ObservedPayment(
            id=f"fireblocks:{fb.id}",
            paging_token=str(fb.created_at_ms),
            transaction_hash=fb.tx_hash,
            type="payment",
            source_account=fb.source_address,
            destination_account=fb.destination_address,
            asset=self.config.stellar_asset(fb.asset_id) or f"fireblocks:{fb.asset_id}",
            # Horizon's notation, as the observer records the same payment read on the ledger
            amount=ledger_amount(fb.amount) if fb.amount is not None else "0",
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
        """The poll job: only while a withdrawal waits for its funds; never raises."""
        try:
            async with self.services.sessions() as session:
                waiting = await observer_store.open_withdrawal_accounts(session)
            if waiting:
                await self.poll()
        except Exception as exc:
            log.warning("fireblocks: incoming poll failed (%s); retrying next run", exc)
