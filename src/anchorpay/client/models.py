"""The typed values the API answers (spec/rpc.md §5: the SEP-24 transaction object; the
payouts view of `GET /payouts`). Amounts are `Decimal`, instants timezone-aware `datetime`.
Each value keeps the JSON it was read from in `raw`, so a field a newer server adds is never
lost to an older client."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Amount:
    amount: Decimal | None
    asset: str | None

    @classmethod
    def of(cls, raw: Any) -> Amount | None:
        if not isinstance(raw, dict):
            return None
        return cls(_decimal(raw.get("amount")), _str(raw.get("asset")))


@dataclass(frozen=True, slots=True)
class FeeDetail:
    name: str
    amount: Decimal | None
    description: str | None


@dataclass(frozen=True, slots=True)
class FeeDetails:
    total: Decimal | None
    asset: str | None
    details: tuple[FeeDetail, ...]

    @classmethod
    def of(cls, raw: Any) -> FeeDetails | None:
        if not isinstance(raw, dict):
            return None
        details = tuple(
            FeeDetail(str(d.get("name")), _decimal(d.get("amount")), _str(d.get("description")))
            for d in raw.get("details") or ()
            if isinstance(d, dict)
        )
        return cls(_decimal(raw.get("total")), _str(raw.get("asset")), details)


@dataclass(frozen=True, slots=True)
class RefundPayment:
    id: str
    id_type: str
    amount: Amount | None
    fee: Amount | None


@dataclass(frozen=True, slots=True)
class Refunds:
    amount_refunded: Amount | None
    amount_fee: Amount | None
    payments: tuple[RefundPayment, ...]

    @classmethod
    def of(cls, raw: Any) -> Refunds | None:
        if not isinstance(raw, dict):
            return None
        payments = tuple(
            RefundPayment(
                str(p.get("id")),
                str(p.get("id_type")),
                Amount.of(p.get("amount")),
                Amount.of(p.get("fee")),
            )
            for p in raw.get("payments") or ()
            if isinstance(p, dict)
        )
        return cls(
            Amount.of(raw.get("amount_refunded")), Amount.of(raw.get("amount_fee")), payments
        )


@dataclass(frozen=True, slots=True)
class StellarPayment:
    id: str
    amount: Amount | None
    payment_type: str | None
    source_account: str | None
    destination_account: str | None


@dataclass(frozen=True, slots=True)
class StellarTransaction:
    """One ledger transaction recorded on a SEP-24 transaction (spec §5.5)."""

    id: str
    memo: str | None
    memo_type: str | None
    created_at: datetime | None
    envelope: str | None
    payments: tuple[StellarPayment, ...]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> StellarTransaction:
        payments = tuple(
            StellarPayment(
                str(p.get("id")),
                Amount.of(p.get("amount")),
                _str(p.get("payment_type")),
                _str(p.get("source_account")),
                _str(p.get("destination_account")),
            )
            for p in raw.get("payments") or ()
            if isinstance(p, dict)
        )
        return cls(
            str(raw.get("id")),
            _str(raw.get("memo")),
            _str(raw.get("memo_type")),
            _instant(raw.get("created_at")),
            _str(raw.get("envelope")),
            payments,
        )


@dataclass(frozen=True, slots=True)
class StellarId:
    account: str | None
    memo: str | None

    @classmethod
    def of(cls, raw: Any) -> StellarId | None:
        if not isinstance(raw, dict):
            return None
        return cls(_str(raw.get("account")), _str(raw.get("memo")))


@dataclass(frozen=True, slots=True)
class Transaction:
    """A SEP-24 transaction as `get_transaction` and every status-changing method answer it."""

    id: str
    sep: str
    kind: str  # "deposit" | "withdrawal"
    status: str
    amount_expected: Amount | None = None
    amount_in: Amount | None = None
    amount_out: Amount | None = None
    fee_details: FeeDetails | None = None
    quote_id: str | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    transfer_received_at: datetime | None = None
    user_action_required_by: datetime | None = None
    message: str | None = None
    refunds: Refunds | None = None
    stellar_transactions: tuple[StellarTransaction, ...] = ()
    source_account: str | None = None
    destination_account: str | None = None
    external_transaction_id: str | None = None
    memo: str | None = None
    memo_type: str | None = None
    refund_memo: str | None = None
    refund_memo_type: str | None = None
    client_domain: str | None = None
    client_name: str | None = None
    sender: StellarId | None = None
    receiver: StellarId | None = None
    creator: StellarId | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, raw: Any) -> Transaction:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise ValueError("not a transaction object")
        customers = raw.get("customers") if isinstance(raw.get("customers"), dict) else {}
        assert isinstance(customers, dict)
        return cls(
            id=raw["id"],
            sep=str(raw.get("sep")),
            kind=str(raw.get("kind")),
            status=str(raw.get("status")),
            amount_expected=Amount.of(raw.get("amount_expected")),
            amount_in=Amount.of(raw.get("amount_in")),
            amount_out=Amount.of(raw.get("amount_out")),
            fee_details=FeeDetails.of(raw.get("fee_details")),
            refunds=Refunds.of(raw.get("refunds")),
            stellar_transactions=tuple(
                StellarTransaction.of(s)
                for s in raw.get("stellar_transactions") or ()
                if isinstance(s, dict)
            ),
            sender=StellarId.of(customers.get("sender")),
            receiver=StellarId.of(customers.get("receiver")),
            creator=StellarId.of(raw.get("creator")),
            quote_id=_str(raw.get("quote_id")),
            started_at=_instant(raw.get("started_at")),
            updated_at=_instant(raw.get("updated_at")),
            completed_at=_instant(raw.get("completed_at")),
            transfer_received_at=_instant(raw.get("transfer_received_at")),
            user_action_required_by=_instant(raw.get("user_action_required_by")),
            message=_str(raw.get("message")),
            source_account=_str(raw.get("source_account")),
            destination_account=_str(raw.get("destination_account")),
            external_transaction_id=_str(raw.get("external_transaction_id")),
            memo=_str(raw.get("memo")),
            memo_type=_str(raw.get("memo_type")),
            refund_memo=_str(raw.get("refund_memo")),
            refund_memo_type=_str(raw.get("refund_memo_type")),
            client_domain=_str(raw.get("client_domain")),
            client_name=_str(raw.get("client_name")),
            raw=raw,
        )


@dataclass(frozen=True, slots=True)
class Payout:
    """One payout as `GET /payouts` shows it: what the worker does for a do_stellar_payment
    or do_stellar_refund, and where it stands (README, "Payout states")."""

    id: str
    transaction_id: str
    purpose: str  # "payment" | "refund"
    seq: int
    state: str
    destination: str
    asset: str
    amount: Decimal | None
    refund_fee: Decimal | None
    attempts: int
    last_error: str | None
    tx_hash: str | None
    ledger: int | None
    created_at: datetime | None
    updated_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, raw: Any) -> Payout:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise ValueError("not a payout object")
        ledger = raw.get("ledger")
        return cls(
            id=raw["id"],
            transaction_id=str(raw.get("transaction_id")),
            purpose=str(raw.get("purpose")),
            seq=int(raw.get("seq") or 0),
            state=str(raw.get("state")),
            destination=str(raw.get("destination")),
            asset=str(raw.get("asset")),
            amount=_decimal(raw.get("amount")),
            refund_fee=_decimal(raw.get("refund_fee")),
            attempts=int(raw.get("attempts") or 0),
            last_error=_str(raw.get("last_error")),
            tx_hash=_str(raw.get("tx_hash")),
            ledger=int(ledger) if isinstance(ledger, int) else None,
            created_at=_instant(raw.get("created_at")),
            updated_at=_instant(raw.get("updated_at")),
            raw=raw,
        )
