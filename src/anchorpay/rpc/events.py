"""A business event as the Anchor Platform shapes it (`AnchorEvent`): `{id, type, sep,
transaction}`, the transaction rendered exactly as `get_transaction` answers, from the copy
the event took when its change committed."""

from __future__ import annotations

from typing import Any

from anchorpay.domain.assets import AssetList
from anchorpay.rpc.result import instant, transaction_result
from anchorpay.store.event_tables import EventRow
from anchorpay.store.transactions import from_snapshot


def event_payload(row: EventRow, assets: AssetList) -> dict[str, Any]:
    tx = from_snapshot(row.transaction)
    payload: dict[str, Any] = {
        "id": row.id,
        "type": row.type,
        "sep": tx.sep,
        "transaction": transaction_result(tx, assets),
    }
    if row.detail is not None:  # payout_failed: which payout, and why
        payload["payout"] = row.detail
    return payload


def feed_entry(row: EventRow, assets: AssetList) -> dict[str, Any]:
    """The pull feed's record: the event, its order within its transaction, when it was
    written, and how its delivery to BUSINESS_CALLBACK_URL stands."""
    delivery: dict[str, Any] = {"state": row.state, "attempts": row.attempts}
    if row.last_error is not None:
        delivery["last_error"] = row.last_error
    if row.delivered_at is not None:
        delivery["delivered_at"] = instant(row.delivered_at)
    return {
        **event_payload(row, assets),
        "transaction_id": row.transaction_id,
        "sequence": row.seq,
        "created_at": instant(row.created_at),
        "delivery": delivery,
    }
