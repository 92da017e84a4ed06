"""Outbound HTTP: the one module that imports httpx for calls anchorpay makes to other services.

Everything else builds clients with `make_client` and catches the aliases below, so switching
the HTTP library later is a change to this module alone.
"""

from __future__ import annotations

import httpx

__all__ = [
    "AsyncClient",
    "HttpError",
    "HttpStatusError",
    "HttpTimeout",
    "HttpTransportError",
    "Response",
    "make_client",
]

AsyncClient = httpx.AsyncClient
Response = httpx.Response
# Base of every failure below (a timeout is also a transport error).
HttpError = httpx.HTTPError
# Timeouts of any phase: connect, read, write, pool.
HttpTimeout = httpx.TimeoutException
# The request may not have reached the server, or its answer was lost (includes timeouts).
HttpTransportError = httpx.TransportError
# Only raised by `Response.raise_for_status()`.
HttpStatusError = httpx.HTTPStatusError


KEEPALIVE_S = 2.0


def make_client(
    base_url: str, timeout_s: float, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """An async client for one service. `timeout_s` bounds each phase of a request; the
    caller owns the client and closes it with `aclose()`."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout_s),
        # Idle connections are dropped before common server keep-alive timeouts (uvicorn's
        # is 5 s, httpx's default too): reusing one the server is closing fails the request.
        limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),
        headers=headers,
        follow_redirects=False,  # a redirect from an API is a configuration error, not data
    )
