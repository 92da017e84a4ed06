"""Auto-completion: a final payout moves its transaction through the same state machine as
the RPC, in the SAME database transaction as the payout's own final state.

- payment confirmed → `notify_onchain_funds_sent` (→ `completed`, `stellar_transactions`
  filled from the ledger by the workflow's lookup);
- refund confirmed → `notify_refund_sent` (→ `refunded`, or `pending_anchor` when partial);
- permanent failure → `notify_transaction_error` with the reason (→ `error`).

Because "payout confirmed" and "transaction completed" commit together, a crash between them
is impossible: either both happened, or the payout is still open and the next lookup finds
the same ledger outcome and tries again. If the business moved the transaction meanwhile
(the machine refuses), the payout still becomes final, with a note saying why the transaction
was not moved, and a warning is logged: nothing is paid twice, nothing is lost silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import workflow
from anchorpay.adapters.base import Confirmed
from anchorpay.domain.errors import INTERNAL_ERROR, RpcError
from anchorpay.domain.transaction import Transaction
from anchorpay.domain.transitions import TRUSTLINE_LOST
from anchorpay.scheduler.services import JobServices
from anchorpay.settings import Settings
from anchorpay.store import payouts as store
from anchorpay.store import transactions as tx_store
from anchorpay.store.tables import PayoutRow

if TYPE_CHECKING:
    from anchorpay.scheduler.payouts import PayoutProcessor

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
    ) -> Transaction: ...


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


class Completion:
    def __init__(
        self,
        services: JobServices,
        run_method: RunMethod | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.services = services
        self.run_method: RunMethod = run_method or workflow.run_method
        self.clock = clock or (lambda: datetime.now(UTC))

    async def _load(self, transaction_id: str) -> Transaction | None:
        async with self.services.sessions() as session:
            return await tx_store.get(session, transaction_id)

    async def confirm(self, proc: PayoutProcessor, row: PayoutRow, outcome: Confirmed) -> None:
        final: dict[str, Any] = {
            "state": store.CONFIRMED,
            "tx_hash": outcome.hash,
            "ledger": outcome.ledger,
            "next_attempt_at": None,
            "last_error": None,
        }
        tx = await self._load(row.transaction_id)
        if tx is None:
            await proc._save(row, release=True, **{**final, "last_error": "transaction not found"})
            return
        method, params = completion_call(row, outcome, tx, self.services.settings)
        await self._apply(proc, row, method, params, final, f"{row.purpose} confirmed")

    async def fail(self, proc: PayoutProcessor, row: PayoutRow, reason: str) -> None:
        final: dict[str, Any] = {
            "state": store.FAILED,
            "last_error": reason,
            "next_attempt_at": None,
        }
        params = {"transaction_id": row.transaction_id, "message": reason}
        await self._apply(proc, row, "notify_transaction_error", params, final, "failed")

    async def trustline_lost(self, proc: PayoutProcessor, row: PayoutRow, reason: str) -> None:
        """A deposit's destination dropped its trustline before anything was sent: the
        transaction goes back to `pending_trust` and the payout waits for the trustline
        poller, with a new window, in one database transaction."""
        final: dict[str, Any] = {
            "state": store.WAITING_TRUST,
            "next_attempt_at": None,  # the poller's now, not the dispatcher's
            "waiting_since": self.clock(),
            "last_error": reason,
        }
        params = {"transaction_id": row.transaction_id, "message": reason}
        await self._apply(proc, row, TRUSTLINE_LOST, params, final, "waiting for trust again")

    async def _apply(
        self,
        proc: PayoutProcessor,
        row: PayoutRow,
        method: str,
        params: dict[str, Any],
        final: dict[str, Any],
        what: str,
    ) -> None:
        now = self.clock()
        written: list[PayoutRow] = []

        async def finish(session: AsyncSession) -> None:
            written.append(await store.save(session, row, proc.owner, now, release=True, **final))

        try:
            await self.run_method(
                self.services, method, params, now=now, in_same_transaction=finish
            )
        except store.LeaseLost:
            raise
        except RpcError as exc:
            if exc.code == INTERNAL_ERROR:  # e.g. Horizon unreachable for the lookup: retry
                await proc._retry(
                    row, f"{method} could not be applied yet: {exc.message}", count=False
                )
                return
            await self._refused(proc, row, method, final, exc)
            return
        except Exception as exc:  # optimistic-lock race with the RPC, database busy...
            if type(exc).__name__ != "ConcurrentModification":
                log.exception("payout %s: %s failed", row.id, method)
            await proc._retry(row, f"{method} could not be applied yet: {exc}", count=False)
            return
        if written:
            from anchorpay.scheduler.payouts import log_change

            log_change(row, written[-1], f"{what}; {method} applied")

    async def _refused(
        self,
        proc: PayoutProcessor,
        row: PayoutRow,
        method: str,
        final: dict[str, Any],
        exc: RpcError,
    ) -> None:
        tx = await self._load(row.transaction_id)
        status = tx.status.value if tx is not None else "unknown"
        if (
            final["state"] == store.CONFIRMED
            and tx is not None
            and final.get("tx_hash")
            in {tx.stellar_transaction_id}
            | {p.id for p in (tx.refunds.payments if tx.refunds else [])}
        ):
            note = None  # the business already recorded this very payment: nothing to add
        elif final["state"] == store.CONFIRMED:
            note = f"transaction was in status {status}; not completed automatically"
        else:
            note = f"{final['last_error']}; transaction was in status {status} and was not moved"
        log.warning(
            "payout %s (%s): %s was refused for transaction %s in status %s: %s",
            row.id,
            final["state"],
            method,
            row.transaction_id,
            status,
            exc.message,
        )
        await proc._save(row, release=True, **{**final, "last_error": note})
