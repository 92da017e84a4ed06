"""Typed views of the Fireblocks wire JSON (docs/fireblocks-wire.md).

Parsing is tolerant where Fireblocks omits or nulls optional fields (they become "" or None)
and strict where a wrong value would be acted on: a missing id or status, or an amount that
is not a decimal, raises FireblocksProtocolError instead of guessing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from anchorpay.adapters.fireblocks.errors import FireblocksProtocolError

__all__ = [
    "FAILURES",
    "STATUSES",
    "SUCCESS",
    "CreatedTransaction",
    "DepositAddress",
    "FbTransaction",
    "FireblocksProtocolError",
    "TransferRequest",
    "VaultAccount",
    "VaultAsset",
]

STATUSES: tuple[str, ...] = (
    "SUBMITTED",
    "QUEUED",
    "PENDING_AUTHORIZATION",
    "PENDING_SIGNATURE",
    "BROADCASTING",
    "PENDING_3RD_PARTY_MANUAL_APPROVAL",
    "PENDING_3RD_PARTY",
    "CONFIRMING",
    "PARTIALLY_COMPLETED",
    "PENDING_AML_SCREENING",
    "COMPLETED",
    "CANCELLED",
    "REJECTED",
    "BLOCKED",
    "FAILED",
)
SUCCESS = "COMPLETED"
# Final statuses in which nothing was paid.
FAILURES = frozenset({"CANCELLED", "REJECTED", "BLOCKED", "FAILED"})


@dataclass(frozen=True, slots=True)
class FbTransaction:
    id: str
    external_tx_id: str | None
    status: str  # kept as sent, also when not in STATUSES: the adapter decides
    sub_status: str
    tx_hash: str
    operation: str
    asset_id: str
    amount: Decimal | None
    source_type: str
    source_id: str
    destination_type: str
    destination_id: str
    source_address: str
    destination_address: str
    destination_tag: str
    created_at_ms: int
    last_updated_ms: int
    note: str

    @classmethod
    def from_json(cls, data: object) -> FbTransaction:
        obj = _object(data, "transaction")
        source = _object(obj.get("source") or {}, "transaction source")
        destination = _object(obj.get("destination") or {}, "transaction destination")
        amount_info = _object(obj.get("amountInfo") or {}, "transaction amountInfo")
        # amountInfo.amount is the current field; top-level `amount` is the deprecated one.
        raw_amount = amount_info.get("amount")
        if raw_amount is None:
            raw_amount = obj.get("amount")
        external = obj.get("externalTxId")
        return cls(
            id=_required(obj, "id", "transaction"),
            external_tx_id=None if external is None else _text(obj, "externalTxId"),
            status=_required(obj, "status", "transaction"),
            sub_status=_text(obj, "subStatus"),
            tx_hash=_text(obj, "txHash"),
            operation=_text(obj, "operation"),
            asset_id=_text(obj, "assetId"),
            amount=None if raw_amount is None else _decimal(raw_amount, "transaction amount"),
            source_type=_text(source, "type"),
            source_id=_text(source, "id"),
            destination_type=_text(destination, "type"),
            destination_id=_text(destination, "id"),
            source_address=_text(obj, "sourceAddress"),
            destination_address=_text(obj, "destinationAddress"),
            destination_tag=_text(obj, "destinationTag"),
            created_at_ms=_millis(obj, "createdAt"),
            last_updated_ms=_millis(obj, "lastUpdated"),
            note=_text(obj, "note"),
        )


@dataclass(frozen=True, slots=True)
class CreatedTransaction:
    id: str
    status: str

    @classmethod
    def from_json(cls, data: object) -> CreatedTransaction:
        obj = _object(data, "created transaction")
        return cls(
            id=_required(obj, "id", "created transaction"),
            status=_required(obj, "status", "created transaction"),
        )


@dataclass(frozen=True, slots=True)
class DepositAddress:
    address: str
    tag: str  # "" when the asset has no memo/tag

    @classmethod
    def from_json(cls, data: object) -> DepositAddress:
        obj = _object(data, "deposit address")
        return cls(address=_required(obj, "address", "deposit address"), tag=_text(obj, "tag"))


@dataclass(frozen=True, slots=True)
class AddressPage:
    """One page of `addresses_paginated`: the addresses, and the cursor of the next page."""

    addresses: tuple[str, ...]
    after: str

    @classmethod
    def from_json(cls, data: object) -> AddressPage:
        obj = _object(data, "address page")
        items = obj.get("addresses")
        if not isinstance(items, list):
            raise FireblocksProtocolError("the address page has no 'addresses' array")
        addresses = tuple(
            _required(_object(item, "vault address"), "address", "vault address") for item in items
        )
        paging = obj.get("paging")
        after = _text(paging, "after") if isinstance(paging, Mapping) else ""
        return cls(addresses=addresses, after=after)


@dataclass(frozen=True, slots=True)
class VaultAsset:
    id: str
    total: Decimal
    available: Decimal
    pending: Decimal
    frozen: Decimal

    @classmethod
    def from_json(cls, data: object) -> VaultAsset:
        obj = _object(data, "vault asset")
        total = obj.get("total")
        if total is None:
            total = obj.get("balance")  # the older name of the same figure

        def amount(value: object, name: str) -> Decimal:
            return Decimal(0) if value is None else _decimal(value, f"vault asset {name}")

        return cls(
            id=_required(obj, "id", "vault asset"),
            total=amount(total, "total"),
            available=amount(obj.get("available"), "available"),
            pending=amount(obj.get("pending"), "pending"),
            frozen=amount(obj.get("frozen"), "frozen"),
        )


@dataclass(frozen=True, slots=True)
class VaultAccount:
    id: str
    name: str
    assets: tuple[VaultAsset, ...]

    @classmethod
    def from_json(cls, data: object) -> VaultAccount:
        obj = _object(data, "vault account")
        assets = obj.get("assets") or []
        if not isinstance(assets, list):
            raise FireblocksProtocolError("vault account assets is not a list")
        return cls(
            id=_required(obj, "id", "vault account"),
            name=_text(obj, "name"),
            assets=tuple(VaultAsset.from_json(a) for a in assets),
        )


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """A transfer from our vault to a one-time Stellar address (the create body)."""

    asset_id: str
    amount: Decimal
    vault_account_id: str
    address: str
    tag: str | None  # the Stellar memo; None sends no tag at all
    external_tx_id: str
    note: str

    def __post_init__(self) -> None:
        # format() would render NaN/Infinity as words and Fireblocks would refuse them late;
        # a non-positive amount is a bug upstream, never a payout.
        if not self.amount.is_finite() or self.amount <= 0:
            raise ValueError(f"transfer amount must be a positive decimal, not {self.amount}")

    def to_json(self) -> dict[str, object]:
        one_time: dict[str, object] = {"address": self.address}
        if self.tag is not None:
            one_time["tag"] = self.tag
        return {
            "operation": "TRANSFER",
            "assetId": self.asset_id,
            # A plain decimal string: never a JSON number, never an exponent ("1E+1").
            "amount": format(self.amount, "f"),
            "source": {"type": "VAULT_ACCOUNT", "id": self.vault_account_id},
            "destination": {"type": "ONE_TIME_ADDRESS", "oneTimeAddress": one_time},
            "externalTxId": self.external_tx_id,
            "note": self.note,
        }


# --- JSON -> values ------------------------------------------------------------------------


def _object(data: object, what: str) -> Mapping[str, object]:
    if not isinstance(data, dict):
        raise FireblocksProtocolError(f"{what} is not a JSON object")
    return data


def _text(obj: Mapping[str, object], key: str) -> str:
    """An optional string field: missing or null -> "". Numbers are accepted as text
    (a tag or an id sent as a number); anything else is a protocol error."""
    value = obj.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    raise FireblocksProtocolError(f"field {key} is not a string")


def _required(obj: Mapping[str, object], key: str, what: str) -> str:
    value = _text(obj, key)
    if not value:
        raise FireblocksProtocolError(f"{what} has no {key}")
    return value


def _decimal(value: object, what: str) -> Decimal:
    # str() first: Decimal(float) would carry the float's binary error into money.
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise FireblocksProtocolError(f"{what} is not a decimal")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise FireblocksProtocolError(f"{what} is not a decimal") from None
    if not result.is_finite():
        raise FireblocksProtocolError(f"{what} is not a finite decimal")
    return result


def _millis(obj: Mapping[str, object], key: str) -> int:
    """A timestamp in milliseconds; missing or null -> 0."""
    value = obj.get(key)
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float | str) and not isinstance(value, bool):
        try:
            return int(Decimal(str(value)))
        except (InvalidOperation, ValueError, OverflowError):
            pass
    raise FireblocksProtocolError(f"field {key} is not a timestamp in milliseconds")
