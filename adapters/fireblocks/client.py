"""The Fireblocks REST client: signed requests, typed answers, one error per outcome.

Outcomes: a 2xx body parsed into a model; a non-2xx answer -> FireblocksApiError (the request
was seen); no answer -> FireblocksUnavailable (it may or may not have happened); a 2xx body
that does not parse -> FireblocksProtocolError. There are no retries here: after a timeout
only the caller knows whether to look the transfer up by its external id first.

The path and query are built as one string, signed into the JWT's `uri` and sent verbatim,
and the body bytes are built once, hashed and sent: Fireblocks checks both byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from anchorpay.adapters.fireblocks.auth import request_jwt
from anchorpay.adapters.fireblocks.errors import (
    FireblocksApiError,
    FireblocksError,
    FireblocksProtocolError,
    FireblocksUnavailable,
)
from anchorpay.adapters.fireblocks.models import (
    AddressPage,
    CreatedTransaction,
    DepositAddress,
    FbTransaction,
    TransferRequest,
    VaultAccount,
    VaultAsset,
)
from anchorpay.clock import SYSTEM
from anchorpay.http import AsyncClient, HttpTimeout, HttpTransportError, Response, make_client
from anchorpay.metrics import Metrics

__all__ = [
    "FireblocksApiError",
    "FireblocksClient",
    "FireblocksError",
    "FireblocksProtocolError",
    "FireblocksUnavailable",
    "normalise_base_url",
]

T = TypeVar("T")


def normalise_base_url(base_url: str) -> str:
    """`https://api.fireblocks.io/v1/` -> `https://api.fireblocks.io`: paths carry `/v1`."""
    url = base_url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url.removesuffix("/v1").rstrip("/")
    return url


def endpoint_label(method: str, path: str) -> str:
    """A closed label for a request: the method and the API's first two path segments
    (`GET /v1/transactions`, `POST /v1/vault`), never an id."""
    segments = [p for p in path.split("?", 1)[0].split("/") if p][:2]
    return f"{method} /{'/'.join(segments)}"


class FireblocksClient:
    """Fireblocks over HTTP. `client` may be injected (tests, shared pools); requests use
    absolute URLs so an injected client needs no base URL, and it is closed by `aclose()`
    only when this object created it."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        private_key: RSAPrivateKey,
        *,
        timeout_s: float = 30.0,
        client: AsyncClient | None = None,
        clock: Callable[[], float] = SYSTEM.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self._metrics = metrics
        self._api_key = api_key
        self._private_key = private_key
        self._clock = clock
        self._owns_client = client is None
        self._client = client if client is not None else make_client(self.base_url, timeout_s)

    def __repr__(self) -> str:  # the API key and the private key stay out of logs
        return f"FireblocksClient(base_url={self.base_url!r})"

    # --- transactions ----------------------------------------------------------------------

    async def create_transaction(
        self, request: TransferRequest, *, idempotency_key: str
    ) -> CreatedTransaction:
        response = await self._request(
            "POST",
            "/v1/transactions",
            body=request.to_json(),
            headers={"Idempotency-Key": idempotency_key},
        )
        return self._parse(response, "POST /v1/transactions", CreatedTransaction.from_json)

    async def get_transaction(self, fb_id: str) -> FbTransaction | None:
        return await self._get_transaction(f"/v1/transactions/{_segment(fb_id)}")

    async def get_by_external_id(self, external_tx_id: str) -> FbTransaction | None:
        return await self._get_transaction(
            f"/v1/transactions/external_tx_id/{_segment(external_tx_id)}"
        )

    async def list_transactions(
        self, *, after_ms: int, limit: int = 200, status: str | None = None
    ) -> list[FbTransaction]:
        """Transactions created at or after `after_ms` (inclusive), oldest first."""
        params: list[tuple[str, str | int]] = [
            ("after", after_ms),
            ("limit", limit),
            ("orderBy", "createdAt"),
            ("sort", "ASC"),
        ]
        if status is not None:
            params.append(("status", status))
        path = f"/v1/transactions?{urlencode(params)}"
        response = await self._request("GET", path)

        def parse(data: object) -> list[FbTransaction]:
            if not isinstance(data, list):
                raise FireblocksProtocolError("the transaction list is not a JSON array")
            return [FbTransaction.from_json(item) for item in data]

        return self._parse(response, f"GET {path}", parse)

    # --- vault -----------------------------------------------------------------------------

    async def new_deposit_address(
        self, vault_account_id: str, asset_id: str, description: str = ""
    ) -> DepositAddress:
        path = f"/v1/vault/accounts/{_segment(vault_account_id)}/{_segment(asset_id)}/addresses"
        response = await self._request("POST", path, body={"description": description})
        return self._parse(response, f"POST {path}", DepositAddress.from_json)

    async def vault_addresses(self, vault_account_id: str, asset_id: str) -> list[str]:
        """The vault's addresses for an asset (read only, every page): where its payments
        come from. `GET .../addresses_paginated`, followed by `paging.after`."""
        base = (
            f"/v1/vault/accounts/{_segment(vault_account_id)}/{_segment(asset_id)}"
            "/addresses_paginated"
        )
        found: dict[str, None] = {}
        after: str | None = None
        for _ in range(1000):  # a bound on a misbehaving cursor, far above real vaults
            path = base + (f"?{urlencode([('after', after)])}" if after else "")
            response = await self._request("GET", path)
            page = self._parse(response, f"GET {path}", AddressPage.from_json)
            found.update(dict.fromkeys(page.addresses))
            if not page.after or page.after == after:
                break
            after = page.after
        return list(found)

    async def get_vault_account(self, vault_account_id: str) -> VaultAccount:
        path = f"/v1/vault/accounts/{_segment(vault_account_id)}"
        response = await self._request("GET", path)
        return self._parse(response, f"GET {path}", VaultAccount.from_json)

    async def get_vault_asset(self, vault_account_id: str, asset_id: str) -> VaultAsset:
        path = f"/v1/vault/accounts/{_segment(vault_account_id)}/{_segment(asset_id)}"
        response = await self._request("GET", path)
        return self._parse(response, f"GET {path}", VaultAsset.from_json)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # --- HTTP ------------------------------------------------------------------------------

    async def _get_transaction(self, path: str) -> FbTransaction | None:
        try:
            response = await self._request("GET", path)
        except FireblocksApiError as exc:
            # Only Fireblocks' own "not found" answer means "no such transaction". A 404
            # without the documented body (a proxy, a wrong base URL) must not be read as
            # "never created": the caller would create the payout a second time.
            if exc.is_not_found and exc.code is not None:
                return None
            raise
        return self._parse(response, f"GET {path}", FbTransaction.from_json)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: object | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send one signed request; a non-2xx answer raises FireblocksApiError."""
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        token = request_jwt(self._private_key, self._api_key, path, content, now=self._clock())
        sent_headers = {"X-API-Key": self._api_key, "Authorization": f"Bearer {token}"}
        if body is not None:
            sent_headers["Content-Type"] = "application/json"
        sent_headers.update(headers or {})
        try:
            response = await self._client.request(
                method,
                self.base_url + path,
                content=content if body is not None else None,
                headers=sent_headers,
            )
        # The exception text of httpx may carry the request; only its type name is kept.
        except HttpTimeout as exc:
            self._count(method, path, 0)
            raise FireblocksUnavailable(
                f"Fireblocks {method} {path} timed out ({type(exc).__name__})"
            ) from None
        except HttpTransportError as exc:
            self._count(method, path, 0)
            raise FireblocksUnavailable(
                f"Fireblocks {method} {path} connection failed ({type(exc).__name__})"
            ) from None
        self._count(method, path, response.status_code)
        if not 200 <= response.status_code < 300:
            raise self._api_error(response)
        return response

    def _count(self, method: str, path: str, status: int) -> None:
        if self._metrics is not None:
            self._metrics.fireblocks_calls.labels(endpoint_label(method, path), str(status)).inc()

    def _api_error(self, response: Response) -> FireblocksApiError:
        text = response.text
        message: str | None = None
        code: int | None = None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            raw_message, raw_code = data.get("message"), data.get("code")
            if isinstance(raw_message, str) and type(raw_code) is int:
                message, code = raw_message, raw_code
        if message is None:
            message = text[:200] if text.strip() else "(empty body)"
        return FireblocksApiError(response.status_code, self._redact(message), code)

    def _parse(self, response: Response, what: str, parse: Callable[[object], T]) -> T:
        try:
            data: object = response.json()
        except ValueError:
            raise FireblocksProtocolError(
                f"Fireblocks {what} answered {response.status_code} with a body that is not JSON",
                status=response.status_code,
            ) from None
        try:
            return parse(data)
        except FireblocksProtocolError as exc:
            status = response.status_code
            raise FireblocksProtocolError(
                f"Fireblocks {what} answered {status} with an unexpected body: {exc}",
                status=status,
            ) from None

    def _redact(self, text: str) -> str:
        # Belt and braces: an error body that echoes the request must not leak the API key.
        return text.replace(self._api_key, "***") if self._api_key else text


def _segment(value: str) -> str:
    """One path segment, percent-encoded ("/" included) so an id cannot change the route."""
    return quote(value, safe="")
