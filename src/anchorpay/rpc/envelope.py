"""The JSON-RPC envelope (spec/rpc.md §1): parse, validate, dispatch, build responses.

Deliberate improvements over the reference: a single request object is answered with a single
response object; malformed JSON and non-object elements are HTTP 400; no response ever
carries `data` or a stack trace, and an unexpected exception is -32603 "Internal error" for
its element only. Numbers are parsed as `Decimal`, so amounts keep every digit; the request
`id` is echoed with its JSON type.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from anchorpay.domain.errors import INTERNAL_ERROR, INVALID_REQUEST, RpcError

log = logging.getLogger("anchorpay.rpc")

BAD_BODY = "Your request body is wrong in some way."
_NO_ID = object()  # the response has no top-level `id`

Dispatch = Callable[[str, Any], Awaitable[Any]]


class BadBody(Exception):
    """The body is not JSON, or holds something other than request objects: HTTP 400."""


@dataclass(frozen=True, slots=True)
class Response:
    result: Any = None
    error_code: int | None = None
    error_message: str | None = None
    error_tx_id: str | None = None
    id: Any = _NO_ID

    def encode(self) -> str:
        """JSON text with keys in the reference's order: jsonrpc, result|error, id."""
        parts = ['{"jsonrpc":"2.0"']
        if self.error_code is None:
            parts.append(',"result":' + dump(self.result))
        else:
            error: dict[str, Any] = {}
            if self.error_tx_id is not None:
                error["id"] = self.error_tx_id
            error["code"] = self.error_code
            error["message"] = self.error_message
            parts.append(',"error":' + dump(error))
        if self.id is not _NO_ID:
            parts.append(',"id":' + dump(self.id))
        parts.append("}")
        return "".join(parts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes) -> list[Any] | dict[str, Any]:
    """A request object or a batch (list) of them. Raises BadBody."""
    try:
        data = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadBody(BAD_BODY) from None
    if isinstance(data, dict):
        return data
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return data
    raise BadBody(BAD_BODY)


def dump(value: Any) -> str:
    """Compact JSON; a Decimal anywhere is written as a number with its exact digits."""
    marker = uuid.uuid4().hex
    numbers: list[str] = []

    def swap(item: Any) -> Any:
        if isinstance(item, Decimal):
            if not item.is_finite():
                raise ValueError("a JSON number must be finite")
            numbers.append(str(item))
            return f"{marker}:{len(numbers) - 1}"
        if isinstance(item, dict):
            return {k: swap(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [swap(v) for v in item]
        return item

    text = json.dumps(swap(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if not numbers:
        return text
    return re.sub(f'"{marker}:(\\d+)"', lambda m: numbers[int(m.group(1))], text)


def _version_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    return dump(value)


def _valid_id(value: Any) -> bool:
    return isinstance(value, str | int | Decimal) and not isinstance(value, bool)


def envelope_errors(request: dict[str, Any]) -> list[str]:
    """The reference's checks, all of them, in order (spec §1.3)."""
    errors = []
    version = request.get("jsonrpc")
    if version != "2.0" or not isinstance(version, str):
        errors.append(f"Unsupported JSON-RPC protocol version[{_version_text(version)}]")
    method = request.get("method")
    if method is None or method == "":
        errors.append("Method name can't be NULL or empty")
    request_id = request.get("id")
    if request_id is None:
        errors.append("Id can't be NULL")
    elif not _valid_id(request_id):
        errors.append("An identifier MUST contain a String or a Number")
    return errors


def _error_tx_id(params: Any) -> str | None:
    if isinstance(params, dict):
        value = params.get("transaction_id")
        if isinstance(value, str):
            return value
    return None


def method_name(value: Any) -> str:
    return value if isinstance(value, str) else _version_text(value)


async def handle_one(request: dict[str, Any], dispatch: Dispatch) -> Response:
    """One element: validate, dispatch, and turn every outcome into a response."""
    request_id = request.get("id")
    echo = request_id if _valid_id(request_id) else _NO_ID
    params = request.get("params")
    tx_id = _error_tx_id(params)
    errors = envelope_errors(request)
    if errors:
        return Response(
            error_code=INVALID_REQUEST, error_message=";".join(errors), error_tx_id=tx_id, id=echo
        )
    method = method_name(request.get("method"))
    try:
        result = await dispatch(method, params)
    except RpcError as exc:
        return Response(error_code=exc.code, error_message=exc.message, error_tx_id=tx_id, id=echo)
    except Exception:
        log.exception("RPC method %s failed unexpectedly (transaction %s)", method, tx_id)
        return Response(
            error_code=INTERNAL_ERROR, error_message="Internal error", error_tx_id=tx_id, id=echo
        )
    return Response(result=result, id=echo)


async def handle_body(body: bytes, dispatch: Dispatch, batch_limit: int) -> str:
    """The whole HTTP body to the whole response text. Raises BadBody (HTTP 400)."""
    data = parse_body(body)
    if isinstance(data, dict):
        return (await handle_one(data, dispatch)).encode()
    if len(data) > batch_limit:
        limit = Response(
            error_code=INVALID_REQUEST,
            error_message=f"RPC batch size limit[{batch_limit}] exceeded",
        )
        return "[" + limit.encode() + "]"
    responses = [(await handle_one(item, dispatch)).encode() for item in data]
    return "[" + ",".join(responses) + "]"
