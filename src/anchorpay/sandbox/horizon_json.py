"""Horizon's JSON shapes for the sandbox's records, pages and problems (field names and
string forms as Horizon 2.x serves them)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from anchorpay.sandbox.operations import asset_fields
from anchorpay.sandbox.state import (
    NATIVE,
    AccountState,
    LedgerHeader,
    OpRecord,
    TxRecord,
    amount_str,
)

Json = dict[str, Any]

PROTOCOL_VERSION = 22
HORIZON_ERRORS = "https://stellar.org/horizon-errors/"
PROBLEMS: dict[str, tuple[str, str]] = {
    "not_found": (
        "Resource Missing",
        "The resource at the url requested was not found.  This usually occurs for one of two "
        "reasons:  The url requested is not valid, or no data in our database could be found "
        "with the parameters provided.",
    ),
    "bad_request": ("Bad Request", "The request you sent was invalid in some way."),
    "transaction_failed": (
        "Transaction Failed",
        "The transaction failed when submitted to the stellar network. The `extras.result_codes`"
        " field on this response contains further details.  Descriptions of each code can be "
        "found at: https://developers.stellar.org/docs/data/apis/horizon/api-reference/errors/"
        "http-status-codes/horizon-specific/transaction-failed",
    ),
    "transaction_malformed": (
        "Transaction Malformed",
        "Horizon could not decode the transaction envelope in this request. A transaction "
        "should be an XDR TransactionEnvelope struct encoded using base64.  The envelope read "
        "from this request is echoed in the `extras.envelope_xdr` field of this response for "
        "your convenience.",
    ),
    "timeout": (
        "Timeout",
        "Your request timed out before completing.  Please try your request again. If you are "
        "submitting a transaction make sure you are sending exactly the same transaction (with "
        "the same sequence number).",
    ),
    "rate_limit_exceeded": (
        "Rate Limit Exceeded",
        "The rate limit for the requesting IP address is over its alloted limit.",
    ),
    "server_error": (
        "Internal Server Error",
        "An error occurred while processing this request.  This is usually due to a bug "
        "within the server software.",
    ),
}
STATUS_PROBLEM = {404: "not_found", 429: "rate_limit_exceeded", 504: "timeout"}


def time_str(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def problem(status: int, kind: str | None = None, extras: Json | None = None) -> Json:
    kind = kind or STATUS_PROBLEM.get(status, "server_error" if status >= 500 else "bad_request")
    title, detail = PROBLEMS.get(kind, ("Error", f"The sandbox answered {status}."))
    body: Json = {"type": HORIZON_ERRORS + kind, "title": title, "status": status}
    body["detail"] = detail
    if extras is not None:
        body["extras"] = extras
    return body


def _link(href: str, templated: bool = False) -> Json:
    return {"href": href, "templated": True} if templated else {"href": href}


def root(latest: LedgerHeader, passphrase: str, base: str, network_id: str) -> Json:
    """Horizon's root, plus `network_id`: the genesis ledger's hash (also at /ledgers/1), the
    sandbox network's identity, which a wiped or replaced sandbox does not share."""
    return {
        "_links": {
            "account": _link(f"{base}/accounts/{{account_id}}", True),
            "ledgers": _link(f"{base}/ledgers{{?cursor,limit,order}}", True),
            "transaction": _link(f"{base}/transactions/{{hash}}", True),
            "account_transactions": _link(
                f"{base}/accounts/{{account_id}}/transactions{{?cursor,limit,order}}", True
            ),
            "fee_stats": _link(f"{base}/fee_stats"),
            "operation": _link(f"{base}/operations/{{id}}", True),
            "payments": _link(f"{base}/payments{{?cursor,limit,order}}", True),
            "transactions": _link(f"{base}/transactions{{?cursor,limit,order}}", True),
            "self": _link(base + "/"),
        },
        "horizon_version": "anchorpay-sandbox",
        "core_version": "anchorpay-sandbox",
        "ingest_latest_ledger": latest.sequence,
        "history_latest_ledger": latest.sequence,
        "history_latest_ledger_closed_at": time_str(latest.closed_at),
        "history_elder_ledger": 1,
        "core_latest_ledger": latest.sequence,
        "network_passphrase": passphrase,
        "network_id": network_id,
        "current_protocol_version": PROTOCOL_VERSION,
        "supported_protocol_version": PROTOCOL_VERSION,
        "core_supported_protocol_version": PROTOCOL_VERSION,
    }


def ledger(h: LedgerHeader, base: str) -> Json:
    paged = "{?cursor,limit,order}"
    return {
        "_links": {
            "self": _link(f"{base}/ledgers/{h.sequence}"),
            "transactions": _link(f"{base}/ledgers/{h.sequence}/transactions{paged}", True),
            "operations": _link(f"{base}/ledgers/{h.sequence}/operations{paged}", True),
            "payments": _link(f"{base}/ledgers/{h.sequence}/payments{paged}", True),
        },
        "id": h.hash,
        "paging_token": h.paging_token,
        "hash": h.hash,
        "prev_hash": h.prev_hash,
        "sequence": h.sequence,
        "successful_transaction_count": h.successful_transaction_count,
        "failed_transaction_count": h.failed_transaction_count,
        "operation_count": h.operation_count,
        "tx_set_operation_count": h.operation_count,
        "closed_at": time_str(h.closed_at),
        "total_coins": "100000000000.0000000",
        "fee_pool": "0.0000000",
        "base_fee_in_stroops": 100,
        "base_reserve_in_stroops": 5000000,
        "max_tx_set_size": 1000,
        "protocol_version": PROTOCOL_VERSION,
    }


