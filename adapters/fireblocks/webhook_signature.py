"""Verification of Fireblocks webhook signatures (docs/fireblocks-wire.md, "Webhooks").

Two schemes, tried in this order:
- `Fireblocks-Webhook-Signature`: a detached RS512 JWS whose key comes from Fireblocks' JWKS.
  When this header is present and a JWKS URL is configured it decides alone: a wrong JWS is
  never rescued by the legacy header (an attacker would strip or break the stronger one).
- `Fireblocks-Signature`: base64 RSA PKCS#1 v1.5 SHA-512 over the raw body, checked with a
  configured public key.

Every BadSignature message is safe to log: header values appear only as short reprs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import (
    RSAPrivateKey,
    RSAPublicKey,
    RSAPublicNumbers,
)

from anchorpay.clock import SYSTEM
from anchorpay.http import AsyncClient, HttpTransportError, make_client

__all__ = [
    "JWS_HEADER",
    "LEGACY_HEADER",
    "BadSignature",
    "VerifierUnavailable",
    "WebhookVerifier",
    "jwk_from_public_key",
    "sign_jws",
    "sign_legacy",
]

log = logging.getLogger(__name__)

JWS_HEADER = "Fireblocks-Webhook-Signature"
LEGACY_HEADER = "Fireblocks-Signature"
JWS_ALG = "RS512"
# An unknown `kid` refetches the JWKS at most this often, so forged kids cannot make us
# hammer Fireblocks; the same pause follows a failed fetch.
MIN_REFETCH_S = 30.0
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class BadSignature(Exception):
    """The webhook is not proven to come from Fireblocks (answer 401); the reason is safe to
    log."""


class VerifierUnavailable(Exception):
    """The JWKS could not be fetched, so the JWS cannot be checked now (answer 503: Fireblocks
    retries later)."""


class WebhookVerifier:
    """Checks a webhook's signature headers against the raw body. `client` may be injected;
    it is closed by `aclose()` only when this object created it."""

    def __init__(
        self,
        *,
        legacy_key: RSAPublicKey | None,
        jwks_url: str | None,
        timeout_s: float = 10.0,
        cache_s: float = 3600.0,
        client: AsyncClient | None = None,
        clock: Callable[[], float] = SYSTEM.monotonic,
    ) -> None:
        self._legacy_key = legacy_key
        self._jwks_url = jwks_url or None
        self._cache_s = cache_s
        self._clock = clock
        self._owns_client = client is None and self._jwks_url is not None
        if client is None and self._jwks_url is not None:
            client = make_client(self._jwks_url, timeout_s)
        self._client = client
        self._keys: dict[str, RSAPublicKey] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._failed_at: float | None = None  # last fetch, if it failed
        self._refetched_at: float | None = None  # last refetch for an unknown kid
        self._lock = asyncio.Lock()  # one fetch at a time; waiters reuse its result

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The scheme that verified `body`, "jws" or "legacy"; else BadSignature (or
        VerifierUnavailable when the JWKS is needed and cannot be fetched)."""
        lowered = {name.lower(): value for name, value in headers.items()}
        jws = lowered.get(JWS_HEADER.lower())
        if jws is not None and self._jwks_url is not None:
            await self._verify_jws(jws.strip(), body)
            return "jws"
        legacy = lowered.get(LEGACY_HEADER.lower())
        if legacy is not None and self._legacy_key is not None:
            _verify_legacy(self._legacy_key, legacy.strip(), body)
            return "legacy"
        raise BadSignature("no Fireblocks signature header")

    async def refresh(self) -> int:
        """Fetch the JWKS now (`anchorpay custody check`): how many signing keys it holds,
        as `verify` would use them. Raises VerifierUnavailable with the reason."""
        if self._jwks_url is None:
            raise VerifierUnavailable("no JWKS URL is configured")
        async with self._lock:
            error = await self._fetch(self._clock())
        if error is not None:
            raise VerifierUnavailable(error)
        return len(self._keys)

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    # --- JWS -------------------------------------------------------------------------------

    async def _verify_jws(self, value: str, body: bytes) -> None:
        parts = value.split(".")
        if len(parts) != 3 or parts[1] != "" or not parts[0] or not parts[2]:
            raise BadSignature(f"{JWS_HEADER} is not a detached JWS (<header>..<signature>)")
        encoded_header, _, encoded_signature = parts
        try:
            header = json.loads(_b64url_decode(encoded_header))
            signature = _b64url_decode(encoded_signature)
        except (ValueError, UnicodeDecodeError):
            raise BadSignature(f"{JWS_HEADER} is not valid base64url JSON") from None
        if not isinstance(header, dict):
            raise BadSignature(f"{JWS_HEADER} header is not a JSON object")
        alg = header.get("alg")
        if alg != JWS_ALG:
            raise BadSignature(f"{JWS_HEADER} alg {_short(alg)} is not {JWS_ALG}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise BadSignature(f"{JWS_HEADER} has no kid")
        key = await self._key(kid)
        signing_input = f"{encoded_header}.{_b64url_encode(body)}".encode("ascii")
        try:
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA512())
        except InvalidSignature:
            raise BadSignature(f"{JWS_HEADER} does not match the body") from None

    async def _key(self, kid: str) -> RSAPublicKey:
        async with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self._cache_s
            backing_off = self._failed_at is not None and now - self._failed_at < MIN_REFETCH_S
            if stale and not backing_off:
                await self._fetch(now)
            elif kid not in self._keys and not backing_off and self._may_refetch(now):
                self._refetched_at = now
                await self._fetch(now)
            key = self._keys.get(kid)
            if key is not None:
                return key  # a stale key is still used while the JWKS is down
            if self._failed_at is not None:
                # The last fetch failed: the kid may be a rotated key we could not learn.
                raise VerifierUnavailable("the Fireblocks JWKS could not be fetched")
            raise BadSignature(f"{JWS_HEADER} kid {_short(kid)} is not in the JWKS")

    def _may_refetch(self, now: float) -> bool:
        return self._refetched_at is None or now - self._refetched_at >= MIN_REFETCH_S

    async def _fetch(self, now: float) -> str | None:
        """Replace the cached keys with the JWKS; on failure keep them, note the time and
        return why."""
        assert self._client is not None and self._jwks_url is not None
        try:
            response = await self._client.get(self._jwks_url)
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            keys = _parse_jwks(response.json())
            if not keys:
                raise ValueError("no RSA signing key")
        except (HttpTransportError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("Fireblocks JWKS fetch failed: %s", reason)
            self._failed_at = now
            return reason
        self._keys = keys
        self._fetched_at = now
        self._failed_at = None
        return None


def _verify_legacy(key: RSAPublicKey, value: str, body: bytes) -> None:
    try:
        signature = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature(f"{LEGACY_HEADER} is not base64") from None
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA512())
    except InvalidSignature:
        raise BadSignature(f"{LEGACY_HEADER} does not match the body") from None


