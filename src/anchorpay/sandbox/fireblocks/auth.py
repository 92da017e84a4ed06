"""The request check of Fireblocks' API (docs/fireblocks-wire.md): an `X-API-Key` and a Bearer
JWT (RS256) signed with the key registered for that API key, whose claims bind it to this
request (`uri`, `bodyHash`, `sub`) and to a short time window (`iat`, `exp`). A refusal is an
`Unauthorized` whose message is the reason shown after "Unauthorized: "."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.types import Options

# Fireblocks documents exp < iat + 30, yet its official SDKs sign exp = iat + 55 and the real
# API takes them: accept that plus a little rounding skew, and keep refusing a minute or more.
SDK_LIFETIME_S = 55
LIFETIME_SKEW_S = 2
MAX_LIFETIME_S = SDK_LIFETIME_S + LIFETIME_SKEW_S  # exp may be at most this far after iat
MAX_SKEW_S = 60  # iat may be at most this far in the future
REQUIRED_CLAIMS = ("uri", "sub", "bodyHash", "iat", "exp")
# PyJWT checks the signature only; the claims are checked below, with the sandbox's reasons.
DECODE_OPTIONS: Options = {
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


class Unauthorized(Exception):
    """The message is the reason, as shown to the caller after "Unauthorized: "."""


def load_public_key(pem: str | bytes) -> RSAPublicKey:
    """An RSA public key from PEM; ValueError for anything else."""
    key = load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def request_uris(scope: Mapping[str, Any]) -> tuple[str, ...]:
    """The path and query as sent, in the two forms a client may sign: relative to where the
    surface is mounted (`/v1/transactions`, anchorpay's client, whose base URL ends at the
    mount) and the whole path (`/sandbox/fireblocks/v1/transactions`: the official SDKs sign
    the URL's path, and their base URL includes the mount)."""
    raw = scope.get("raw_path")
    full = raw.decode("latin-1").split("?")[0] if raw else str(scope["path"])
    root = str(scope.get("root_path", ""))
    relative = full[len(root) :] if root and full.startswith(root) else full
    query = scope.get("query_string", b"").decode("latin-1")
    suffix = f"?{query}" if query else ""
    return tuple(dict.fromkeys((relative + suffix, full + suffix)))


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"JWT claim {name} must be a number")
    return float(value)


def check_request(
    keys: Mapping[str, RSAPublicKey],
    api_key: str | None,
    authorization: str | None,
    uris: Collection[str],
    body: bytes,
    now: float,
) -> None:
    """Raise Unauthorized unless the request is signed as the wire contract says; `uris` are
    the forms of the request's path and query the `uri` claim may take (`request_uris`)."""
    if not api_key:
        raise Unauthorized("missing X-API-Key header")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing Bearer JWT in the Authorization header")
    token = token.strip()
    key = keys.get(api_key)
    if key is None:
        raise Unauthorized("unknown API key")
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.DecodeError:
        raise Unauthorized("malformed JWT") from None
    if algorithm != "RS256":
        raise Unauthorized("JWT algorithm must be RS256")
    try:
        claims = jwt.decode(token, key, algorithms=["RS256"], options=DECODE_OPTIONS)
    except jwt.InvalidSignatureError:
        raise Unauthorized("JWT signature does not verify with the API key's public key") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("malformed JWT") from None
    for name in REQUIRED_CLAIMS:
        if name not in claims:
            raise Unauthorized(f"JWT has no {name} claim")
    if claims["sub"] != api_key:
        raise Unauthorized("JWT sub does not match the API key")
    if claims["uri"] not in uris:
        raise Unauthorized("JWT uri does not match the request path and query")
    if claims["bodyHash"] != hashlib.sha256(body).hexdigest():
        raise Unauthorized("JWT bodyHash does not match the request body")
    iat, exp = _number(claims, "iat"), _number(claims, "exp")
    if exp <= now:
        raise Unauthorized("JWT has expired")
    if exp - iat > MAX_LIFETIME_S:
        raise Unauthorized(f"JWT exp is more than {MAX_LIFETIME_S} seconds after iat")
    if iat > now + MAX_SKEW_S:
        raise Unauthorized("JWT iat is in the future")
