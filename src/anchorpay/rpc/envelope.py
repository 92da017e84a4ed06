"""The JSON-RPC envelope (spec/rpc.md §1): parse, validate, dispatch, build responses.

Deliberate improvements over the reference: a single request object is answered with a single
response object; malformed JSON (including a body that is not UTF-8 or nests deeper than
`MAX_DEPTH`) and non-object elements are HTTP 400; no response ever carries `data` or a stack
trace, and an unexpected exception is -32603 "internal error, reference <id>" for its element
only (the log line with the traceback carries the same reference). A string holding NUL or a
lone UTF-16 surrogate is refused with the field named: -32600 in `id` or `method`, -32602 in
`params`. Numbers are parsed as `Decimal`, so amounts keep every digit; the request `id` is
echoed with its JSON type.
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

from anchorpay import logs
from anchorpay.domain.errors import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, RpcError

log = logging.getLogger("anchorpay.rpc")

BAD_BODY = "Your request body is wrong in some way."
MAX_DEPTH = 32  # arrays and objects nested deeper than this are a bad body
_NO_ID = object()  # the response has no top-level `id`
_JSON_TOKENS = re.compile(r'[\[\]{}"\\]')
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_PATH = 120

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


def nested_too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text opens more than `limit` arrays/objects inside one another, found
    by a linear scan of its brackets outside strings (before parsing, so no recursion)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, in_string, skip = 0, False, -1
    for match in _JSON_TOKENS.finditer(text):
        pos = match.start()
        if pos == skip:  # the character after a backslash inside a string
            continue
        char = text[pos]
        if in_string:
            if char == "\\":
                skip = pos + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def decode_json(body: bytes) -> Any:
    """The JSON value of a request body: strict UTF-8, at most MAX_DEPTH levels, numbers with a
    fraction as Decimal, no NaN/Infinity. Raises ValueError for anything else."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if nested_too_deep(text):
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:  # unreachable after the depth check; kept as a guard
        raise ValueError("JSON nested too deeply") from None


def _char_problem(text: str) -> str | None:
    found = _BAD_CHAR.search(text)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else "a lone UTF-16 surrogate"


def _join(path: str, key: str) -> str:
    joined = f"{path}.{key}" if path else key
    return joined if len(joined) <= _MAX_PATH else joined[: _MAX_PATH - 1] + "…"


def bad_string(value: Any, path: str = "") -> str | None:
    """The sentence refusing the first string (key or value, depth first) of `value` that
    holds NUL or a lone surrogate, naming its field (`amount_in.asset`, `statuses[1]`), or
    None when every string is clean. Iterative: no recursion on deep values."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            problem = _char_problem(item)
            if problem is not None:
                return f"{where or 'the body'} must not contain {problem}"
        elif isinstance(item, dict):
            children: list[tuple[str, Any]] = []
            for key, child in item.items():
                problem = _char_problem(key)
                if problem is not None:
                    inside = f" in {where}" if where else ""
                    return f"a field name{inside} must not contain {problem}"
                children.append((_join(where, key), child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            prefix = where or "the body"
            stack.extend((f"{prefix}[{i}]", child) for i, child in reversed(list(enumerate(item))))
    return None


def parse_body(body: bytes) -> list[Any] | dict[str, Any]:
    """A request object or a batch (list) of them. Raises BadBody."""
    try:
        data = decode_json(body)
    except ValueError:
        raise BadBody(BAD_BODY) from None
    if isinstance(data, dict):
        return data
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return data
    raise BadBody(BAD_BODY)


def dump(value: Any) -> str:
    """Compact JSON; a Decimal anywhere is written as a number with its exact digits."""
    marker: list[str] = []  # made only when a Decimal is met (most answers have none)
    numbers: list[str] = []

    def number(item: Any) -> str:
        # json's C encoder calls this only for what it cannot write itself: no walk of the
        # value in Python, and a Decimal becomes a placeholder string swapped back below.
        if not isinstance(item, Decimal):
            raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")
        if not item.is_finite():
            raise ValueError("a JSON number must be finite")
        if not marker:
            marker.append(uuid.uuid4().hex)
        numbers.append(str(item))
        return f"{marker[0]}:{len(numbers) - 1}"

    text = json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=number
    )
    # A lone surrogate (only inside strings) cannot be sent as UTF-8: write it as its escape.
    if not text.isascii():
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    if not numbers:
        return text
    return re.sub(f'"{marker[0]}:(\\d+)"', lambda m: numbers[int(m.group(1))], text)


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
    elif isinstance(method, str) and _char_problem(method) is not None:
        errors.append(f"method must not contain {_char_problem(method)}")
    request_id = request.get("id")
    if request_id is None:
        errors.append("Id can't be NULL")
    elif not _valid_id(request_id):
        errors.append("An identifier MUST contain a String or a Number")
    elif isinstance(request_id, str) and _char_problem(request_id) is not None:
        errors.append(f"id must not contain {_char_problem(request_id)}")
    return errors


def _echo_id(value: Any) -> Any:
    if not _valid_id(value) or (isinstance(value, str) and _char_problem(value) is not None):
        return _NO_ID
    return value


def _error_tx_id(params: Any) -> str | None:
    if isinstance(params, dict):
        value = params.get("transaction_id")
        if isinstance(value, str) and _char_problem(value) is None:
            return value
    return None


def internal_error(reference: str) -> str:
    """The -32603 message of an unexpected failure: short, with the log line's reference."""
    return f"internal error, reference {reference}"


