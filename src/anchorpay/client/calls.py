"""One typed builder per JSON-RPC method (spec/rpc.md §3, §4): the single place where a
method's parameters are named and typed. The clients turn each builder into a method
(`client.do_stellar_payment(...)`) and a batch entry (`batch.do_stellar_payment(...)`).

Amounts are `Decimal` (or a decimal string, or an int) and are sent as plain decimal strings;
instants are timezone-aware `datetime`s, sent in ISO-8601 UTC."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Generic, ParamSpec, TypeVar

from anchorpay.client.models import Transaction

T = TypeVar("T")
P = ParamSpec("P")
Money = Decimal | str | int


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A request ready to send: the method, its params, how to read its result, and whether
    repeating it after a lost answer is harmless (reads only)."""

    method: str
    params: dict[str, Any]
    parse: Callable[[Any], T]
    idempotent: bool = False


@dataclass(frozen=True, slots=True)
class AssetAmount:
    amount: Money
    asset: str


@dataclass(frozen=True, slots=True)
class FeeItem:
    name: str
    amount: Money
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Fee:
    """The fee: sent as the 2.x `amount_fee` {amount, asset}, or as `fee_details` when it
    has `details`."""

    total: Money
    asset: str
    details: Sequence[FeeItem] = ()


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund: `id` is the ledger hash or the business's own reference (notify_refund_*);
    do_stellar_refund has none (the worker's payment gets its hash)."""

    amount: Money
    amount_fee: Money
    asset: str
    id: str | None = None


def money(value: Money) -> str:
    """A plain decimal string (no exponent): what the API reads as an amount."""
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"an amount must be a Decimal, a decimal string or an int: {value!r}")
    number = Decimal(value) if not isinstance(value, Decimal) else value
    if not number.is_finite():
        raise ValueError(f"an amount must be finite: {value!r}")
    return format(number, "f")


