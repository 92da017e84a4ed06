"""Platform API authentication (spec/rpc.md §7), as an ASGI middleware.

`PLATFORM_SERVER_AUTH_TYPE`: `none`, `api_key` (the header's raw bytes equal the secret's;
constant-time comparison, so a non-ASCII header is simply refused) or `jwt` (HMAC-signed with
the secret, `Bearer <token>`; `exp` is required, unlike the reference where a token without
`exp` never expires; `exp`, `nbf` and `iat` must be JSON numbers; `nbf` honoured; zero clock
skew).
A failure is HTTP 403 with the reference's pretty-printed `{"error": "forbidden"}`. OPTIONS
requests pass (CORS preflight). `/health` and the Fireblocks webhook (checked by its signature)
are open. Under `/sandbox`, only what the composition root's `sandbox_open` predicate names is
open (the Horizon surface, the sandbox Fireblocks API); without one, all of it is protected.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

import jwt
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from anchorpay.settings import ConfigError, Settings

log = logging.getLogger("anchorpay.auth")

FORBIDDEN_BODY = b'{\n  "error": "forbidden"\n}'
# The webhook is checked by its signature; the OpenRPC document describes the API, no data.
OPEN_PATHS = ("/health", "/webhooks/fireblocks", "/openrpc.json")
SANDBOX_PREFIX = "/sandbox"
MIN_JWT_SECRET_BYTES = 32
DATE_CLAIMS = ("exp", "nbf", "iat")

Check = Callable[[Headers], bool]
# (method, path below /sandbox) -> open without credentials; the sandbox decides, the
# composition root hands it over (rpc must not import the sandbox).
SandboxOpen = Callable[[str, str], bool]


def _api_key_check(header: str, secret: bytes) -> Check:
    def check(headers: Headers) -> bool:
        value = headers.get(header)
        if value is None:
            return False
        # Starlette decodes header bytes as latin-1: encoding back gives the bytes as sent.
        return hmac.compare_digest(value.encode("latin-1"), secret)

    return check


def jwt_algorithms(secret: bytes) -> list[str]:
    """HMAC algorithms whose minimum key length the secret meets (as jjwt enforces)."""
    algorithms = ["HS256"]
    if len(secret) >= 48:
        algorithms.append("HS384")
    if len(secret) >= 64:
        algorithms.append("HS512")
    return algorithms


def _jwt_check(header: str, secret: bytes) -> Check:
    algorithms = jwt_algorithms(secret)
    options = {
        "require": ["exp"],
        "verify_exp": True,
        "verify_nbf": True,
        "verify_iat": False,
        "verify_aud": False,
        "verify_iss": False,
        "verify_sub": False,
        "verify_jti": False,
    }

    def check(headers: Headers) -> bool:
        value = headers.get(header)
        if value is None or "Bearer" not in value:
            return False
        words = value.split(" ")
        if len(words) < 2 or not words[1]:
            return False
        try:
            claims = jwt.decode(words[1], secret, algorithms=algorithms, options=options, leeway=0)  # type: ignore[arg-type]
        except jwt.PyJWTError as exc:
            log.info("platform API token refused: %s", exc)
            return False
        for claim in DATE_CLAIMS:  # PyJWT takes "exp": "9999999999" (a string) as a date
            value = claims.get(claim)
            if claim in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                log.info("platform API token refused: %s is not a numeric date", claim)
                return False
        return True

    return check


def build_check(settings: Settings) -> Check | None:
    """The configured check, or None when auth is off. Raises ConfigError for a bad setup
    (the settings object already refuses most of them)."""
    kind = settings.platform_server_auth_type
    if kind == "none":
        return None
    secret_value = settings.secret_platform_api_auth_secret
    if secret_value is None or not secret_value.get_secret_value():
        raise ConfigError(
            f"SECRET_PLATFORM_API_AUTH_SECRET is required when PLATFORM_SERVER_AUTH_TYPE={kind}"
        )
    secret = secret_value.get_secret_value().encode()
    if kind == "api_key":
        return _api_key_check(settings.platform_api_key_header, secret)
    if len(secret) < MIN_JWT_SECRET_BYTES:
        raise ConfigError(
            "SECRET_PLATFORM_API_AUTH_SECRET is too weak for jwt: it must be at least 32 bytes"
        )
    return _jwt_check(settings.platform_api_jwt_header, secret)


def is_protected(method: str, path: str, sandbox_open: SandboxOpen | None = None) -> bool:
    if path in OPEN_PATHS:
        return False
    if path == SANDBOX_PREFIX or path.startswith(SANDBOX_PREFIX + "/"):
        rest = path[len(SANDBOX_PREFIX) :]
        return sandbox_open is None or not sandbox_open(method, rest)
    return True


class PlatformAuth:
    """Refuses unauthenticated requests before any route runs."""

    def __init__(
        self, app: ASGIApp, settings: Settings, sandbox_open: SandboxOpen | None = None
    ) -> None:
        self.app = app
        self.check = build_check(settings)
        self.sandbox_open = sandbox_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.check is None
            or scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or not is_protected(scope["method"], scope["path"], self.sandbox_open)
            or self.check(Headers(scope=scope))
        ):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(FORBIDDEN_BODY)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": FORBIDDEN_BODY})
