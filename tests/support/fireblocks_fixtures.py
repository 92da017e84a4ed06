"""Shared helpers for tests of the sandbox Fireblocks and of clients talking to it (imported
explicitly, not via conftest): request JWTs signed as docs/fireblocks-wire.md says, a small
signed API client, the sandbox network + sandbox Fireblocks served on a real socket, a real
webhook receiver and the verification of both webhook signatures."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import (
    RSAPrivateKey,
    RSAPublicKey,
    RSAPublicNumbers,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from anchorpay.sandbox.app import Sandbox, create_sandbox_app
from anchorpay.sandbox.fireblocks import (
    SANDBOX_FIREBLOCKS_API_KEY,
    SANDBOX_FIREBLOCKS_API_SECRET_PEM,
    SANDBOX_FIREBLOCKS_WEBHOOK_PUBLIC_PEM,
)
from anchorpay.sandbox.fireblocks.service import FireblocksSandbox
from support.sandbox_fixtures import ASSETS, USDC, serve

ASSET_MAPPING = {"stellar:native": "XLM", USDC: "USDC_XLM"}
EMPTY_BODY_HASH = hashlib.sha256(b"").hexdigest()


def compact(body: Any) -> bytes:
    """POST bodies as the contract sends them: compact JSON."""
    return json.dumps(body, separators=(",", ":")).encode()


def request_jwt(
    uri: str,
    body: bytes = b"",
    /,
    *,
    api_key: str = SANDBOX_FIREBLOCKS_API_KEY,
    private_pem: str | bytes = SANDBOX_FIREBLOCKS_API_SECRET_PEM,
    now: float | None = None,
    lifetime_s: int = 25,
    algorithm: str = "RS256",
    **claims: Any,
) -> str:
    """A Fireblocks request JWT for `uri` (path and query, relative to the base URL) and the
    exact body bytes. `claims` override or add claims; a claim set to None is left out."""
    iat = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "uri": uri,
        "nonce": str(uuid.uuid4()),
        "iat": iat,
        "exp": iat + lifetime_s,
        "sub": api_key,
        "bodyHash": hashlib.sha256(body).hexdigest(),
    }
    payload.update(claims)  # positional-only parameters above: `uri` may be a claim here
    payload = {k: v for k, v in payload.items() if v is not None}
    key = private_pem if algorithm != "RS256" else _private_key(private_pem)
    return jwt.encode(payload, key, algorithm=algorithm)


@functools.lru_cache(maxsize=16)
def _private_key(pem: str | bytes) -> RSAPrivateKey:
    """Loaded once per PEM: loading checks the key, which takes tens of milliseconds."""
    key = serialization.load_pem_private_key(
        pem.encode() if isinstance(pem, str) else pem, password=None
    )
    assert isinstance(key, RSAPrivateKey)
    return key


def signed_headers(
    method: str,
    uri: str,
    body: bytes = b"",
    /,
    *,
    api_key: str = SANDBOX_FIREBLOCKS_API_KEY,
    private_pem: str | bytes = SANDBOX_FIREBLOCKS_API_SECRET_PEM,
    **jwt_options: Any,
) -> dict[str, str]:
    """The headers of a signed request: X-API-Key, Authorization and, for a POST, JSON."""
    token = request_jwt(uri, body, api_key=api_key, private_pem=private_pem, **jwt_options)
    headers = {"X-API-Key": api_key, "Authorization": f"Bearer {token}"}
    if method.upper() != "GET":
        headers["Content-Type"] = "application/json"
    return headers


@dataclass
class FireblocksApi:
    """A minimal signed client for the sandbox's /v1 API (tests only)."""

    client: httpx.AsyncClient  # base URL …/sandbox/fireblocks
    api_key: str = SANDBOX_FIREBLOCKS_API_KEY
    private_pem: str | bytes = SANDBOX_FIREBLOCKS_API_SECRET_PEM

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        signed_uri: str | None = None,
        **jwt_options: Any,
    ) -> httpx.Response:
        """Send `path` (with its query) signed for `signed_uri` (default: `path`); `headers`
        override the signed ones, `jwt_options` go to `request_jwt`."""
        raw = b"" if body is None else compact(body)
        jwt_options = {"api_key": self.api_key, "private_pem": self.private_pem} | jwt_options
        uri = path if signed_uri is None else signed_uri
        sent = signed_headers(method, uri, raw, **jwt_options) | (headers or {})
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        return await self.client.request(method, path, content=raw, headers=sent, **extra)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, body if body is not None else {}, **kwargs)