def instant(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("an instant must be timezone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _params(transaction_id: str, message: str | None, **values: Any) -> dict[str, Any]:
    """The params object; None members are left out, as the reference's clients do."""
    out: dict[str, Any] = {"transaction_id": transaction_id}
    if message is not None:
        out["message"] = message
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            out[key] = instant(value)
        elif isinstance(value, AssetAmount):
            out[key] = {"amount": money(value.amount), "asset": value.asset}
        elif isinstance(value, Fee):
            out.update(_fee(value))
        elif isinstance(value, Refund):
            out[key] = _refund(value)
        else:
            out[key] = value
    return out


def _fee(fee: Fee) -> dict[str, Any]:
    if not fee.details:
        return {"amount_fee": {"amount": money(fee.total), "asset": fee.asset}}
    details = []
    for item in fee.details:
        detail: dict[str, Any] = {"name": item.name, "amount": money(item.amount)}
        if item.description is not None:
            detail["description"] = item.description
        details.append(detail)
    return {"fee_details": {"total": money(fee.total), "asset": fee.asset, "details": details}}


def _refund(refund: Refund) -> dict[str, Any]:
    out: dict[str, Any] = {
        "amount": {"amount": money(refund.amount), "asset": refund.asset},
        "amount_fee": {"amount": money(refund.amount_fee), "asset": refund.asset},
    }
    if refund.id is not None:
        out["id"] = refund.id
    return out


def _amount(value: Money | None) -> dict[str, str] | None:
    return None if value is None else {"amount": money(value)}


def _change(method: str, params: dict[str, Any]) -> Call[Transaction]:
    return Call(method, params, Transaction.of)


def _same_params(builder: Callable[P, Call[T]], method: str) -> Callable[P, Call[T]]:
    """The builder of another method that takes exactly the same params."""

    def build(*args: P.args, **kwargs: P.kwargs) -> Call[T]:
        return replace(builder(*args, **kwargs), method=method)

    build.__name__ = method
    build.__doc__ = builder.__doc__
    return build


# --- the SEP-24 state machine (spec §3) ---------------------------------------------------


def notify_interactive_flow_completed(
    transaction_id: str,
    *,
    amount_in: AssetAmount | None = None,
    amount_out: AssetAmount | None = None,
    fee: Fee | None = None,
    amount_expected: Money | None = None,
    user_action_required_by: datetime | None = None,
    message: str | None = None,
) -> Call[Transaction]:
    return _change(
        "notify_interactive_flow_completed",
        _params(
            transaction_id,
            message,
            amount_in=amount_in,
            amount_out=amount_out,
            fee=fee,
            amount_expected=_amount(amount_expected),
            user_action_required_by=user_action_required_by,
        ),
    )


def request_onchain_funds(
    transaction_id: str,
    *,
    amount_in: AssetAmount | None = None,
    amount_out: AssetAmount | None = None,
    fee: Fee | None = None,
    amount_expected: Money | None = None,
    destination_account: str | None = None,
    memo: str | None = None,
    memo_type: str | None = None,
    user_action_required_by: datetime | None = None,
    message: str | None = None,
) -> Call[Transaction]:
    return _change(
        "request_onchain_funds",
        _params(
            transaction_id,
            message,
            amount_in=amount_in,
            amount_out=amount_out,
            fee=fee,
            amount_expected=_amount(amount_expected),
            destination_account=destination_account,
            memo=memo,
            memo_type=memo_type,
            user_action_required_by=user_action_required_by,
        ),
    )


def notify_offchain_funds_received(
    transaction_id: str,
    *,
    funds_received_at: datetime | None = None,
    external_transaction_id: str | None = None,
    amount_in: Money | None = None,
    amount_out: Money | None = None,
    fee: Fee | None = None,
    message: str | None = None,
) -> Call[Transaction]:
    return _change(
        "notify_offchain_funds_received",
        _params(
            transaction_id,
            message,
            funds_received_at=funds_received_at,
            external_transaction_id=external_transaction_id,
            amount_in=_amount(amount_in),
            amount_out=_amount(amount_out),
            fee=fee,
        ),
    )


def notify_onchain_funds_received(
    transaction_id: str,
    *,
    stellar_transaction_id: str,
    amount_in: Money | None = None,
    amount_out: Money | None = None,
    fee: Fee | None = None,
    message: str | None = None,
) -> Call[Transaction]:
    return _change(
        "notify_onchain_funds_received",
        _params(
            transaction_id,
            message,
            stellar_transaction_id=stellar_transaction_id,
            amount_in=_amount(amount_in),
            amount_out=_amount(amount_out),
            fee=fee,
        ),
    )


def notify_offchain_funds_sent(
    transaction_id: str,
    *,
    funds_sent_at: datetime | None = None,
    external_transaction_id: str | None = None,
    message: str | None = None,
) -> Call[Transaction]:
    return _change(
        "notify_offchain_funds_sent",
        _params(
            transaction_id,
            message,
            funds_sent_at=funds_sent_at,
            external_transaction_id=external_transaction_id,
        ),
    )


def notify_offchain_funds_pending(
    transaction_id: str,
    *,
    external_transaction_id: str | None = None,
    user_action_required_by: datetime | None = None,
    message: str | None = None,
) -> Call[Transaction]:
    return _change(
        "notify_offchain_funds_pending",
        _params(
            transaction_id,
            message,
            external_transaction_id=external_transaction_id,
            user_action_required_by=user_action_required_by,
        ),
    )


def notify_onchain_funds_sent(
    transaction_id: str, *, stellar_transaction_id: str, message: str | None = None
) -> Call[Transaction]:
    return _change(
        "notify_onchain_funds_sent",
        _params(transaction_id, message, stellar_transaction_id=stellar_transaction_id),
    )


def notify_amounts_updated(
    transaction_id: str,
    *,
    amount_out: Money | None = None,
    fee: Fee | None = None,
    message: str | None = None,
) -> Call[Transaction]:
    return _change(
        "notify_amounts_updated",
        _params(transaction_id, message, amount_out=_amount(amount_out), fee=fee),
    )


def notify_refund_pending(
    transaction_id: str, *, refund: Refund, message: str | None = None
) -> Call[Transaction]:
    return _change("notify_refund_pending", _params(transaction_id, message, refund=refund))


def notify_refund_sent(
    transaction_id: str, *, refund: Refund | None = None, message: str | None = None
) -> Call[Transaction]:
    """Without `refund`, confirms the refunds already recorded (spec §3.12)."""
    return _change("notify_refund_sent", _params(transaction_id, message, refund=refund))


def do_stellar_refund(
    transaction_id: str, *, refund: Refund, message: str | None = None
) -> Call[Transaction]:
    """anchorpay's worker pays `refund.amount` to the user on the ledger, exactly once, and
    records it (its hash as the refund's id) when the ledger confirms it."""
    if refund.id is not None:
        raise ValueError("do_stellar_refund takes no refund id: the ledger hash becomes it")
    return _change("do_stellar_refund", _params(transaction_id, message, refund=refund))


def do_stellar_payment(transaction_id: str, *, message: str | None = None) -> Call[Transaction]:
    """anchorpay's worker pays the deposit's amount_out on the ledger, exactly once, and
    completes the transaction when the ledger confirms it."""
    return _change("do_stellar_payment", _params(transaction_id, message))


def notify_transaction_error(
    transaction_id: str, *, message: str | None = None
) -> Call[Transaction]:
    return _change("notify_transaction_error", _params(transaction_id, message))


def notify_transaction_on_hold(
    transaction_id: str,
    *,
    user_action_required_by: datetime | None = None,
    message: str | None = None,
) -> Call[Transaction]:
    return _change(
        "notify_transaction_on_hold",
        _params(transaction_id, message, user_action_required_by=user_action_required_by),
    )


def notify_trust_set(
    transaction_id: str, *, success: bool = True, message: str | None = None
) -> Call[Transaction]:
    return _change("notify_trust_set", _params(transaction_id, message, success=success))


# Methods whose params are another's (spec §3).
request_offchain_funds = _same_params(notify_interactive_flow_completed, "request_offchain_funds")
notify_offchain_funds_available = _same_params(
    notify_offchain_funds_pending, "notify_offchain_funds_available"
)
notify_transaction_expired = _same_params(notify_transaction_error, "notify_transaction_expired")
notify_transaction_recovery = _same_params(notify_transaction_error, "notify_transaction_recovery")
notify_customer_info_updated = _same_params(
    notify_transaction_error, "notify_customer_info_updated"
)
request_trust = _same_params(notify_transaction_on_hold, "request_trust")


# --- reads (spec §4): harmless to repeat --------------------------------------------------


def get_transaction(transaction_id: str) -> Call[Transaction]:
    return Call("get_transaction", {"transaction_id": transaction_id}, Transaction.of, True)


def _records(result: Any) -> list[Transaction]:
    if not isinstance(result, dict) or not isinstance(result.get("records"), list):
        raise ValueError("not a {records: [...]} result")
    return [Transaction.of(r) for r in result["records"]]


def get_transactions(
    *,
    statuses: Sequence[str] | None = None,
    order_by: str = "CREATED_AT",
    order: str = "ASC",
    page_number: int = 0,
    page_size: int = 20,
    sep: str = "24",
) -> Call[list[Transaction]]:
    """The RPC requires every paging member (the reference has no defaults there); the
    client supplies the REST route's defaults."""
    params: dict[str, Any] = {
        "sep": sep,
        "order_by": order_by,
        "order": order,
        "page_number": page_number,
        "page_size": page_size,
    }
    if statuses is not None:
        params["statuses"] = list(statuses)
    return Call("get_transactions", params, _records, True)


def get_quote(quote_id: str) -> Call[dict[str, Any]]:
    def parse(result: Any) -> dict[str, Any]:
        if not isinstance(result, dict):
            raise ValueError("not a quote object")
        return result

    return Call("get_quote", {"quote_id": quote_id}, parse, True)
