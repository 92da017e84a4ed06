"""Decoding a method's raw JSON `params` into typed values (spec/rpc.md §1.8, §3).

Only the keys a method declares are read; any other key is ignored, like the reference's
Gson. Where the reference fails with a Java-internal -32603 (params not an object, a field
of the wrong JSON type, a malformed timestamp) we answer -32602 with a sentence naming the
field. Required-ness is not checked here: it belongs to validation, after the state check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from anchorpay.domain.amounts import DetailInput, FeeInput, number_to_string
from anchorpay.domain.errors import InvalidParams


@dataclass(frozen=True, slots=True)
class AmountInput:
    """`AmountRequest` {amount} or `AmountAssetRequest` {amount, asset}."""

    amount: str | None
    asset: str | None = None


@dataclass(frozen=True, slots=True)
class RefundInput:
    id: str | None
    amount: AmountInput | None
    amount_fee: AmountInput | None


@dataclass(frozen=True, slots=True)
class Params:
    message: str | None = None
    user_action_required_by: datetime | None = None
    amount_in: AmountInput | None = None
    amount_out: AmountInput | None = None
    amount_expected: AmountInput | None = None
    fee: FeeInput | None = None
    external_transaction_id: str | None = None
    funds_received_at: datetime | None = None
    funds_sent_at: datetime | None = None
    stellar_transaction_id: str | None = None
    destination_account: str | None = None
    memo: str | None = None
    memo_type: str | None = None
    refund: RefundInput | None = None
    success: bool = False


# The keys each method reads besides transaction_id and message (spec §3). "amount_in" and
# "amount_out" are AmountAssetRequest where ASSET_AMOUNTS says so, else AmountRequest.
_AMOUNTS = ("amount_in", "amount_out", "fee", "amount_expected", "user_action_required_by")
FIELDS: dict[str, tuple[str, ...]] = {
    "trustline_lost": (),  # internal: message only
    "notify_interactive_flow_completed": _AMOUNTS,
    "request_offchain_funds": _AMOUNTS,
    "request_onchain_funds": (*_AMOUNTS, "destination_account", "memo", "memo_type"),
    "notify_offchain_funds_received": (
        "funds_received_at",
        "external_transaction_id",
        "amount_in",
        "amount_out",
        "fee",
    ),
    "notify_onchain_funds_received": ("stellar_transaction_id", "amount_in", "amount_out", "fee"),
    "notify_offchain_funds_sent": ("funds_sent_at", "external_transaction_id"),
    "notify_offchain_funds_pending": ("external_transaction_id", "user_action_required_by"),
    "notify_offchain_funds_available": ("external_transaction_id", "user_action_required_by"),
    "notify_onchain_funds_sent": ("stellar_transaction_id",),
    "notify_amounts_updated": ("amount_out", "fee"),
    "notify_refund_pending": ("refund",),
    "notify_refund_sent": ("refund",),
    "do_stellar_refund": ("refund",),
    "notify_transaction_error": (),
    "notify_transaction_expired": (),
    "notify_transaction_on_hold": ("user_action_required_by",),
    "notify_transaction_recovery": (),
    "request_trust": ("user_action_required_by",),
    "notify_trust_set": ("success",),
    "do_stellar_payment": (),
    "notify_customer_info_updated": (),
}
ASSET_AMOUNTS = frozenset(
    {"notify_interactive_flow_completed", "request_offchain_funds", "request_onchain_funds"}
)
# Methods whose refund carries an id (do_stellar_refund's has none: the hash comes later).
REFUND_IDS = frozenset({"notify_refund_pending", "notify_refund_sent"})

INSTANT_HINT = "an ISO-8601 instant such as 2024-01-01T00:00:00Z"
# DateTimeFormatter.ISO_INSTANT on parse: seconds and fraction optional, Z or an offset.
_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def decode(method: str, raw: object) -> Params:
    """Typed params of `method`, or InvalidParams naming the offending field."""
    if not isinstance(raw, dict):
        raise InvalidParams("params must be an object")
    keys = FIELDS.get(method, ())
    values: dict[str, Any] = {"message": _text(raw, "message")}
    for key in keys:
        if key == "fee":
            values["fee"] = _fee(raw)
        elif key in ("amount_in", "amount_out"):
            values[key] = _amount(raw.get(key), key, with_asset=method in ASSET_AMOUNTS)
        elif key == "amount_expected":
            values[key] = _amount(raw.get(key), key, with_asset=False)
        elif key in ("user_action_required_by", "funds_received_at", "funds_sent_at"):
            values[key] = _instant(raw.get(key), key)
        elif key == "refund":
            values[key] = _refund(raw.get(key), with_id=method in REFUND_IDS)
        elif key == "success":
            values[key] = _boolean(raw.get(key), key)
        elif key in ("external_transaction_id", "memo"):
            values[key] = _identifier(raw.get(key), key)
        else:
            values[key] = _text(raw, key)
    return Params(**values)


def _text(raw: dict[object, object], key: str) -> str | None:
    value = raw.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidParams(f"{key} must be a string")


def _identifier(value: object, field: str) -> str | None:
    """A string, or an integer (Gson reads a JSON number into a String field)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidParams(f"{field} must be a string")