@dataclass
class FireblocksNet:
    sandbox: Sandbox
    fb: FireblocksSandbox
    base: str  # the server's root URL
    api: FireblocksApi
    dev: httpx.AsyncClient  # base URL …/sandbox/fireblocks, no JWT

    @property
    def vault(self) -> str:
        return self.fb.vault_address

    async def wait_status(self, tx_id: str, *statuses: str, timeout_s: float = 5.0) -> None:
        await wait_for(lambda: self.fb.transactions[tx_id].status in statuses, timeout_s)


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 (polls in-process state with no event)
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def fireblocks_net(
    *,
    step_s: float = 0.02,
    ledger_close_s: float = 0.05,
    webhook_url: str | None = None,
    submit_timeout_s: float = 30.0,
) -> AsyncIterator[FireblocksNet]:
    """The sandbox network (ledgers closing on their own) with a sandbox Fireblocks, served
    by `create_sandbox_app` on a real socket."""
    sandbox = Sandbox(
        assets=ASSETS, ledger_close_s=ledger_close_s, submit_timeout_s=submit_timeout_s
    )
    fb = FireblocksSandbox(sandbox, ASSET_MAPPING, step_s=step_s, webhook_url=webhook_url)
    async with serve(create_sandbox_app(sandbox, fb)) as base:
        root = f"{base}/sandbox/fireblocks"
        async with (
            httpx.AsyncClient(base_url=root, timeout=10) as api_client,
            httpx.AsyncClient(base_url=root, timeout=10) as dev,
        ):
            yield FireblocksNet(sandbox, fb, base, FireblocksApi(api_client), dev)


# --- webhooks ----------------------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    """A real HTTP endpoint for webhooks: records every POST; answers `statuses` in turn
    (then 200), so tests can make deliveries fail."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    attempts: int = 0

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.attempts += 1
            status = self.statuses.pop(0) if self.statuses else 200
            if status < 300:
                self.received.append((await request.body(), dict(request.headers)))
            return Response(status_code=status)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.received]


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_public_key(jwks: dict[str, Any], kid: str) -> RSAPublicKey:
    for key in jwks["keys"]:
        if key["kid"] == kid:
            n = int.from_bytes(_b64url_decode(key["n"]), "big")
            e = int.from_bytes(_b64url_decode(key["e"]), "big")
            return RSAPublicNumbers(e, n).public_key()
    raise AssertionError(f"no key {kid} in the JWKS")


def verify_webhook(
    body: bytes,
    headers: dict[str, str],
    jwks: dict[str, Any],
    public_pem: str = SANDBOX_FIREBLOCKS_WEBHOOK_PUBLIC_PEM,
) -> None:
    """Check both signatures of a webhook (raises InvalidSignature or AssertionError)."""
    lower = {k.lower(): v for k, v in headers.items()}
    protected, payload, signature = lower["fireblocks-webhook-signature"].split(".")
    assert payload == "", "the JWS must be detached"
    header = json.loads(_b64url_decode(protected))
    assert header["alg"] == "RS512" and header["typ"] == "JOSE"
    encoded_body = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
    jwk_public_key(jwks, header["kid"]).verify(
        _b64url_decode(signature),
        f"{protected}.{encoded_body}".encode(),
        padding.PKCS1v15(),
        hashes.SHA512(),
    )
    legacy = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(legacy, RSAPublicKey)
    legacy.verify(
        base64.b64decode(lower["fireblocks-signature"]), body, padding.PKCS1v15(), hashes.SHA512()
    )