def _parse_jwks(data: object) -> dict[str, RSAPublicKey]:
    """The RSA signing keys of a JWKS by kid; other key types and malformed entries are
    skipped (one bad entry must not disable the others)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS")
    keys: dict[str, RSAPublicKey] = {}
    for jwk in data["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        kid, n, e = jwk.get("kid"), jwk.get("n"), jwk.get("e")
        if jwk.get("use", "sig") != "sig" or not isinstance(kid, str) or not kid:
            continue
        if not isinstance(n, str) or not isinstance(e, str):
            continue
        try:
            # Built from n and e only: a JWK that also carries private fields stays public.
            numbers = RSAPublicNumbers(_b64url_int(e), _b64url_int(n))
            keys[kid] = numbers.public_key()
        except ValueError:
            continue
    return keys


# --- signing (the sandbox and tests produce real signatures with these) --------------------


def sign_legacy(private_key: RSAPrivateKey, body: bytes) -> str:
    """The `Fireblocks-Signature` value for `body`."""
    signature = private_key.sign(body, padding.PKCS1v15(), hashes.SHA512())
    return base64.b64encode(signature).decode("ascii")


def sign_jws(private_key: RSAPrivateKey, kid: str, body: bytes) -> str:
    """The `Fireblocks-Webhook-Signature` value for `body`: `<header>..<signature>`."""
    header = json.dumps({"alg": JWS_ALG, "kid": kid, "typ": "JOSE"}, separators=(",", ":"))
    encoded_header = _b64url_encode(header.encode())
    signing_input = f"{encoded_header}.{_b64url_encode(body)}".encode("ascii")
    signature = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA512())
    return f"{encoded_header}..{_b64url_encode(signature)}"


def jwk_from_public_key(public_key: RSAPublicKey, kid: str) -> dict[str, str]:
    """The JWKS entry of `public_key` (RFC 7517/7518: n and e as unpadded base64url)."""
    numbers = public_key.public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": JWS_ALG,
        "n": _b64url_encode(_int_bytes(numbers.n)),
        "e": _b64url_encode(_int_bytes(numbers.e)),
    }


# --- encoding ------------------------------------------------------------------------------


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    # Strict: urlsafe_b64decode would silently drop characters outside the alphabet.
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url_int(text: str) -> int:
    data = _b64url_decode(text)
    if not data:
        raise ValueError("empty integer")
    return int.from_bytes(data, "big")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _short(value: object) -> str:
    """A header value for a log line: repr'd (no control characters) and cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