def _boolean(value: object, field: str) -> bool:
    if value is None:
        return False  # the reference's primitive default (spec §1.8)
    if isinstance(value, bool):
        return value
    # The 2.8.4 documentation sends `"success": "true"`; Gson reads such strings, so do we.
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidParams(f"{field} must be a boolean")


def _object(value: object, field: str) -> dict[object, object] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    raise InvalidParams(f"{field} must be an object")


def _number(value: object, field: str) -> str | None:
    if value is None:
        return None
    text = number_to_string(value)
    if text is None:
        raise InvalidParams(f"{field} must be a string or a number")
    return text


def _amount(value: object, field: str, *, with_asset: bool) -> AmountInput | None:
    obj = _object(value, field)
    if obj is None:
        return None
    amount = _number(obj.get("amount"), f"{field}.amount")
    if not with_asset:
        return AmountInput(amount)
    asset = obj.get("asset")
    if asset is not None and not isinstance(asset, str):
        raise InvalidParams(f"{field}.asset must be a string")
    return AmountInput(amount, asset)


def _fee(raw: dict[object, object]) -> FeeInput | None:
    """3.x `fee_details` wins; else 2.x `amount_fee` {amount, asset} (no details)."""
    fee = _object(raw.get("fee_details"), "fee_details")
    if fee is not None:
        asset = fee.get("asset")
        if asset is not None and not isinstance(asset, str):
            raise InvalidParams("fee_details.asset must be a string")
        return FeeInput(
            _number(fee.get("total"), "fee_details.total"), asset, _details(fee.get("details"))
        )
    legacy = _amount(raw.get("amount_fee"), "amount_fee", with_asset=True)
    if legacy is None:
        return None
    return FeeInput(legacy.amount, legacy.asset, None, field="amount_fee")


def _details(value: object) -> tuple[DetailInput, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidParams("fee_details.details must be a list")
    details: list[DetailInput] = []
    for index, item in enumerate(value):
        where = f"fee_details.details[{index}]"
        obj = _object(item, where)
        if obj is None:
            raise InvalidParams(f"{where} must be an object")
        name, description = obj.get("name"), obj.get("description")
        if name is not None and not isinstance(name, str):
            raise InvalidParams(f"{where}.name must be a string")
        if description is not None and not isinstance(description, str):
            raise InvalidParams(f"{where}.description must be a string")
        amount = _number(obj.get("amount"), f"{where}.amount")
        details.append(DetailInput(name, amount, description))
    return tuple(details)


def _refund(value: object, *, with_id: bool) -> RefundInput | None:
    obj = _object(value, "refund")
    if obj is None:
        return None
    refund_id = _identifier(obj.get("id"), "refund.id") if with_id else None
    return RefundInput(
        refund_id,
        _amount(obj.get("amount"), "refund.amount", with_asset=True),
        _amount(obj.get("amount_fee"), "refund.amount_fee", with_asset=True),
    )


def _instant(value: object, field: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_instant(value) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidParams(f"{field} must be {INSTANT_HINT}")
    return parsed


def parse_instant(text: str) -> datetime | None:
    """ISO_INSTANT as the reference parses it, in UTC; None when malformed."""
    match = _INSTANT.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute = (int(match.group(i)) for i in range(1, 6))
    second = int(match.group(6) or 0)
    micros = int((match.group(7) or "0").ljust(9, "0")[:6])
    if match.group(8):
        tz = UTC
    else:
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if offset >= timedelta(hours=18) or int(match.group(11)) > 59:
            return None
        tz = timezone(-offset if match.group(9) == "-" else offset)
    try:
        return datetime(year, month, day, hour, minute, second, micros, tz).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
