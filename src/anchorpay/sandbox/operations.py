"""The operations the sandbox ledger applies: CreateAccount, Payment and ChangeTrust, with
stellar-core's result codes in stellar-core's order of checks. Anything else is refused with
`op_not_supported`. Each function works on a `Scratch` and returns a code ("op_success" or a
failure) plus the Horizon fields of the operation record."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from stellar_sdk import ChangeTrust, CreateAccount, Payment

from anchorpay.sandbox.state import (
    BASE_RESERVE,
    MAX_AMOUNT,
    NATIVE,
    AccountState,
    Scratch,
    Trustline,
    amount,
    amount_str,
    asset_code,
    asset_issuer,
)

TYPE_I = {"create_account": 0, "payment": 1, "change_trust": 6}


def op_type(op: Any) -> tuple[str, int]:
    """Horizon's `type` and `type_i` for any SDK operation."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(op).__name__).lower()
    try:
        return name, int(op._XDR_OPERATION_TYPE.value)
    except AttributeError:
        return name, -1


def sdk_asset_id(asset: Any) -> str:
    """SEP-38 id of an SDK asset."""
    return NATIVE if asset.issuer is None else f"stellar:{asset.code}:{asset.issuer}"


def asset_fields(asset_id: str) -> dict[str, str]:
    if asset_id == NATIVE:
        return {"asset_type": "native"}
    code = asset_code(asset_id)
    return {
        "asset_type": "credit_alphanum4" if len(code) <= 4 else "credit_alphanum12",
        "asset_code": code,
        "asset_issuer": asset_issuer(asset_id) or "",
    }


def _decimal(value: str) -> Decimal | None:
    try:
        return amount(value)
    except (InvalidOperation, ValueError):
        return None


def check_valid(op: Any, source: str) -> str | None:
    """stellar-core's checkValid: a failure here refuses the whole transaction unapplied."""
    if isinstance(op, Payment):
        value = _decimal(op.amount)
        return None if value is not None and value > 0 else "op_malformed"
    if isinstance(op, CreateAccount):
        value = _decimal(op.starting_balance)
        if value is None or value < 0 or op.destination == source:
            return "op_malformed"
        return None
    if isinstance(op, ChangeTrust):
        if not hasattr(op.asset, "issuer") or op.asset.issuer is None:
            return "op_malformed"  # native, or a liquidity pool share (not supported here)
        value = _decimal(op.limit)
        if value is None or value < 0 or op.asset.issuer == source:
            return "op_malformed"
        return None
    return "op_not_supported"


def apply(
    op: Any, source_id: str, scratch: Scratch, ledger: int
) -> tuple[str, dict[str, str], frozenset[str]]:
    """Apply one operation. Returns (code, Horizon fields, accounts touched)."""
    if isinstance(op, Payment):
        return _payment(op, source_id, scratch)
    if isinstance(op, CreateAccount):
        return _create_account(op, source_id, scratch, ledger)
    if isinstance(op, ChangeTrust):
        return _change_trust(op, source_id, scratch, ledger)
    return "op_not_supported", {}, frozenset({source_id})


def _payment(op: Payment, source_id: str, scratch: Scratch) -> tuple[str, dict[str, str], Any]:
    dest_id = op.destination.account_id
    asset_id = sdk_asset_id(op.asset)
    value = amount(op.amount)
    details = {**asset_fields(asset_id), "from": source_id, "to": dest_id}
    details["amount"] = amount_str(value)
    touched = frozenset({source_id, dest_id})
    source, dest = scratch.get(source_id), scratch.get(dest_id)
    if source is None:
        return "op_no_source_account", details, touched
    if dest is None:
        return "op_no_destination", details, touched
    issuer = asset_issuer(asset_id)
    if asset_id == NATIVE:
        if dest.balance + value > MAX_AMOUNT:
            return "op_line_full", details, touched
        if source.available() < value:  # the reserve is not spendable
            return "op_underfunded", details, touched
        source.balance -= value
        dest.balance += value
        return "op_success", details, touched
    if dest_id != issuer:  # paying the issuer burns the amount: no trustline needed
        line = dest.trustlines.get(asset_id)
        if line is None:
            return "op_no_trust", details, touched
        if not line.authorized:
            return "op_not_authorized", details, touched
        if line.balance + value > line.limit:
            return "op_line_full", details, touched
    if source_id != issuer:  # the issuer creates the amount: no balance needed
        src_line = source.trustlines.get(asset_id)
        if src_line is None:
            return "op_src_no_trust", details, touched
        if not src_line.authorized:
            return "op_src_not_authorized", details, touched
        if src_line.balance < value:
            return "op_underfunded", details, touched
        src_line.balance -= value
    if dest_id != issuer:
        dest.trustlines[asset_id].balance += value
    return "op_success", details, touched


def _create_account(
    op: CreateAccount, source_id: str, scratch: Scratch, ledger: int
) -> tuple[str, dict[str, str], Any]:
    value = amount(op.starting_balance)
    details = {
        "starting_balance": amount_str(value),
        "funder": source_id,
        "account": op.destination,
    }
    touched = frozenset({source_id, op.destination})
    source = scratch.get(source_id)
    if source is None:
        return "op_no_source_account", details, touched
    if scratch.get(op.destination) is not None:
        return "op_already_exists", details, touched
    if value < 2 * BASE_RESERVE:
        return "op_low_reserve", details, touched
    if source.available() < value:
        return "op_underfunded", details, touched
    source.balance -= value
    # New accounts start at sequence ledger << 32, as on Stellar.
    scratch.create(AccountState(op.destination, ledger << 32, value, last_modified_ledger=ledger))
    return "op_success", details, touched


def _change_trust(
    op: ChangeTrust, source_id: str, scratch: Scratch, ledger: int
) -> tuple[str, dict[str, str], Any]:
    asset_id = sdk_asset_id(op.asset)
    limit = amount(op.limit)
    issuer: str = getattr(op.asset, "issuer", None) or ""  # check_valid refused the others
    details = {
        **asset_fields(asset_id),
        "limit": amount_str(limit),
        "trustee": issuer,
        "trustor": source_id,
    }
    touched = frozenset({source_id})
    source = scratch.get(source_id)
    if source is None:
        return "op_no_source_account", details, touched
    line = source.trustlines.get(asset_id)
    if line is not None:
        if limit < line.balance:  # also refuses removal (limit 0) while holding a balance
            return "op_invalid_limit", details, touched
        if limit == 0:
            del source.trustlines[asset_id]
        else:
            line.limit = limit
            line.last_modified_ledger = ledger
        return "op_success", details, touched
    if limit == 0:
        return "op_invalid_limit", details, touched
    if scratch.get(issuer) is None:
        return "op_no_issuer", details, touched
    if source.balance < source.min_balance(extra_entries=1):
        return "op_low_reserve", details, touched
    source.trustlines[asset_id] = Trustline(limit=limit, last_modified_ledger=ledger)
    return "op_success", details, touched


def new_trustline(account: AccountState, asset_id: str, authorized: bool, ledger: int) -> bool:
    """Add a trustline directly (developer route, start state). False when it exists."""
    if asset_id in account.trustlines:
        return False
    account.trustlines[asset_id] = Trustline(authorized=authorized, last_modified_ledger=ledger)
    return True
