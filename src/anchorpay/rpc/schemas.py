"""JSON Schema of the RPC's params and result, for the OpenRPC description (`rpc/openrpc.py`).

The params come from the decoder's own model (`domain.params`): the keys each method reads
(`FIELDS`), which amounts carry an asset (`ASSET_AMOUNTS`), which refunds an id
(`REFUND_IDS`), and `get_transactions`' `ListQuery` with its constants. Each decoder key has
exactly one schema below (`KEY_SCHEMAS`, checked by the tests), and each schema accepts what
the decoder accepts: JSON numbers for amounts, integers for ids, `"true"` for a boolean.
Unknown keys are ignored by the decoder, so objects stay open. What a method requires is
checked after the state check, with the reference's messages (spec §2.8): only
`transaction_id` is required here.

The result is the SEP-24 transaction object of `rpc/result.py`; its schema is closed
(`additionalProperties: false`) and the tests validate real results against it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from anchorpay.domain.params import ASSET_AMOUNTS, FIELDS, REFUND_IDS
from anchorpay.domain.statuses import Kind, Status
from anchorpay.rpc.methods.reads import (
    MAX_PAGE_NUMBER,
    MAX_PAGE_SIZE,
    ORDER_BYS,
    ORDERS,
    SEPS,
    ListQuery,
)

Schema = dict[str, Any]
Param = tuple[str, Schema, bool]  # name, schema, required

AMOUNT: Schema = {
    "type": ["string", "number"],
    "description": "A decimal. A string is kept exactly as sent; a JSON number is stored in "
    "plain notation. Send strings.",
}
ASSET: Schema = {
    "type": "string",
    "description": "An asset id: stellar:CODE:ISSUER, stellar:native or iso4217:USD.",
}
INSTANT: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "An ISO-8601 instant such as 2024-01-01T00:00:00Z (an offset is converted "
    "to UTC).",
}
TEXT: Schema = {"type": "string"}
IDENTIFIER: Schema = {"type": ["string", "integer"], "description": "A string (or an integer)."}
BOOLEAN: Schema = {
    "oneOf": [
        {"type": "boolean"},
        {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"},
    ],
    "description": 'true or false (the strings "true" and "false" too); absent is false.',
}


def amount_request(with_asset: bool) -> Schema:
    """`AmountAssetRequest` {amount, asset} or `AmountRequest` {amount}."""
    properties: Schema = {"amount": AMOUNT}
    if with_asset:
        properties["asset"] = ASSET
    return {"type": "object", "properties": properties}


FEE_DETAILS: Schema = {
    "type": "object",
    "description": "The fee (3.x); wins over amount_fee.",
    "properties": {
        "total": AMOUNT,
        "asset": ASSET,
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": TEXT, "description": TEXT, "amount": AMOUNT},
            },
        },
    },
}
AMOUNT_FEE: Schema = {**amount_request(True), "description": "The fee (2.x dialect)."}


def refund(with_id: bool) -> Schema:
    properties: Schema = {"amount": amount_request(True), "amount_fee": amount_request(True)}
    if with_id:
        properties = {"id": IDENTIFIER, **properties}
    return {"type": "object", "properties": properties}


# One entry per key of domain.params.FIELDS: the params it stands for, given the method.
KEY_SCHEMAS: dict[str, Callable[[str], list[tuple[str, Schema]]]] = {
    "amount_in": lambda m: [("amount_in", amount_request(m in ASSET_AMOUNTS))],
    "amount_out": lambda m: [("amount_out", amount_request(m in ASSET_AMOUNTS))],
    "amount_expected": lambda m: [("amount_expected", amount_request(False))],
    "fee": lambda m: [("fee_details", FEE_DETAILS), ("amount_fee", AMOUNT_FEE)],
    "user_action_required_by": lambda m: [("user_action_required_by", INSTANT)],
    "funds_received_at": lambda m: [("funds_received_at", INSTANT)],
    "funds_sent_at": lambda m: [("funds_sent_at", INSTANT)],
    "external_transaction_id": lambda m: [("external_transaction_id", IDENTIFIER)],
    "stellar_transaction_id": lambda m: [("stellar_transaction_id", TEXT)],
    "destination_account": lambda m: [("destination_account", TEXT)],
    "memo": lambda m: [("memo", IDENTIFIER)],
    "memo_type": lambda m: [("memo_type", TEXT)],
    "refund": lambda m: [("refund", refund(m in REFUND_IDS))],
    "success": lambda m: [("success", BOOLEAN)],
}

TRANSACTION_ID: Param = ("transaction_id", {"type": "string"}, True)


def status_change_params(method: str) -> list[Param]:
    """transaction_id, message, then the keys the decoder reads for `method`."""
    params: list[Param] = [TRANSACTION_ID, ("message", TEXT, False)]
    for key in FIELDS[method]:
        params += [(name, schema, False) for name, schema in KEY_SCHEMAS[key](method)]
    return params


def _choice(values: tuple[str, ...], numbers: bool = False) -> Schema:
    """Case-insensitive, as ListQuery reads it (the reference's CREATED_AT and ASC too)."""
    variants = sorted({*values, *(v.upper() for v in values)})
    schema: Schema = {"type": "string", "enum": variants}
    if numbers:
        return {"oneOf": [schema, {"type": "integer", "enum": [int(v) for v in values]}]}
    return schema


LIST_QUERY_SCHEMAS: dict[str, Schema] = {
    "sep": _choice(SEPS, numbers=True),
    "order_by": _choice(ORDER_BYS),
    "order": _choice(ORDERS),
    "statuses": {"type": "array", "items": {"type": "string", "enum": [s.value for s in Status]}},
    "page_number": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE_NUMBER},
    "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
}


