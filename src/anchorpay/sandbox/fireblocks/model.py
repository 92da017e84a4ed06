"""The sandbox Fireblocks' values: the transaction record with its wire JSON, the statuses,
the API error (`{"message", "code"}`) and decimal rendering."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from anchorpay.adapters.fireblocks.models import FAILURES, SUCCESS

# The wire vocabulary is the client's (docs/fireblocks-wire.md): one list for both sides.
FINAL_STATUSES = FAILURES | {SUCCESS}


class ApiError(Exception):
    """An answer other than 2xx: HTTP `status` with `{"message": message, "code": code}`."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code}


def bad_request(message: str) -> ApiError:
    return ApiError(400, 1000, message)


def decimal_str(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros: "12.5", "100", "0"."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


@dataclass(slots=True)
class FbTransaction:
    """One Fireblocks transaction: an outgoing transfer or an incoming payment to the vault."""

    id: str
    number: int  # creation order, breaks ties between equal createdAt
    asset_id: str  # Fireblocks asset id
    amount: Decimal
    source: dict[str, str]
    destination: dict[str, str]
    source_address: str
    destination_address: str
    destination_tag: str
    created_at: int  # ms
    last_updated: int  # ms
    status: str = "SUBMITTED"
    sub_status: str = ""
    external_tx_id: str | None = None
    tx_hash: str = ""
    note: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        amount = decimal_str(self.amount)
        return {
            "id": self.id,
            "externalTxId": self.external_tx_id,
            "status": self.status,
            "subStatus": self.sub_status,
            "txHash": self.tx_hash,
            "operation": "TRANSFER",
            "assetId": self.asset_id,
            # Fireblocks' deprecated top-level amounts are JSON numbers (its SDKs parse them as
            # such); the exact decimal strings are in amountInfo, which clients read.
            "amount": float(self.amount),
            "requestedAmount": float(self.amount),
            "netAmount": float(self.amount),
            "amountInfo": {"amount": amount, "requestedAmount": amount, "netAmount": amount},
            "source": dict(self.source),
            "destination": dict(self.destination),
            "sourceAddress": self.source_address,
            "destinationAddress": self.destination_address,
            "destinationTag": self.destination_tag,
            "createdAt": self.created_at,
            "lastUpdated": self.last_updated,
            "note": self.note,
        }
