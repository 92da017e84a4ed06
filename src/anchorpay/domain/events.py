"""Business event types (the Anchor Platform's names) and which one a change is.

`transaction_created`: the transaction was recorded. `transaction_error`: it entered
`error` (a payout that failed for good lands here: the worker applies
`notify_transaction_error`). `transaction_status_changed`: any other committed change,
with or without a new status (refunds, stellar_transactions, amounts), as the Anchor
Platform's RPC sends it after every update, so an existing AP business server parses it.
`payout_failed` (anchorpay's own): a payout failed for good while the business had moved
its transaction elsewhere, so the transaction itself did not change; the event carries the
transaction and the payout (`payout`: id, purpose, error).
"""

from __future__ import annotations

from enum import StrEnum

from anchorpay.domain.statuses import Status


class EventType(StrEnum):
    TRANSACTION_CREATED = "transaction_created"
    TRANSACTION_STATUS_CHANGED = "transaction_status_changed"
    TRANSACTION_ERROR = "transaction_error"
    PAYOUT_FAILED = "payout_failed"


def change_type(before: Status | None, after: Status) -> EventType:
    """The event a committed write from `before` (None: the insert) to `after` is."""
    if before is None:
        return EventType.TRANSACTION_CREATED
    if after is Status.ERROR and before is not Status.ERROR:
        return EventType.TRANSACTION_ERROR
    return EventType.TRANSACTION_STATUS_CHANGED
