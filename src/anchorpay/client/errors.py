"""What a call can fail with. Every error carries what the server said, never a secret."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error the client raises."""


class RpcError(ClientError):
    """The server answered the call with a JSON-RPC error (spec: `error.code`, `message`;
    `transaction_id` is the reference's `error.id`, the call's transaction when it had one)."""

    def __init__(
        self, code: int, message: str, transaction_id: str | None = None, data: Any = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.transaction_id = transaction_id
        self.data = data


class HttpError(ClientError):
    """The server refused the HTTP request itself (403 forbidden, 400, 404, 409, 413, 503...).
    `message` is the body's `error` text when it has one."""

    def __init__(self, status: int, message: str, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


class Forbidden(HttpError):
    """HTTP 403: the credentials are missing or wrong (the API answers nothing else)."""


class TransportError(ClientError):
    """The server could not be reached, or its answer was lost or not JSON-RPC. For a call
    that changes state, the outcome is unknown: read the transaction before repeating it."""