def list_query_params() -> list[Param]:
    """get_transactions: one param per ListQuery field, each with its default."""
    params: list[Param] = []
    for field in dataclasses.fields(ListQuery):
        default = field.default
        schema = dict(LIST_QUERY_SCHEMAS[field.name])
        schema["default"] = list(default) if isinstance(default, tuple) else default
        params.append((field.name, schema, False))
    return params


# --- the result -----------------------------------------------------------------------------

_AMOUNT_OUT: Schema = {
    "type": "object",
    "properties": {"amount": {"type": "string"}, "asset": {"type": "string"}},
    "required": ["amount"],
    "additionalProperties": False,
}
_STRING: Schema = {"type": "string"}
_STELLAR_ID: Schema = {
    "type": "object",
    "properties": {"id": _STRING, "account": _STRING, "memo": _STRING},
    "additionalProperties": False,
}
_FEE_OUT: Schema = {
    "type": "object",
    "properties": {
        "total": _STRING,
        "asset": _STRING,
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": _STRING, "description": _STRING, "amount": _STRING},
                "additionalProperties": False,
            },
        },
    },
    "required": ["total"],
    "additionalProperties": False,
}
_REFUNDS_OUT: Schema = {
    "type": "object",
    "properties": {
        "amount_refunded": _AMOUNT_OUT,
        "amount_fee": _AMOUNT_OUT,
        "payments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": _STRING,
                    "id_type": _STRING,
                    "amount": _AMOUNT_OUT,
                    "fee": _AMOUNT_OUT,
                },
                "required": ["id", "id_type", "amount", "fee"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["amount_refunded", "amount_fee", "payments"],
    "additionalProperties": False,
}
_STELLAR_TRANSACTION: Schema = {
    "type": "object",
    "properties": {
        "id": _STRING,
        "memo": _STRING,
        "memo_type": _STRING,
        "created_at": {"type": "string", "format": "date-time"},
        "envelope": _STRING,
        "payments": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": _STRING,
                    "amount": {
                        "type": "object",
                        "properties": {"amount": _STRING, "asset": _STRING},
                        "required": ["amount", "asset"],
                        "additionalProperties": False,
                    },
                    "payment_type": {"type": "string", "enum": ["payment", "path_payment"]},
                    "source_account": _STRING,
                    "destination_account": _STRING,
                },
                "required": ["id", "amount", "payment_type"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["id", "payments"],
    "additionalProperties": False,
}
_INSTANT_OUT: Schema = {"type": "string", "format": "date-time"}

TRANSACTION: Schema = {
    "title": "Transaction",
    "description": "The SEP-24 transaction object (spec/rpc.md §5.2; README, 'What a "
    "transaction shows'). Members without a value are left out, never null.",
    "type": "object",
    "properties": {
        "id": _STRING,
        "sep": {"type": "string", "enum": ["24"]},
        "kind": {"type": "string", "enum": [k.value for k in Kind]},
        "status": {"type": "string", "enum": [s.value for s in Status]},
        "amount_expected": _AMOUNT_OUT,
        "amount_in": _AMOUNT_OUT,
        "amount_out": _AMOUNT_OUT,
        "fee_details": _FEE_OUT,
        "amount_fee": _AMOUNT_OUT,
        "quote_id": _STRING,
        "started_at": _INSTANT_OUT,
        "updated_at": _INSTANT_OUT,
        "completed_at": _INSTANT_OUT,
        "transfer_received_at": _INSTANT_OUT,
        "user_action_required_by": _INSTANT_OUT,
        "message": _STRING,
        "refunds": _REFUNDS_OUT,
        "stellar_transactions": {"type": "array", "items": _STELLAR_TRANSACTION},
        "source_account": _STRING,
        "destination_account": _STRING,
        "external_transaction_id": _STRING,
        "memo": _STRING,
        "memo_type": _STRING,
        "refund_memo": _STRING,
        "refund_memo_type": _STRING,
        "client_domain": _STRING,
        "client_name": _STRING,
        "customers": {
            "type": "object",
            "properties": {"sender": _STELLAR_ID, "receiver": _STELLAR_ID},
            "required": ["sender", "receiver"],
            "additionalProperties": False,
        },
        "creator": _STELLAR_ID,
    },
    "required": ["id", "sep", "kind", "status", "started_at", "customers", "creator"],
    "additionalProperties": False,
}
