"""Reading a create-transfer body (POST /v1/transactions) and the Stellar memo its tag becomes.
Every refusal is a 400 `code 1000` whose message names the field."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from stellar_sdk import IdMemo, Memo, NoneMemo, StrKey, TextMemo

from anchorpay.sandbox.fireblocks.model import ApiError, bad_request
from anchorpay.sandbox.state import MAX_AMOUNT

MAX_MEMO_TEXT_BYTES = 28
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class TransferRequest:
    asset_id: str  # Fireblocks asset id
    amount: Decimal
    address: str
    tag: str  # "" when there is no memo
    external_tx_id: str | None
    note: str


def is_memo_id(tag: str) -> bool:
    """A canonical decimal (no leading zero, so nothing is lost) that fits uint64."""
    return tag.isascii() and tag.isdigit() and str(int(tag)) == tag and int(tag) <= UINT64_MAX


def tag_memo(tag: str) -> Memo:
    """The Stellar memo of a (checked) tag: none, an id, or a text."""
    if not tag:
        return NoneMemo()
    return IdMemo(int(tag)) if is_memo_id(tag) else TextMemo(tag)


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{field} must be a JSON object")
    return value


def _amount(value: Any) -> Decimal:
    message = "amount must be a positive decimal string with at most 7 decimals"
    if not isinstance(value, str):
        raise bad_request(message)
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise bad_request(message) from None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not isinstance(exponent, int) or exponent < -7:
        raise bad_request(message)
    if not Decimal(0) < amount <= MAX_AMOUNT:
        raise bad_request(message)
    return amount


def _tag(value: Any) -> str:
    field = "destination.oneTimeAddress.tag"
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"{field} must be a string")
    if not is_memo_id(value) and len(value.encode()) > MAX_MEMO_TEXT_BYTES:
        raise bad_request(
            f"{field} must be a memo id (a uint64) or a memo text of at most "
            f"{MAX_MEMO_TEXT_BYTES} bytes"
        )
    return value


def parse_transfer(body: Any, vault_id: str, asset_ids: Collection[str]) -> TransferRequest:
    """Check a create body; `asset_ids` are the Fireblocks asset ids the vault holds."""
    body = _object(body, "The request body")
    operation = body.get("operation", "TRANSFER")
    if operation != "TRANSFER":
        raise bad_request("operation must be TRANSFER")
    asset_id = body.get("assetId")
    if not isinstance(asset_id, str) or asset_id not in asset_ids:
        raise bad_request(f"assetId must be one of: {', '.join(sorted(asset_ids))}")
    amount = _amount(body.get("amount"))
    source = _object(body.get("source"), "source")
    if source.get("type") != "VAULT_ACCOUNT" or str(source.get("id")) != vault_id:
        raise bad_request(f'source must be {{"type": "VAULT_ACCOUNT", "id": "{vault_id}"}}')
    destination = _object(body.get("destination"), "destination")
    if destination.get("type") != "ONE_TIME_ADDRESS":
        raise bad_request("destination.type must be ONE_TIME_ADDRESS")
    one_time = _object(destination.get("oneTimeAddress"), "destination.oneTimeAddress")
    address = one_time.get("address")
    if not isinstance(address, str) or not StrKey.is_valid_ed25519_public_key(address):
        raise bad_request("destination.oneTimeAddress.address must be a Stellar account id (G…)")
    tag = _tag(one_time.get("tag"))
    external_tx_id = body.get("externalTxId")
    if external_tx_id is not None and (not isinstance(external_tx_id, str) or not external_tx_id):
        raise bad_request("externalTxId must be a non-empty string")
    note = body.get("note", "")
    if not isinstance(note, str):
        raise bad_request("note must be a string")
    return TransferRequest(asset_id, amount, address, tag, external_tx_id, note)


__all__ = ["ApiError", "TransferRequest", "parse_transfer", "tag_memo"]
