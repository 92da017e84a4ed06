"""Request bodies and queries of the REST routes (README, "Creating a transaction",
"Watching payouts"), shared by both clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anchorpay.client.calls import Money, money


def creation(
    *, kind: str, asset: str, amount: Money | None, **optional: str | None
) -> dict[str, Any]:
    expected: dict[str, Any] = {"asset": asset}
    if amount is not None:
        expected["amount"] = money(amount)
    body: dict[str, Any] = {"sep": "24", "kind": kind, "amount_expected": expected}
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def payouts_query(
    transaction_id: str | None, states: Sequence[str] | None, limit: int | None
) -> dict[str, str]:
    query: dict[str, str] = {}
    if transaction_id is not None:
        query["transaction_id"] = transaction_id
    if states:
        query["state"] = ",".join(states)
    if limit is not None:
        query["limit"] = str(limit)
    return query
