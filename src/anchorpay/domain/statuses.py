"""SEP-24 kinds and statuses (spec/rpc.md §5.1)."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"


class Status(StrEnum):
    INCOMPLETE = "incomplete"
    PENDING_USER_TRANSFER_START = "pending_user_transfer_start"
    PENDING_USER_TRANSFER_COMPLETE = "pending_user_transfer_complete"
    PENDING_EXTERNAL = "pending_external"
    PENDING_ANCHOR = "pending_anchor"
    ON_HOLD = "on_hold"
    PENDING_STELLAR = "pending_stellar"
    PENDING_TRUST = "pending_trust"
    PENDING_USER = "pending_user"
    PENDING_TRANSACTION_INFO_UPDATE = "pending_transaction_info_update"
    COMPLETED = "completed"
    REFUNDED = "refunded"
    EXPIRED = "expired"
    NO_MARKET = "no_market"
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"
    ERROR = "error"


# Final statuses set `completed_at`; error statuses require a message (spec §2.4, §5.1).
FINAL_STATUSES = frozenset({Status.COMPLETED, Status.REFUNDED})
ERROR_STATUSES = frozenset({Status.ERROR, Status.EXPIRED})