def new_reference() -> str:
    return uuid.uuid4().hex[:16]


def method_name(value: Any) -> str:
    return value if isinstance(value, str) else _version_text(value)


async def handle_one(request: dict[str, Any], dispatch: Dispatch) -> Response:
    """One element: validate, dispatch, and turn every outcome into a response."""
    echo = _echo_id(request.get("id"))
    params = request.get("params")
    tx_id = _error_tx_id(params)
    errors = envelope_errors(request)
    if errors:
        return Response(
            error_code=INVALID_REQUEST, error_message=";".join(errors), error_tx_id=tx_id, id=echo
        )
    method = method_name(request.get("method"))
    refused = bad_string(params) if isinstance(params, dict) else bad_string(params, "params")
    if refused is not None:
        return Response(
            error_code=INVALID_PARAMS, error_message=refused, error_tx_id=tx_id, id=echo
        )
    try:
        result = await dispatch(method, params)
    except RpcError as exc:
        return Response(error_code=exc.code, error_message=exc.message, error_tx_id=tx_id, id=echo)
    except Exception:
        return _unexpected(method, tx_id, echo)
    return Response(result=result, id=echo)


def _unexpected(method: str, tx_id: str | None, echo: Any) -> Response:
    """Log the exception in hand with a new reference; answer -32603 with that reference."""
    reference = new_reference()
    log.exception(
        "RPC method %s failed unexpectedly (transaction %s), reference %s", method, tx_id, reference
    )
    return Response(
        error_code=INTERNAL_ERROR,
        error_message=internal_error(reference),
        error_tx_id=tx_id,
        id=echo,
    )


async def answer_one(request: dict[str, Any], dispatch: Dispatch) -> str:
    """One element's response text; an encoding failure is that element's -32603 too. Its
    log lines carry the element's id, method and transaction."""
    rpc_id = request.get("id")
    ids = {
        "rpc_id": _version_text(rpc_id)[:64] if rpc_id is not None else None,
        "rpc_method": method_name(request.get("method"))[:64],
        "transaction": _error_tx_id(request.get("params")),
    }
    try:
        with logs.bind(**ids):
            response = await handle_one(request, dispatch)
        return response.encode()
    except Exception:
        method = method_name(request.get("method"))
        return _unexpected(
            method, _error_tx_id(request.get("params")), _echo_id(request.get("id"))
        ).encode()


async def handle_body(body: bytes, dispatch: Dispatch, batch_limit: int) -> str:
    """The whole HTTP body to the whole response text. Raises BadBody (HTTP 400)."""
    data = parse_body(body)
    if isinstance(data, dict):
        return await answer_one(data, dispatch)
    if len(data) > batch_limit:
        limit = Response(
            error_code=INVALID_REQUEST,
            error_message=f"RPC batch size limit[{batch_limit}] exceeded",
        )
        return "[" + limit.encode() + "]"
    responses = [await answer_one(item, dispatch) for item in data]
    return "[" + ",".join(responses) + "]"