def account(a: AccountState, base: str) -> Json:
    balances: list[Json] = []
    for asset_id, line in sorted(a.trustlines.items()):
        balances.append(
            {
                "balance": amount_str(line.balance),
                "limit": amount_str(line.limit),
                "buying_liabilities": "0.0000000",
                "selling_liabilities": "0.0000000",
                "last_modified_ledger": line.last_modified_ledger,
                "is_authorized": line.authorized,
                "is_authorized_to_maintain_liabilities": line.authorized,
                **asset_fields(asset_id),
            }
        )
    balances.append(
        {
            "balance": amount_str(a.balance),
            "buying_liabilities": "0.0000000",
            "selling_liabilities": "0.0000000",
            **asset_fields(NATIVE),
        }
    )
    return {
        "_links": {
            "self": _link(f"{base}/accounts/{a.account_id}"),
            "payments": _link(
                f"{base}/accounts/{a.account_id}/payments{{?cursor,limit,order}}", True
            ),
        },
        "id": a.account_id,
        "account_id": a.account_id,
        "sequence": str(a.sequence),
        "subentry_count": len(a.trustlines),
        "last_modified_ledger": a.last_modified_ledger,
        "thresholds": {"low_threshold": 0, "med_threshold": 0, "high_threshold": 0},
        "flags": {
            "auth_required": False,
            "auth_revocable": False,
            "auth_immutable": False,
            "auth_clawback_enabled": False,
        },
        "balances": balances,
        "signers": [{"weight": 1, "key": a.account_id, "type": "ed25519_public_key"}],
        "data": {},
        "num_sponsoring": 0,
        "num_sponsored": 0,
        "paging_token": a.account_id,
    }


def transaction(t: TxRecord, base: str) -> Json:
    body: Json = {
        "_links": {
            "self": _link(f"{base}/transactions/{t.hash}"),
            "ledger": _link(f"{base}/ledgers/{t.ledger}"),
            "operations": _link(
                f"{base}/transactions/{t.hash}/operations{{?cursor,limit,order}}", True
            ),
        },
        "id": t.hash,
        "paging_token": t.paging_token,
        "successful": t.successful,
        "hash": t.hash,
        "ledger": t.ledger,
        "created_at": time_str(t.created_at),
        "source_account": t.source_account,
        "source_account_sequence": str(t.sequence),
        "fee_account": t.source_account,
        "fee_charged": str(t.fee_charged),
        "max_fee": str(t.max_fee),
        "operation_count": len(t.operations),
        "envelope_xdr": t.envelope_xdr,
        "memo_type": t.memo_type,
        "signatures": list(t.signatures),
    }
    if t.memo is not None:
        body["memo"] = t.memo
    if t.valid_before is not None or t.valid_after is not None:
        after, before = t.valid_after or 0, t.valid_before or 0
        body["valid_after"] = time_str(datetime.fromtimestamp(after, UTC))
        if before:
            body["valid_before"] = time_str(datetime.fromtimestamp(before, UTC))
        body["preconditions"] = {"timebounds": {"min_time": str(after), "max_time": str(before)}}
    return body


def operation(op: OpRecord, base: str, tx: TxRecord | None = None) -> Json:
    body: Json = {
        "_links": {
            "self": _link(f"{base}/operations/{op.id}"),
            "transaction": _link(f"{base}/transactions/{op.tx_hash}"),
        },
        "id": str(op.id),
        "paging_token": op.paging_token,
        "transaction_successful": op.successful,
        "source_account": op.source_account,
        "type": op.type,
        "type_i": op.type_i,
        "created_at": time_str(op.created_at),
        "transaction_hash": op.tx_hash,
        **op.details,
    }
    if tx is not None:  # join=transactions
        body["transaction"] = transaction(tx, base)
    return body


def page(records: Sequence[Json], self_href: str, params: dict[str, str]) -> Json:
    """A collection with Horizon's `_links`: `next` continues after the last record and
    `prev` goes back from the first, in the opposite order."""
    order = params.get("order", "asc")
    last = records[-1]["paging_token"] if records else params.get("cursor", "")
    first = records[0]["paging_token"] if records else params.get("cursor", "")
    reverse = "desc" if order == "asc" else "asc"

    def href(cursor: str, order_: str) -> str:
        query = {k: v for k, v in params.items() if k not in ("cursor", "order")}
        return f"{self_href}?{urlencode({**query, 'cursor': cursor, 'order': order_})}"

    return {
        "_links": {
            "self": _link(href(params.get("cursor", ""), order)),
            "next": _link(href(str(last), order)),
            "prev": _link(href(str(first), reverse)),
        },
        "_embedded": {"records": list(records)},
    }


def fee_stats(latest: LedgerHeader, base_fee: int) -> Json:
    """Horizon's /fee_stats: the sandbox charges the base fee only (no surge pricing), so
    every percentile is the base fee; numbers are strings, as Horizon sends them."""
    fee = str(base_fee)
    percentiles = ("p10", "p20", "p30", "p40", "p50", "p60", "p70", "p80", "p90", "p95", "p99")
    spread = {"max": fee, "min": fee, "mode": fee, **{p: fee for p in percentiles}}
    return {
        "last_ledger": str(latest.sequence),
        "last_ledger_base_fee": fee,
        "ledger_capacity_usage": "0.00",
        "fee_charged": dict(spread),
        "max_fee": dict(spread),
    }


def async_submission(tx_status: str, tx_hash: str | None, error_result_xdr: str | None) -> Json:
    """The body of POST /transactions_async (Horizon relays stellar-core's answer as is)."""
    body: Json = {"tx_status": tx_status, "hash": tx_hash or ""}
    if error_result_xdr is not None:
        body["errorResultXdr"] = error_result_xdr
    return body
