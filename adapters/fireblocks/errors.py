"""The Fireblocks client's errors, in one module so models and client share them.

Every message is safe to log: it names the method and path, the HTTP status and Fireblocks'
own message, never a header, the API key or key material.
"""

from __future__ import annotations

__all__ = [
    "FireblocksApiError",
    "FireblocksError",
    "FireblocksProtocolError",
    "FireblocksUnavailable",
]

# Fireblocks' error codes that callers branch on (docs/fireblocks-wire.md, "Errors").
CODE_TX_NOT_FOUND = 1405
CODE_DUPLICATE_EXTERNAL_ID = 1438


class FireblocksError(Exception):
    """Base of every client error. `status` is the HTTP status when there was an answer,
    `code` Fireblocks' error code when the body carried one."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class FireblocksApiError(FireblocksError):
    """Fireblocks answered non-2xx: the request was seen and refused (or rate limited)."""

    status: int

    def __init__(self, status: int, message: str, code: int | None) -> None:
        # `message` is Fireblocks' text, or the start of a body that was not the documented
        # JSON (then `code` is None and there is no code to show).
        suffix = f" (code {code})" if code is not None else ""
        super().__init__(f"Fireblocks answered HTTP {status}: {message}{suffix}", status=status)
        self.status = status
        self.code = code
        self.message = message

    @property
    def is_duplicate_external_id(self) -> bool:
        """Another request already created a transaction with this externalTxId."""
        return self.status == 400 and self.code == CODE_DUPLICATE_EXTERNAL_ID

    @property
    def is_not_found(self) -> bool:
        return self.status == 404 or self.code == CODE_TX_NOT_FOUND

    @property
    def is_retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


class FireblocksUnavailable(FireblocksError):
    """No answer (timeout or connection failure): the request may or may not have been
    processed, so the caller must find out (by external id) before acting again."""


class FireblocksProtocolError(FireblocksError):
    """A 2xx answer whose body is not what the wire contract describes."""
