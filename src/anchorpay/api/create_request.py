"""Validation of the `POST /transactions` body into a new SEP-24 transaction.

Every refusal is `CreateError` with one exact sentence naming the field; the route answers it
as HTTP 400 `{"error": "<sentence>"}` and stores nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from stellar_sdk import StrKey

from anchorpay.domain.amounts import parse_decimal, stellar_amount_problem
from anchorpay.domain.assets import Asset, AssetList
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction

FIELDS = frozenset(
    {
        "sep",
        "kind",
        "amount_expected",
        "destination_account",
        "source_account",
        "memo",
        "memo_type",
        "refund_memo",
        "refund_memo_type",
        "client_domain",
        "client_name",
        "id",
    }
)
MEMO_TYPES = ("text", "id", "hash")
MAX_TEXT_MEMO_BYTES = 28
MAX_UINT64 = 2**64 - 1
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_AMOUNT = re.compile(r"\d+(\.\d+)?")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
MAX_TEXT_FIELD = 255


class CreateError(Exception):
    """A refused create request: the message is the exact reason."""


@dataclass(frozen=True, slots=True)
class CreateRequest:
    transaction: Transaction
    fingerprint: str  # the same body always gives the same fingerprint
    client_chose_id: bool


def fingerprint(body: dict[str, Any]) -> str:
    """A hash of the body without its id: a repeated create is the same iff this matches."""
    canonical = {k: v for k, v in body.items() if k != "id"}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise CreateError(f"{name} must be a non-empty string")
    if len(value) > MAX_TEXT_FIELD:
        raise CreateError(f"{name} must be at most {MAX_TEXT_FIELD} characters")
    return value


def _account(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not StrKey.is_valid_ed25519_public_key(value):
        raise CreateError(f"{name} must be a valid Stellar account id (G...)")
    return value


def memo_problem(memo: str, memo_type: str) -> str | None:
    """Why `memo` is not a valid memo of `memo_type`, or None when it is."""
    if memo_type == "text":
        if len(memo.encode()) > MAX_TEXT_MEMO_BYTES:
            return f"a text memo must be at most {MAX_TEXT_MEMO_BYTES} bytes"
        return None
    if memo_type == "id":
        if not memo.isdigit() or not memo.isascii() or int(memo) > MAX_UINT64:
            return f"an id memo must be an integer from 0 to {MAX_UINT64}"
        return None
    if _HEX64.fullmatch(memo):
        return None
    try:
        raw = base64.b64decode(memo, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        return "a hash memo must be 32 bytes, base64 or hex encoded"
    return None


def _memo(body: dict[str, Any], memo_name: str, type_name: str) -> tuple[str | None, str | None]:
    memo, memo_type = body.get(memo_name), body.get(type_name)
    if memo is None and memo_type is None:
        return None, None
    if memo is None or memo_type is None:
        raise CreateError(f"{memo_name} and {type_name} must be given together")
    if memo_type not in MEMO_TYPES:
        raise CreateError(f"{type_name} must be one of {', '.join(MEMO_TYPES)}")
    if not isinstance(memo, str) or not memo:
        raise CreateError(f"{memo_name} must be a non-empty string")
    problem = memo_problem(memo, memo_type)
    if problem is not None:
        raise CreateError(f"{memo_name} is invalid: {problem}")
    return memo, memo_type


def _amount(value: Any, asset: Asset) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        number = Decimal(value)
        # Expanded only within parse_decimal's bounds: 1e999999999 must not become a gigabyte
        # string; left in scientific notation, it is refused below as not a decimal string.
        text = format(number, "f") if parse_decimal(str(number)) is not None else str(number)
    elif isinstance(value, str):
        text = value
    else:
        raise CreateError('amount_expected.amount must be a decimal string such as "10.5"')
    if not _AMOUNT.fullmatch(text):
        raise CreateError('amount_expected.amount must be a decimal string such as "10.5"')
    if Decimal(text) <= 0:
        raise CreateError("amount_expected.amount must be positive")
    decimals = len(text.partition(".")[2])
    if asset.significant_decimals is not None and decimals > asset.significant_decimals:
        raise CreateError(
            f"amount_expected.amount has {decimals} decimals; "
            f"{asset.id} allows at most {asset.significant_decimals}"
        )
    problem = stellar_amount_problem("amount_expected", Decimal(text))  # a Stellar asset here
    if problem is not None:
        raise CreateError(problem)
    return text


def _asset(body: dict[str, Any], kind: Kind, assets: AssetList) -> tuple[Asset, str | None]:
    expected = body.get("amount_expected")
    if expected is None:
        raise CreateError("amount_expected is required")
    if not isinstance(expected, dict):
        raise CreateError("amount_expected must be an object with asset and optional amount")
    unknown = sorted(set(expected) - {"asset", "amount"})
    if unknown:
        raise CreateError(f"amount_expected has an unknown field: {unknown[0]}")
    asset_id = expected.get("asset")
    if not isinstance(asset_id, str) or not asset_id:
        raise CreateError("amount_expected.asset is required")
    asset = assets.get(asset_id)
    if asset is None:
        raise CreateError(f"amount_expected.asset {asset_id} is not a configured asset")
    if not asset.is_stellar:
        raise CreateError(f"amount_expected.asset {asset_id} must be a Stellar asset (stellar:…)")
    enabled = asset.deposit_enabled if kind is Kind.DEPOSIT else asset.withdraw_enabled
    if not enabled:
        raise CreateError(f"asset {asset_id} is not enabled for {kind.value}")
    return asset, _amount(expected.get("amount"), asset)


def parse_create(body: Any, assets: AssetList, *, new_id: str, now: datetime) -> CreateRequest:
    """The transaction to insert for this body, or CreateError."""
    if not isinstance(body, dict):
        raise CreateError("request body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise CreateError(f"unknown field: {unknown[0]}")
    sep = body.get("sep", "24")
    if sep not in ("24", 24):
        raise CreateError('sep must be "24": anchorpay creates SEP-24 transactions')
    kind_value = body.get("kind")
    if kind_value not in ("deposit", "withdrawal"):
        raise CreateError("kind must be deposit or withdrawal")
    kind = Kind(kind_value)
    client_id = body.get("id")
    if client_id is not None and (not isinstance(client_id, str) or not _ID.fullmatch(client_id)):
        raise CreateError("id must be 1 to 64 characters: letters, digits, '.', '_', ':' or '-'")
    asset, amount = _asset(body, kind, assets)
    destination = _account(body, "destination_account")
    source = _account(body, "source_account")
    memo, memo_type = _memo(body, "memo", "memo_type")
    refund_memo, refund_memo_type = _memo(body, "refund_memo", "refund_memo_type")
    to_account: str | None
    user_account: str | None
    if kind is Kind.DEPOSIT:
        if destination is None:
            raise CreateError("destination_account is required for a deposit")
        to_account, user_account = destination, destination
    else:
        if destination is not None:
            raise CreateError(
                "destination_account must not be set for a withdrawal: "
                "the user pays the asset's distribution account"
            )
        if memo is not None:
            raise CreateError(
                "memo and memo_type apply to deposits; a withdrawal's memo is set by "
                "request_onchain_funds"
            )
        to_account, user_account = asset.distribution_account, source
    tx = Transaction(
        id=client_id or new_id,
        kind=kind,
        status=Status.INCOMPLETE,
        started_at=now,
        requested_asset=asset.id,
        amount_expected=amount,
        from_account=source,
        to_account=to_account,
        memo=memo,
        memo_type=memo_type,
        refund_memo=refund_memo,
        refund_memo_type=refund_memo_type,
        client_domain=_optional_text(body, "client_domain"),
        client_name=_optional_text(body, "client_name"),
        sep10_account=user_account,
    )
    return CreateRequest(tx, fingerprint(body), client_id is not None)
