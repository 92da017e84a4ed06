"""The SEP-24 transaction object returned as `result` (spec/rpc.md §5.2-§5.5).

Pure: a Transaction in, a JSON-ready dict out. Null members are omitted, never written as
null. Both fee dialects are written: 3.x `fee_details` and 2.x `amount_fee`.

One deliberate addition (issue 16, cases X51-X55): `transfer_received_at`, when funds are
received. The reference stores it and its SEP-6/SEP-31 results carry it, but its SEP-24
mapper leaves it out (§5.2 [REF-QUIRK]), so a business could not see what "funds received"
rests on.
"""

from __future__ import annotations

from datetime import UTC, datetime

from anchorpay.domain.assets import AssetList
from anchorpay.domain.transaction import Refunds, StellarTransaction, Transaction

Json = dict[str, object]


def instant(value: datetime) -> str:
    """ISO_INSTANT: UTC with "Z", fraction in groups of 3 digits as needed:
    "…34Z", "…34.200Z", "…34.205694Z". A naive datetime is taken as UTC."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    micros = utc.microsecond
    if micros:
        text += f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    return text + "Z"


def _compact(members: Json) -> Json:
    return {key: value for key, value in members.items() if value is not None}


def _amount(amount: str | None, asset: str | None) -> Json:
    return _compact({"amount": amount, "asset": asset})


def _fee_details(tx: Transaction) -> Json | None:
    if tx.amount_fee is None:
        return None
    details = None
    if tx.fee_details:
        details = [
            _compact({"name": d.name, "description": d.description, "amount": d.amount})
            for d in tx.fee_details
        ]
    return _compact({"total": tx.amount_fee, "asset": tx.amount_fee_asset, "details": details})


def _refunds(refunds: Refunds | None, asset: str | None) -> Json | None:
    """Every asset is amount_in_asset and id_type is always "stellar" [REF-QUIRK §3.13]."""
    if refunds is None:
        return None
    return {
        "amount_refunded": _amount(refunds.amount_refunded, asset),
        "amount_fee": _amount(refunds.amount_fee, asset),
        "payments": [
            {
                "id": p.id,
                "id_type": "stellar",
                "amount": _amount(p.amount, asset),
                "fee": _amount(p.fee, asset),
            }
            for p in refunds.payments
        ],
    }


def _stellar_transaction(entry: StellarTransaction) -> Json:
    return _compact(
        {
            "id": entry.id,
            "memo": entry.memo,
            "memo_type": entry.memo_type,
            "created_at": instant(entry.created_at) if entry.created_at else None,
            "envelope": entry.envelope,
            "payments": [
                {
                    "id": p.id,
                    "amount": {"amount": p.amount, "asset": p.asset},
                    "payment_type": p.payment_type,
                    "source_account": p.source_account,
                    "destination_account": p.destination_account,
                }
                for p in entry.payments
            ],
        }
    )


def transaction_result(tx: Transaction, assets: AssetList) -> dict[str, object]:
    """The SEP-24 `result` object, keys in the reference's order."""
    # amount_expected's asset is the asset of the SEP-24 request, never amount_in_asset, and
    # the object is left out when that asset is not configured [REF-QUIRK §5.3].
    requested = (
        tx.requested_asset if tx.requested_asset and assets.get(tx.requested_asset) else None
    )
    fee = _fee_details(tx)
    customer = _compact({"account": tx.sep10_account, "memo": tx.sep10_account_memo})
    members: Json = {
        "id": tx.id,
        "sep": tx.sep,
        "kind": str(tx.kind),
        "status": str(tx.status),
        "amount_expected": _amount(tx.amount_expected, requested) if requested else None,
        "amount_in": (
            _amount(tx.amount_in, tx.amount_in_asset or requested)
            if tx.amount_in is not None
            else None
        ),
        "amount_out": (
            _amount(tx.amount_out, tx.amount_out_asset or requested)
            if tx.amount_out is not None
            else None
        ),
        "fee_details": fee,
        "amount_fee": _amount(tx.amount_fee, tx.amount_fee_asset) if fee else None,
        "quote_id": tx.quote_id,
        "started_at": instant(tx.started_at),
        "updated_at": instant(tx.updated_at) if tx.updated_at else None,
        "completed_at": instant(tx.completed_at) if tx.completed_at else None,
        "transfer_received_at": (
            instant(tx.transfer_received_at) if tx.transfer_received_at else None
        ),
        "user_action_required_by": (
            instant(tx.user_action_required_by) if tx.user_action_required_by else None
        ),
        "message": tx.message,
        "refunds": _refunds(tx.refunds, tx.amount_in_asset),
        "stellar_transactions": (
            [_stellar_transaction(e) for e in tx.stellar_transactions]
            if tx.stellar_transactions
            else None
        ),
        "source_account": tx.from_account,
        "destination_account": tx.to_account,
        "external_transaction_id": tx.external_transaction_id,
        "memo": tx.memo,
        "memo_type": tx.memo_type,
        "refund_memo": tx.refund_memo,
        "refund_memo_type": tx.refund_memo_type,
        "client_domain": tx.client_domain,
        "client_name": tx.client_name,
        # customers and creator are always present, {} without a SEP-10 account
        "customers": {"sender": dict(customer), "receiver": dict(customer)},
        "creator": dict(customer),
    }
    return _compact(members)
