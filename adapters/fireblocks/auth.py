"""Fireblocks API authentication: the RSA key files and the per-request JWT.

Key-file errors are one line naming the setting and the path, never the file's content, so
they can go straight to the operator (and the logs) at start.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

__all__ = [
    "JWT_LIFETIME_S",
    "KeyFileError",
    "body_hash",
    "load_private_key",
    "load_public_key",
    "parse_public_key_pem",
    "request_jwt",
]

# Fireblocks refuses exp >= iat + 30; 25 leaves room for clock skew.
JWT_LIFETIME_S = 25


class KeyFileError(ValueError):
    """A key file that cannot be used; the message is one line without key material."""


def load_private_key(path: Path, setting: str = "FIREBLOCKS_SECRET_KEY_FILE") -> RSAPrivateKey:
    """The API user's RSA private key: PEM, PKCS#8 or PKCS#1, unencrypted."""
    return parse_private_key_pem(_read(path, setting), what=f"{setting} {path}")


def parse_private_key_pem(pem: bytes, what: str = "the key") -> RSAPrivateKey:
    """An RSA private key from PEM bytes; KeyFileError `"<what> is not a PEM RSA private
    key"`."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    # ValueError: not PEM / not a key; TypeError: encrypted; UnsupportedAlgorithm: odd key.
    # `from None`: cryptography's own messages are not needed and could quote the input.
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{what} is not a PEM RSA private key") from None
    if not isinstance(key, RSAPrivateKey):  # e.g. an EC or Ed25519 key: valid, wrong type
        raise KeyFileError(f"{what} is not a PEM RSA private key")
    return key


def load_public_key(
    path: Path, setting: str = "FIREBLOCKS_WEBHOOK_PUBLIC_KEY_FILE"
) -> RSAPublicKey:
    """Fireblocks' webhook RSA public key: PEM SubjectPublicKeyInfo."""
    return parse_public_key_pem(_read(path, setting), what=f"{setting} {path}")


def parse_public_key_pem(pem: bytes, what: str = "the key") -> RSAPublicKey:
    """An RSA public key from PEM bytes; KeyFileError `"<what> is not a PEM RSA public key"`."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{what} is not a PEM RSA public key") from None
    if not isinstance(key, RSAPublicKey):
        raise KeyFileError(f"{what} is not a PEM RSA public key")
    return key


def body_hash(body: bytes) -> str:
    """Lower-case hex SHA-256 of the exact body bytes (the JWT's `bodyHash`)."""
    return hashlib.sha256(body).hexdigest()


def request_jwt(
    private_key: RSAPrivateKey,
    api_key: str,
    uri: str,
    body: bytes,
    *,
    now: float,
    nonce: str | None = None,
) -> str:
    """The Bearer token of one request. `uri` is the path with its query as sent, `body`
    the exact bytes sent (b"" for a GET)."""
    iat = int(now)
    claims = {
        "uri": uri,
        "nonce": nonce if nonce is not None else str(uuid.uuid4()),
        "iat": iat,
        "exp": iat + JWT_LIFETIME_S,
        "sub": api_key,
        "bodyHash": body_hash(body),
    }
    return jwt.encode(claims, private_key, algorithm="RS256")


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KeyFileError(f"{setting} {path} cannot be read: {reason}") from None
