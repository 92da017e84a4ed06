"""Auto-completion: a final payout moves its transaction through the same state machine as
the RPC, in the SAME database transaction as the payout's own final state.

- payment confirmed → `notify_onchain_funds_sent` (→ `completed`, `stellar_transactions`
  filled from the ledger by the workflow's lookup);
- refund confirmed → `notify_refund_sent` (→ `refunded`, or `pending_anchor` when partial);
- permanent failure → `notify_transaction_error` with the reason (→ `error`).

Because "payout confirmed" and "transaction completed" commit together, a crash between them
is impossible: either both happened, or the payout is still open and the next lookup finds
the same ledger outcome and tries again.

If the business moved the transaction meanwhile (the machine refuses the move), a confirmed
payout is still recorded on its transaction (`refunds.payments` under its hash, or
`stellar_transactions`), without a status change, in the same database transaction as the
payout's final state (`workflow.record_settled_payout`): money that reached the ledger always
counts, so a later `do_stellar_refund` or `do_stellar_payment` cannot pay it again. A refused
failure leaves the transaction where the business put it, with a note on the payout.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Unpack

from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import workflow
from anchorpay.adapters.custody import Confirmed
from anchorpay.domain.errors import InternalError, RpcError
from anchorpay.domain.payout_states import PayoutMove
from anchorpay.domain.settlement import SettledPayout
from anchorpay.domain.statuses import Status
from anchorpay.domain.transaction import StellarTransaction, Transaction
from anchorpay.domain.transitions import TRUSTLINE_LOST
from anchorpay.metrics import Metrics
from anchorpay.scheduler.payout_log import log_change
from anchorpay.services import JobServices
from anchorpay.settings import Settings
from anchorpay.store import payouts as store
from anchorpay.store import transactions as tx_store
from anchorpay.store.tables import PayoutRow
from anchorpay.store.transactions import ConcurrentModification

log = logging.getLogger("anchorpay.payouts")

InSameTransaction = workflow.InSameTransaction


class RunMethod(Protocol):
    async def __call__(
        self,
        services: Any,
        method: str,
        params: dict[str, Any],
        *,
        now: datetime | None = None,
        in_same_transaction: InSameTransaction | None = None,
        settling: str | None = None,
        known: StellarTransaction | None = None,
    ) -> Transaction: ...


class RecordSettled(Protocol):
    async def __call__(
        self,
        services: Any,
        settled: SettledPayout,
        *,
        now: datetime,
        in_same_transaction: InSameTransaction,
    ) -> Transaction: ...


class Holder(Protocol):
    """What the completion needs of the processor holding the payout's lease."""

    owner: str
    metrics: Metrics

    async def save(
        self,
        row: PayoutRow,
        move: PayoutMove,
        *,
        release: bool = False,
        note: str = "",
        **changes: Unpack[store.PayoutChanges],
    ) -> PayoutRow: ...

    async def retry(
        self, row: PayoutRow, error: str, *, count: bool = True, kind: str = "custody"
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Final:
    """The payout's own write that commits with the transaction's change."""

    move: PayoutMove
    changes: store.PayoutChanges

    def noted(self, note: str) -> store.PayoutChanges:
        """The changes with `note` as the payout's last_error."""
        changes = self.changes.copy()
        changes["last_error"] = note
        return changes


def completion_call(
    row: PayoutRow, outcome: Confirmed, tx: Transaction, settings: Settings
) -> tuple[str, dict[str, Any]]:
    """The RPC the worker applies for a confirmed payout (spec/custody.md §2.5, §3.4, with
    the fee in the transaction's fee asset: the reference's Q13 bug is not repeated)."""
    if row.purpose == "refund":
        in_asset = tx.amount_in_asset or row.asset
        return "notify_refund_sent", {
            "transaction_id": row.transaction_id,
            "refund": {
                "id": outcome.hash,
                "amount": {"amount": row.amount, "asset": in_asset},
                "amount_fee": {
                    "amount": row.refund_fee or "0",
                    "asset": tx.amount_fee_asset or in_asset,
                },
            },
            "message": settings.refund_sent_message,
        }
    return "notify_onchain_funds_sent", {
        "transaction_id": row.transaction_id,
        "stellar_transaction_id": outcome.hash,
        "message": settings.outgoing_payment_sent_message,
    }


def internal_error_text(method: str) -> str:
    """What a payout records for an unexpected failure: never an exception's name or text
    (the log line carrying the reference has those)."""
    reference = uuid.uuid4().hex[:12]
    log.error("payout completion %s failed unexpectedly (reference %s)", method, reference)
    return f"{method} could not be applied yet (internal error, reference {reference})"


class Completion:
    def __init__(
        self,
        services: JobServices,
        run_method: RunMethod | None = None,
        clock: Callable[[], datetime] | None = None,
        record_settled: RecordSettled | None = None,
    ) -> None:
        self.services = services
        self.run_method: RunMethod = run_method or workflow.run_method
        self.record_settled: RecordSettled = record_settled or workflow.record_settled_payout
        self.clock = clock or services.clock.now

    async def _load(self, transaction_id: str) -> Transaction | None:
        async with self.services.sessions() as session:
            return await tx_store.get(session, transaction_id)

    async def confirm(self, proc: Holder, row: PayoutRow, outcome: Confirmed) -> None:
        final = Final(
            PayoutMove.CONFIRM,
            {
                "tx_hash": outcome.hash,
                "ledger": outcome.ledger,
                "next_attempt_at": None,
                "last_error": None,
            },
        )
        tx = await self._load(row.transaction_id)
        if tx is None:
            await proc.save(
                row,
                final.move,
                release=True,
                **final.noted("transaction not found"),
            )
            return
        method, params = completion_call(row, outcome, tx, self.services.settings)
        refused = await self._apply(
            proc, row, method, params, final, f"{row.purpose} confirmed", known=outcome.record
        )
        if refused is None:
            return
        # The money is on the ledger: record it on the transaction whatever its status.
        settled = SettledPayout(
            payout_id=row.id,
            transaction_id=row.transaction_id,
            purpose=row.purpose,
            hash=outcome.hash,
            amount=row.amount,
            fee=row.refund_fee,
            record=outcome.record,
        )
        status = refused.status.value if refused.status is not None else "unknown"
        note = f"transaction was in status {status}; recorded on it, status not changed"
        written: list[PayoutRow] = []
        now = self.clock()

        async def finish(session: AsyncSession) -> None:
            new = await store.save(
                session, row, proc.owner, now, final.move, release=True, **final.noted(note)
            )
            written.append(new)

        try:
            await self.record_settled(self.services, settled, now=now, in_same_transaction=finish)
        except store.LeaseLost:
            raise
        except RpcError as exc:  # the ledger could not be read yet; the payout stays open
            await proc.retry(
                row,
                f"recording the confirmed {row.purpose}: {exc.message}",
                count=False,
                kind="completion",
            )
            return
        except ConcurrentModification:
            await proc.retry(
                row, "the transaction changed meanwhile; retrying", count=False, kind="completion"
            )
            return
        if written:
            log.warning(
                "payout %s confirmed while transaction %s was %s: %s refused (%s); recorded "
                "on the transaction without a status change",
                row.id,
                row.transaction_id,
                status,
                method,
                refused.message,
            )
            log_change(row, written[-1], "confirmed; recorded without status change", proc.metrics)

    async def fail(self, proc: Holder, row: PayoutRow, reason: str) -> None:
        final = Final(PayoutMove.FAIL, {"last_error": reason, "next_attempt_at": None})
        params = {"transaction_id": row.transaction_id, "message": reason}
        refused = await self._apply(proc, row, "notify_transaction_error", params, final, "failed")
        if refused is not None:
            status = refused.status.value if refused.status is not None else "unknown"
            note = f"{reason}; transaction was in status {status} and was not moved"
            await self._fail_unmoved(proc, row, final, note, reason)

    async def _fail_unmoved(
        self, proc: Holder, row: PayoutRow, final: Final, note: str, reason: str
    ) -> None:
        """The payout's failure with the `payout_failed` event (the business learns of it
        though its transaction does not change), in one database transaction. If that cannot
        be written (the transaction changed meanwhile, the database is busy), the payout's
        failure is saved alone, as before events existed: the payout comes first."""
        now = self.clock()
        changes = final.noted(note)
        written: list[PayoutRow] = []

        async def finish(session: AsyncSession) -> None:
            new = await store.save(
                session, row, proc.owner, now, final.move, release=True, **changes
            )
            written.append(new)

        detail = {"id": row.id, "purpose": row.purpose, "state": "failed", "error": reason}
        try:
            await workflow.record_payout_failure(
                self.services.sessions,
                row.transaction_id,
                detail,
                now=now,
                in_same_transaction=finish,
            )
        except store.LeaseLost:
            raise
        except Exception as exc:
            log.warning("payout %s: payout_failed event not written (%s)", row.id, exc)
            await proc.save(row, final.move, release=True, **changes)
            return
        if written:
            log_change(row, written[-1], "payout_failed event written")

    async def trustline_lost(self, proc: Holder, row: PayoutRow, reason: str) -> None:
        """A deposit's destination dropped its trustline before anything was sent: the
        transaction goes back to `pending_trust` and the payout waits for the trustline
        poller, with a new window, in one database transaction."""
        final = Final(
            PayoutMove.PARK,
            {
                "next_attempt_at": None,  # the poller's now, not the dispatcher's
                "waiting_since": self.clock(),
                "last_error": reason,
            },
        )
        params = {"transaction_id": row.transaction_id, "message": reason}
        refused = await self._apply(
            proc, row, TRUSTLINE_LOST, params, final, "waiting for trust again"
        )
        if refused is not None:  # the business moved it: nothing was sent, close the payout
            status = refused.status.value if refused.status is not None else "unknown"
            await proc.save(
                row,
                PayoutMove.CANCEL,
                release=True,
                next_attempt_at=None,
                last_error=f"{reason}; transaction was in status {status}; payout cancelled",
            )

    async def _apply(
        self,
        proc: Holder,
        row: PayoutRow,
        method: str,
        params: dict[str, Any],
        final: Final,
        what: str,
        *,
        known: StellarTransaction | None = None,
    ) -> Refusal | None:
        """Apply `method` with the payout's final write in the same database transaction.
        Returns the refusal when the state machine said no (nothing written then); None when
        it was applied, or when it could not be tried yet (the payout was rescheduled)."""
        now = self.clock()
        written: list[PayoutRow] = []

        async def finish(session: AsyncSession) -> None:
            new = await store.save(
                session, row, proc.owner, now, final.move, release=True, **final.changes
            )
            written.append(new)

        try:
            await self.run_method(
                self.services,
                method,
                params,
                now=now,
                in_same_transaction=finish,
                settling=row.id,
                known=known,
            )
        except store.LeaseLost:
            raise
        except InternalError as exc:  # transient (the ledger, a lost race): retried
            await proc.retry(
                row,
                f"{method} could not be applied yet: {exc.message}",
                count=False,
                kind="completion",
            )
            return None
        except RpcError as exc:  # the state machine said no
            tx = await self._load(row.transaction_id)
            log.info(
                "payout %s: %s refused for transaction %s: %s",
                row.id,
                method,
                row.transaction_id,
                exc.message,
            )
            return Refusal(tx.status if tx is not None else None, exc.message)
        except ConcurrentModification:  # a race with the RPC: the next look tries again
            await proc.retry(
                row,
                f"{method} could not be applied yet: the transaction changed meanwhile",
                count=False,
                kind="completion",
            )
            return None
        except Exception:  # the database is busy, or a bug: retried, the log has the detail
            log.exception("payout %s: %s failed", row.id, method)
            await proc.retry(row, internal_error_text(method), count=False, kind="internal")
            return None
        if written:
            log_change(row, written[-1], f"{what}; {method} applied", proc.metrics)
        return None


@dataclass(frozen=True, slots=True)
class Refusal:
    status: Status | None  # the transaction's when the machine refused; None if it vanished
    message: str
