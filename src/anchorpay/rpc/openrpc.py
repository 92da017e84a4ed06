"""The OpenRPC description of the JSON-RPC API (OpenRPC 1.3.2), built from the method table:
one method per registered handler, params by name from the decoder's model and the result
schema of `rpc/schemas.py`. Served by `rpc.discover` and `GET /openrpc.json`."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from anchorpay.domain import machine
from anchorpay.rpc import schemas
from anchorpay.rpc.schemas import Param, Schema

OPENRPC_VERSION = "1.3.2"
DISCOVER = "rpc.discover"
TRANSACTION_REF: Schema = {"$ref": "#/components/schemas/Transaction"}

DESCRIPTION = (
    "The Anchor Platform's JSON-RPC API for SEP-24 transactions, served by anchorpay on "
    "POST / (platform server port). Requests go in a batch (a JSON array) or one request "
    "object; params are by name. Errors carry the Anchor Platform's codes and messages: "
    "-32600 (invalid request, or a method not allowed in the transaction's state), -32601 "
    "(no such method), -32602 (invalid params), -32603 (internal error or a failed lookup), "
    "with error.id = the transaction_id."
)


def _version() -> str:
    try:
        return version("anchorpay")
    except PackageNotFoundError:
        return "0"


def _descriptors(params: Iterable[Param]) -> list[Schema]:
    return [
        {"name": name, "schema": schema, "required": required} for name, schema, required in params
    ]


def _params_of(method: str) -> list[Param]:
    if method in machine.METHODS:
        return schemas.status_change_params(method)
    if method == "get_transaction":
        return [schemas.TRANSACTION_ID]
    if method == "get_transactions":
        return schemas.list_query_params()
    raise KeyError(f"no params model for RPC method {method}")  # caught by the tests


def _result_of(method: str) -> Schema:
    if method == "get_transactions":
        page = {
            "type": "object",
            "properties": {"records": {"type": "array", "items": TRANSACTION_REF}},
            "required": ["records"],
            "additionalProperties": False,
        }
        return {"name": "transactions", "schema": page}
    return {"name": "transaction", "schema": TRANSACTION_REF}


def _method(name: str) -> Schema:
    return {
        "name": name,
        "paramStructure": "by-name",
        "params": _descriptors(_params_of(name)),
        "result": _result_of(name),
    }


def document(methods: Iterable[str]) -> dict[str, Any]:
    """The OpenRPC document describing `methods` (the registry's handlers) and rpc.discover."""
    described = [_method(name) for name in methods]
    described.append(
        {
            "name": DISCOVER,
            "description": "This OpenRPC document (also GET /openrpc.json).",
            "params": [],
            "result": {"name": "OpenRPC document", "schema": {"type": "object"}},
        }
    )
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": "anchorpay", "version": _version(), "description": DESCRIPTION},
        "methods": described,
        "components": {"schemas": {"Transaction": schemas.TRANSACTION}},
    }
