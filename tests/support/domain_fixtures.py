"""Shared helpers of the domain tests: the case file, transactions and contexts built from
its JSON, and a one-call `run()` through validate/apply."""

from __future__ import annotations

import json
from dataclasses import fields as dataclass_fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from anchorpay.domain.assets import Asset, AssetList
from anchorpay.domain.machine import (
    DepositInfo,
    Facts,
    MachineContext,
    Outcome,
    apply,
    validate,
)
from anchorpay.domain.params import parse_instant
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import (
    FeeDetail,
    RefundPayment,
    Refunds,
    StellarPayment,
    StellarTransaction,
    Transaction,
)

CASES_FILE = Path(__file__).resolve().parents[1] / "cases" / "sep24_cases.json"
INSTANT_FIELDS = {
    "started_at",
    "updated_at",
    "completed_at",
    "transfer_received_at",
    "user_action_required_by",
}


def load_cases() -> dict[str, Any]:
    # Like the RPC layer: JSON numbers with a fraction become Decimal, never float.
    with CASES_FILE.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle, parse_float=Decimal)
    return loaded


def instant(text: str) -> datetime:
    parsed = parse_instant(text)
    assert parsed is not None, text
    return parsed


def assets_of(doc: dict[str, Any], extra: str | None = None) -> AssetList:
    rows = list(doc["assets"]) + (list(doc["extra_assets"][extra]) if extra else [])
    return AssetList(tuple(Asset(**row) for row in rows))


def stellar_transaction(data: dict[str, Any]) -> StellarTransaction:
    return StellarTransaction(
        id=data["id"],
        created_at=instant(data["created_at"]) if data.get("created_at") else None,
        envelope=data.get("envelope"),
        payments=[StellarPayment(**p) for p in data.get("payments", [])],
    )


def transaction(doc: dict[str, Any], initial: dict[str, Any]) -> Transaction:
    """A Transaction from the case file's `initial` over its defaults."""
    data = {**doc["defaults"]["transaction"], **initial}
    if data.pop("funds", False):
        data["transfer_received_at"] = doc["defaults"]["funds_received_at"]
    known = {f.name for f in dataclass_fields(Transaction)}
    unknown = set(data) - known
    assert not unknown, f"unknown transaction fields {unknown}"
    for key in INSTANT_FIELDS & set(data):
        if data[key] is not None:
            data[key] = instant(data[key])
    data["kind"] = Kind(data["kind"])
    data["status"] = Status(data["status"])
    if data.get("refunds") is not None:
        r = data["refunds"]
        data["refunds"] = Refunds(
            r["amount_refunded"], r["amount_fee"], [RefundPayment(**p) for p in r["payments"]]
        )
    if data.get("fee_details") is not None:
        data["fee_details"] = [FeeDetail(**d) for d in data["fee_details"]]
    if data.get("stellar_transactions"):
        data["stellar_transactions"] = [
            stellar_transaction(s) for s in data["stellar_transactions"]
        ]
    return Transaction(**data)


def context(
    doc: dict[str, Any], overrides: dict[str, Any] | None, assets: AssetList
) -> MachineContext:
    data = {**doc["defaults"]["context"], **(overrides or {})}
    return MachineContext(
        assets=assets,
        custody_enabled=data["custody_type"] != "none",
        custody_type=data["custody_type"],
        deposit_info_generator=data["generator"],
        now=instant(data["now"]),
    )


def facts(data: dict[str, Any] | None) -> Facts:
    if not data:
        return Facts()
    found = data.get("stellar_transaction")
    info = data.get("deposit_info")
    return Facts(
        stellar_transaction=stellar_transaction(found) if found else None,
        trustline=data.get("trustline"),
        deposit_info=DepositInfo(**info) if info else None,
    )


def run(
    tx: Transaction, method: str, params: object, ctx: MachineContext, found: Facts | None = None
) -> Outcome:
    """validate then apply, as the workflow does (without the I/O)."""
    plan = validate(tx, method, params, ctx)
    return apply(plan, found or Facts(), ctx)
