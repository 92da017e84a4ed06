"""What the sync and async clients share: building JSON-RPC batches, reading the answers,
turning HTTP refusals into errors, and the retry rule. No I/O here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from anchorpay.client.calls import Call
from anchorpay.client.errors import Forbidden, HttpError, RpcError, TransportError

T = TypeVar("T")

JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
RETRY_AFTER_CAP_S = 5.0


def body(calls: list[Call[Any]], first_id: int) -> list[dict[str, Any]]:
    """The batch array (the API takes batches only: spec §1.1); ids are 1, 2, ..."""
    return [
        {"jsonrpc": "2.0", "method": c.method, "params": c.params, "id": first_id + n}
        for n, c in enumerate(calls)
    ]


def refusal(response: httpx.Response) -> HttpError:
    """The error for a non-2xx answer, with the body's `error` text when it has one."""
    message = response.reason_phrase or "error"
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        message = data["error"]
    retry_after = response.headers.get("Retry-After")
    if response.status_code == 403:
        return Forbidden(403, message)
    return HttpError(response.status_code, message, retry_after)


def json_of(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise refusal(response)
    try:
        return response.json()
    except ValueError:
        status = response.status_code
        raise TransportError(f"the server answered HTTP {status} without JSON") from None


@dataclass(slots=True)
class Outcome(Generic[T]):
    """One call's result or error, as the batch answer gave it."""

    value: T | None = None
    error: Exception | None = None

    def get(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # set when there is no error


def outcomes(calls: list[Call[Any]], first_id: int, answer: Any) -> list[Outcome[Any]]:
    """Match each call with its answer by id (the API keeps the order, ids make it sure)."""
    if not isinstance(answer, list):
        raise TransportError("the server's answer is not a JSON-RPC batch")
    if len(answer) == 1 and len(calls) > 1 and "id" not in answer[0]:
        # The whole batch was refused (the batch size limit): every call has that error.
        error = _error(answer[0])
        return [Outcome(error=error) for _ in calls]
    by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
    results: list[Outcome[Any]] = []
    for n, call in enumerate(calls):
        item = by_id.get(first_id + n)
        if item is None:
            results.append(Outcome(error=TransportError(f"no answer for {call.method}")))
        elif "error" in item:
            results.append(Outcome(error=_error(item)))
        else:
            try:
                results.append(Outcome(value=call.parse(item.get("result"))))
            except (ValueError, TypeError) as exc:
                results.append(Outcome(error=TransportError(f"{call.method}: {exc}")))
    return results


def _error(item: Any) -> Exception:
    error = item.get("error") if isinstance(item, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), int):
        return TransportError(f"not a JSON-RPC answer: {json.dumps(item)[:200]}")
    tx_id = error.get("id")
    return RpcError(
        error["code"],
        str(error.get("message", "")),
        tx_id if isinstance(tx_id, str) else None,
        error.get("data"),
    )


def retryable(exc: Exception, idempotent: bool) -> bool:
    """Whether repeating the request is harmless: a connection that was never made sent
    nothing; anything else (a lost answer, a 503) is repeated for reads only, since a
    status change may already have been applied."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return True
    if not idempotent:
        return False
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, HttpError) and exc.status in (502, 503, 504)


def delay(exc: Exception, attempt: int, base_s: float) -> float:
    """Backoff before the next attempt: the server's Retry-After when it gave one (capped),
    else base * 2^attempt."""
    if isinstance(exc, HttpError) and exc.retry_after:
        try:
            return min(float(exc.retry_after), RETRY_AFTER_CAP_S)
        except ValueError:
            pass
    return float(base_s * (2**attempt))


def lost(exc: httpx.TransportError) -> TransportError:
    return TransportError(f"the request failed: {type(exc).__name__}: {exc}")
