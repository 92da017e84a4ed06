"""Fireblocks webhook signatures with real RSA signatures: the legacy header, the detached
JWS with its JWKS (served by respx: cached, one refetch per 30 s for an unknown kid, down ->
VerifierUnavailable), no fallback from a bad JWS to the legacy header; and the key files."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from anchorpay.adapters.fireblocks.auth import (
    KeyFileError,
    load_private_key,
    load_public_key,
    parse_public_key_pem,
)
from anchorpay.adapters.fireblocks.webhook_signature import (
    BadSignature,
    VerifierUnavailable,
    WebhookVerifier,
    jwk_from_public_key,
    sign_jws,
    sign_legacy,
)

JWKS_URL = "https://fb.test/.well-known/jwks.json"
# Generated once per module: 2048-bit keys are slow to make.
SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
BODY = json.dumps(
    {"id": "ev-1", "eventType": "transaction.status.updated", "data": {"id": "t", "status": "X"}}
).encode()
JWKS = {
    "keys": [
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "AA", "y": "AA"},  # skipped
        jwk_from_public_key(SIGNER.public_key(), "k1"),
    ]
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


MakeVerifier = Callable[..., WebhookVerifier]


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[respx.Route, Clock, MakeVerifier]]:
    clock = Clock()
    made: list[WebhookVerifier] = []

    def make(**kwargs: Any) -> WebhookVerifier:
        options: dict[str, Any] = {"legacy_key": None, "jwks_url": JWKS_URL, "clock": clock}
        verifier = WebhookVerifier(**{**options, **kwargs})
        made.append(verifier)
        return verifier

    with respx.mock(assert_all_called=False) as router:
        route = router.get(JWKS_URL).respond(200, json=JWKS)
        yield route, clock, make
        for verifier in made:
            await verifier.aclose()


# --- legacy Fireblocks-Signature -----------------------------------------------------------


def legacy_verifier() -> WebhookVerifier:
    return WebhookVerifier(legacy_key=SIGNER.public_key(), jwks_url=None)


async def test_legacy_valid_with_any_header_case() -> None:
    signature = sign_legacy(SIGNER, BODY)
    verifier = legacy_verifier()
    assert await verifier.verify(BODY, {"Fireblocks-Signature": signature}) == "legacy"
    assert await verifier.verify(BODY, {"fireblocks-signature": signature}) == "legacy"
    assert await verifier.verify(BODY, {"FIREBLOCKS-SIGNATURE": signature}) == "legacy"


@pytest.mark.parametrize(
    ("body", "signature", "reason"),
    [
        (BODY + b" ", sign_legacy(SIGNER, BODY), "Fireblocks-Signature does not match the body"),
        (BODY, sign_legacy(OTHER, BODY), "Fireblocks-Signature does not match the body"),
        (BODY, "!!not base64!!", "Fireblocks-Signature is not base64"),
        (BODY, "", "Fireblocks-Signature does not match the body"),
    ],
    ids=["tampered-body", "wrong-key", "malformed-base64", "empty"],
)
async def test_legacy_refused(body: bytes, signature: str, reason: str) -> None:
    with pytest.raises(BadSignature) as caught:
        await legacy_verifier().verify(body, {"Fireblocks-Signature": signature})
    assert str(caught.value) == reason


async def test_missing_or_unusable_headers() -> None:
    with pytest.raises(BadSignature, match=r"^no Fireblocks signature header$"):
        await legacy_verifier().verify(BODY, {"Content-Type": "application/json"})
    # A legacy header without a configured legacy key cannot be checked.
    no_key = WebhookVerifier(legacy_key=None, jwks_url=None)
    with pytest.raises(BadSignature, match=r"^no Fireblocks signature header$"):
        await no_key.verify(BODY, {"Fireblocks-Signature": sign_legacy(SIGNER, BODY)})


async def test_jws_header_without_jwks_url_falls_to_legacy() -> None:
    headers = {
        "Fireblocks-Webhook-Signature": "garbage",
        "Fireblocks-Signature": sign_legacy(SIGNER, BODY),
    }
    assert await legacy_verifier().verify(BODY, headers) == "legacy"


# --- JWS Fireblocks-Webhook-Signature ------------------------------------------------------


async def test_jws_valid(jwks: Any) -> None:
    route, _, make = jwks
    verifier = make()
    signature = sign_jws(SIGNER, "k1", BODY)
    assert signature.count(".") == 2 and ".." in signature
    assert await verifier.verify(BODY, {"fireblocks-webhook-signature": signature}) == "jws"
    assert route.call_count == 1


async def test_jws_signature_format_is_standard_detached_jws(jwks: Any) -> None:
    header, empty, signature = sign_jws(SIGNER, "k1", BODY).split(".")
    assert empty == ""
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {
        "alg": "RS512",
        "kid": "k1",
        "typ": "JOSE",
    }
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    SIGNER.public_key().verify(
        raw, f"{header}.{b64url(BODY)}".encode(), padding.PKCS1v15(), hashes.SHA512()
    )


def rs256_jws(body: bytes) -> str:
    header = b64url(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JOSE"}).encode())
    signature = SIGNER.sign(
        f"{header}.{b64url(body)}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{header}..{b64url(signature)}"


@pytest.mark.parametrize(
    ("body", "signature", "reason"),
    [
        (BODY + b"x", sign_jws(SIGNER, "k1", BODY), "does not match the body"),
        (BODY, sign_jws(OTHER, "k1", BODY), "does not match the body"),
        (BODY, rs256_jws(BODY), "alg 'RS256' is not RS512"),
        (BODY, "abc", "is not a detached JWS"),
        (BODY, sign_jws(SIGNER, "k1", BODY).replace("..", ".e30."), "is not a detached JWS"),
        (BODY, "%%%..abc", "is not valid base64url JSON"),
    ],
    ids=["tampered-body", "wrong-key", "wrong-alg", "not-jws", "attached-payload", "bad-b64"],
)
async def test_jws_refused(jwks: Any, body: bytes, signature: str, reason: str) -> None:
    _, _, make = jwks
    with pytest.raises(BadSignature, match=reason):
        await make().verify(body, {"Fireblocks-Webhook-Signature": signature})


async def test_bad_jws_does_not_fall_back_to_a_valid_legacy_signature(jwks: Any) -> None:
    _, _, make = jwks
    verifier = make(legacy_key=SIGNER.public_key())
    headers = {
        "Fireblocks-Webhook-Signature": sign_jws(OTHER, "k1", BODY),
        "Fireblocks-Signature": sign_legacy(SIGNER, BODY),
    }
    with pytest.raises(BadSignature, match="does not match the body"):
        await verifier.verify(BODY, headers)
    # Without the JWS header the same legacy signature is accepted.
    legacy_only = {"Fireblocks-Signature": headers["Fireblocks-Signature"]}
    assert await verifier.verify(BODY, legacy_only) == "legacy"


async def test_jwks_is_cached_until_cache_s(jwks: Any) -> None:
    route, clock, make = jwks
    verifier = make(cache_s=600.0)
    headers = {"Fireblocks-Webhook-Signature": sign_jws(SIGNER, "k1", BODY)}

    await verifier.verify(BODY, headers)
    clock.now += 599
    await verifier.verify(BODY, headers)
    assert route.call_count == 1

    clock.now += 1
    await verifier.verify(BODY, headers)
    assert route.call_count == 2


async def test_unknown_kid_refetches_at_most_once_per_30_s(jwks: Any) -> None:
    route, clock, make = jwks
    verifier = make()
    await verifier.verify(BODY, {"Fireblocks-Webhook-Signature": sign_jws(SIGNER, "k1", BODY)})
    assert route.call_count == 1
    forged = {"Fireblocks-Webhook-Signature": sign_jws(OTHER, "forged", BODY)}

    for _ in range(5):
        with pytest.raises(BadSignature, match="kid 'forged' is not in the JWKS"):
            await verifier.verify(BODY, forged)
        clock.now += 5
    assert route.call_count == 2  # one refetch for five forged kids within 30 s

    clock.now += 10  # 35 s after the refetch
    with pytest.raises(BadSignature):
        await verifier.verify(BODY, forged)
    assert route.call_count == 3


async def test_rotated_key_is_learnt_by_the_refetch(jwks: Any) -> None:
    route, _, make = jwks
    rotated = {"keys": [*JWKS["keys"], jwk_from_public_key(OTHER.public_key(), "k2")]}
    route.side_effect = [httpx.Response(200, json=JWKS), httpx.Response(200, json=rotated)]
    verifier = make()
    await verifier.verify(BODY, {"Fireblocks-Webhook-Signature": sign_jws(SIGNER, "k1", BODY)})

    headers = {"Fireblocks-Webhook-Signature": sign_jws(OTHER, "k2", BODY)}
    assert await verifier.verify(BODY, headers) == "jws"
    assert route.call_count == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.Response(503, text="down"),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"keys": [{"kty": "EC", "kid": "k1"}]}),
    ],
    ids=["connect", "timeout", "503", "not-json", "no-rsa-key"],
)
async def test_jwks_down_is_unavailable(jwks: Any, failure: Any) -> None:
    route, clock, make = jwks
    if isinstance(failure, Exception):
        route.side_effect = failure
    else:
        route.return_value = failure
    verifier = make()
    headers = {"Fireblocks-Webhook-Signature": sign_jws(SIGNER, "k1", BODY)}

    with pytest.raises(VerifierUnavailable):
        await verifier.verify(BODY, headers)
    with pytest.raises(VerifierUnavailable):  # within 30 s: no new fetch
        await verifier.verify(BODY, headers)
    assert route.call_count == 1

    route.side_effect = None
    route.return_value = httpx.Response(200, json=JWKS)
    clock.now += 30
    assert await verifier.verify(BODY, headers) == "jws"
    assert route.call_count == 2


async def test_refresh_counts_the_signing_keys_verify_would_use(jwks: Any) -> None:
    route, _clock, make = jwks
    assert await make().refresh() == 1  # the EC entry is skipped, as by verify
    route.return_value = httpx.Response(503, text="down")
    with pytest.raises(VerifierUnavailable) as caught:
        await make().refresh()
    assert str(caught.value) == "ValueError: HTTP 503"
    with pytest.raises(VerifierUnavailable) as caught:
        await WebhookVerifier(legacy_key=None, jwks_url=None).refresh()
    assert str(caught.value) == "no JWKS URL is configured"


async def test_cached_key_outlives_a_failed_refresh(jwks: Any) -> None:
    route, clock, make = jwks
    verifier = make(cache_s=60.0)
    headers = {"Fireblocks-Webhook-Signature": sign_jws(SIGNER, "k1", BODY)}
    await verifier.verify(BODY, headers)

    route.return_value = httpx.Response(500, text="down")
    clock.now += 61
    assert await verifier.verify(BODY, headers) == "jws"
    assert route.call_count == 2
    # An unknown kid while the JWKS is down may be a rotation we cannot see: retry later.
    with pytest.raises(VerifierUnavailable):
        await verifier.verify(BODY, {"Fireblocks-Webhook-Signature": sign_jws(OTHER, "k9", BODY)})


def test_jwk_from_public_key_round_trips() -> None:
    jwk = jwk_from_public_key(SIGNER.public_key(), "k1")
    assert set(jwk) == {"kty", "kid", "use", "alg", "n", "e"}
    assert (jwk["kty"], jwk["kid"], jwk["use"], jwk["alg"], jwk["e"]) == (
        "RSA",
        "k1",
        "sig",
        "RS512",
        "AQAB",
    )
    n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4)), "big")
    assert n == SIGNER.public_key().public_numbers().n


# --- key files -----------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_private_key_pkcs8_and_pkcs1(tmp_path: Path) -> None:
    for name, fmt in (
        ("pkcs8.pem", serialization.PrivateFormat.PKCS8),
        ("pkcs1.pem", serialization.PrivateFormat.TraditionalOpenSSL),
    ):
        pem = SIGNER.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        key = load_private_key(write(tmp_path / name, pem))
        assert key.public_key().public_numbers() == SIGNER.public_key().public_numbers()


def test_private_key_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    garbage = write(tmp_path / "garbage.pem", b"-----BEGIN PRIVATE KEY-----\nnope\n")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ec_key = write(tmp_path / "ec.pem", ec_pem)
    encrypted = write(
        tmp_path / "encrypted.pem",
        SIGNER.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        ),
    )
    setting = "FIREBLOCKS_SECRET_KEY_FILE"
    cases = {
        missing: f"{setting} {missing} cannot be read: No such file or directory",
        garbage: f"{setting} {garbage} is not a PEM RSA private key",
        ec_key: f"{setting} {ec_key} is not a PEM RSA private key",
        encrypted: f"{setting} {encrypted} is not a PEM RSA private key",
        tmp_path: f"{setting} {tmp_path} cannot be read: Is a directory",
    }
    for path, message in cases.items():
        with pytest.raises(KeyFileError) as caught:
            load_private_key(path)
        assert str(caught.value) == message
        assert isinstance(caught.value, ValueError) and caught.value.__cause__ is None


def test_public_key_file(tmp_path: Path) -> None:
    pem = SIGNER.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = load_public_key(write(tmp_path / "pub.pem", pem))
    assert key.public_numbers() == SIGNER.public_key().public_numbers()
    assert parse_public_key_pem(pem).public_numbers() == key.public_numbers()

    private = write(
        tmp_path / "private.pem",
        SIGNER.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    with pytest.raises(KeyFileError) as caught:
        load_public_key(private, setting="WEBHOOK_KEY")
    assert str(caught.value) == f"WEBHOOK_KEY {private} is not a PEM RSA public key"
    ec_pub = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="is not a PEM RSA public key"):
        parse_public_key_pem(ec_pub)
    with pytest.raises(KeyFileError) as caught:
        load_public_key(tmp_path / "nope.pem")
    assert str(caught.value) == (
        f"FIREBLOCKS_WEBHOOK_PUBLIC_KEY_FILE {tmp_path / 'nope.pem'} cannot be read: "
        "No such file or directory"
    )
