"""`Transaction.clone`: an equal value sharing no mutable part with the original, so the
state machine can change the clone freely. It copies the records and lists it knows: a new
field of a mutable type must be added to it (the type check below fails until it is)."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import UTC, datetime
from typing import Any

from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import (
    FeeDetail,
    RefundPayment,
    Refunds,
    StellarPayment,
    StellarTransaction,
    Transaction,
)

T0 = datetime(2024, 6, 25, 20, 0, tzinfo=UTC)
IMMUTABLE = (str, int, bool, datetime, Kind, Status, type(None))
# The fields of a mutable type that clone() copies itself.
COPIED = {
    Transaction: {"fee_details", "refunds", "stellar_transactions"},
    StellarTransaction: {"payments"},
    Refunds: {"payments"},
}


def full() -> Transaction:
    payment = StellarPayment("1", "5", "native", "payment", "GA", "GB")
    return Transaction(
        id="t1",
        kind=Kind.WITHDRAWAL,
        status=Status.PENDING_ANCHOR,
        started_at=T0,
        updated_at=T0,
        amount_in="10",
        fee_details=[FeeDetail("service", "1", "a fee")],
        refunds=Refunds("2", "0", [RefundPayment("h1", "stellar", "2", "0")]),
        stellar_transactions=[StellarTransaction("h0", T0, "AAAA", [payment], "m", "text")],
        version=3,
    )


def mutable_parts(value: Any) -> list[Any]:
    """Every list and record inside `value`, itself included."""
    if isinstance(value, list):
        return [value, *(p for item in value for p in mutable_parts(item))]
    if dataclasses.is_dataclass(value):
        inner = (getattr(value, f.name) for f in dataclasses.fields(value))
        return [value, *(p for item in inner for p in mutable_parts(item))]
    return []


def test_a_clone_is_equal_and_shares_nothing_mutable() -> None:
    tx = full()
    copied = tx.clone()
    assert copied == tx
    originals = {id(p) for p in mutable_parts(tx)}
    assert not originals & {id(p) for p in mutable_parts(copied)}
    copied.refunds.payments[0].amount = "3"  # type: ignore[union-attr]
    copied.stellar_transactions[0].payments.append(copied.stellar_transactions[0].payments[0])
    assert tx == full()


def _types(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(hint) for t in _types(arg)]
    return [typing.get_origin(hint) or hint]


def test_every_field_of_a_mutable_type_is_copied_by_clone() -> None:
    for cls in (Transaction, StellarTransaction, Refunds, FeeDetail, RefundPayment):
        hints = typing.get_type_hints(cls)
        for name, hint in hints.items():
            if not all(t in IMMUTABLE for t in _types(hint)):
                assert name in COPIED.get(cls, set()), f"{cls.__name__}.{name} is not copied"
