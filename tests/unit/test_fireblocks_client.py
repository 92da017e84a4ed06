"""FireblocksClient against the wire contract (docs/fireblocks-wire.md), mocked with respx:
the signed JWT (uri with query, bodyHash of the exact bytes sent, nonce, iat/exp), headers,
the create body, base URL normalisation, the error mapping and the model parsing."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric import rsa

from anchorpay.adapters.fireblocks.client import (
    FireblocksApiError,
    FireblocksClient,
    FireblocksProtocolError,
    FireblocksUnavailable,
)
from anchorpay.adapters.fireblocks.models import (
    FAILURES,
    STATUSES,
    CreatedTransaction,
    DepositAddress,
    FbTransaction,
    TransferRequest,
    VaultAccount,
    VaultAsset,
)

BASE = "https://fb.test/sandbox/fireblocks"
API_KEY = "api-key-0f3c9e52-secret"
NOW = 1_700_000_000.75
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # once per module: slow
DEST = "GDJLBYYKMCXNVVNABOE66NYXQGIA5AC5D223Z2KF6ZEYK4UBCA7FKLTG"
VAULT_ADDR = "GDPWCPMWBW6PCXSXVZ4ISXK7245P6QEVSARTRJ4AG3ZMHBJTMCLZQ5GS"

TX_JSON: dict[str, Any] = {
    "id": "0b6b4d2e-6f5e-4a53-9d8a-3c7d1f0e9a11",
    "externalTxId": "payout-1",
    "status": "CONFIRMING",
    "subStatus": "",
    "txHash": "3389e9f0f1a65f19736cacf544c2e825313e8447f569233bb8db39aa607c8889",
    "operation": "TRANSFER",
    "assetId": "XLM",
    "amount": "99",
    "amountInfo": {"amount": "12.5", "requestedAmount": "12.5", "netAmount": "12.5"},
    "source": {"type": "VAULT_ACCOUNT", "id": "0", "name": "Treasury"},
    "destination": {"type": "ONE_TIME_ADDRESS", "id": "", "name": ""},
    "sourceAddress": VAULT_ADDR,
    "destinationAddress": DEST,
    "destinationTag": "42",
    "createdAt": 1700000000000,
    "lastUpdated": 1700000001000,
    "note": "anchorpay payout payout-1",
}


def transfer(tag: str | None = "42", amount: str = "12.5") -> TransferRequest:
    return TransferRequest(
        asset_id="XLM",
        amount=Decimal(amount),
        vault_account_id="0",
        address=DEST,
        tag=tag,
        external_tx_id="payout-1",
        note="anchorpay payout payout-1",
    )


def claims(request: httpx.Request) -> dict[str, Any]:
    """The request's JWT, checked with the public key (expiry is not checked: NOW is fixed)."""
    auth = request.headers["Authorization"]
    assert auth.startswith("Bearer ")
    token = auth.removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    decoded: dict[str, Any] = jwt.decode(
        token,
        KEY.public_key(),
        algorithms=["RS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    return decoded


def sent_uri(request: httpx.Request) -> str:
    """The path and query as sent, relative to the base URL."""
    return request.url.raw_path.decode().removeprefix("/sandbox/fireblocks")


@pytest.fixture
async def fb() -> AsyncIterator[tuple[respx.MockRouter, FireblocksClient]]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        client = FireblocksClient(BASE, API_KEY, KEY, clock=lambda: NOW)
        yield router, client
        await client.aclose()


# --- signing and the create request --------------------------------------------------------


async def test_create_transaction_sends_the_exact_signed_body(fb: Any) -> None:
    router, client = fb
    route = router.post("/v1/transactions").respond(200, json={"id": "fb-1", "status": "SUBMITTED"})

    created = await client.create_transaction(transfer(), idempotency_key="idem-1")

    assert created == CreatedTransaction(id="fb-1", status="SUBMITTED")
    request = route.calls.last.request
    assert request.content == (
        b'{"operation":"TRANSFER","assetId":"XLM","amount":"12.5",'
        b'"source":{"type":"VAULT_ACCOUNT","id":"0"},'
        b'"destination":{"type":"ONE_TIME_ADDRESS","oneTimeAddress":{"address":"'
        + DEST.encode()
        + b'","tag":"42"}},'
        b'"externalTxId":"payout-1","note":"anchorpay payout payout-1"}'
    )
    assert request.headers["X-API-Key"] == API_KEY
    assert request.headers["Idempotency-Key"] == "idem-1"
    assert request.headers["Content-Type"] == "application/json"
    token = claims(request)
    assert token["uri"] == "/v1/transactions" == sent_uri(request)
    assert token["sub"] == API_KEY
    assert token["iat"] == 1_700_000_000
    assert token["exp"] - token["iat"] == 25
    assert token["bodyHash"] == hashlib.sha256(request.content).hexdigest()
    assert uuid.UUID(token["nonce"]).version == 4
    assert set(token) == {"uri", "nonce", "iat", "exp", "sub", "bodyHash"}


async def test_create_body_without_tag_and_amount_without_exponent(fb: Any) -> None:
    router, client = fb
    route = router.post("/v1/transactions").respond(201, json={"id": "fb-2", "status": "QUEUED"})

    await client.create_transaction(transfer(tag=None, amount="1E+1"), idempotency_key="k")

    body = json.loads(route.calls.last.request.content)
    assert body["destination"] == {"type": "ONE_TIME_ADDRESS", "oneTimeAddress": {"address": DEST}}
    assert body["amount"] == "10"
    assert transfer(amount="0.0000001").to_json()["amount"] == "0.0000001"


@pytest.mark.parametrize("amount", ["0", "-1", "NaN", "Infinity"])
def test_transfer_request_refuses_an_amount_that_is_not_a_payout(amount: str) -> None:
    with pytest.raises(ValueError, match="positive decimal"):
        transfer(amount=amount)


async def test_nonce_is_new_per_request_and_get_hashes_the_empty_body(fb: Any) -> None:
    router, client = fb
    route = router.get(f"/v1/transactions/{TX_JSON['id']}").respond(200, json=TX_JSON)

    await client.get_transaction(TX_JSON["id"])
    await client.get_transaction(TX_JSON["id"])

    first, second = (claims(call.request) for call in route.calls)
    assert first["nonce"] != second["nonce"]
    assert first["bodyHash"] == EMPTY_SHA256
    request = route.calls.last.request
    assert request.content == b""
    assert "Content-Type" not in request.headers
    assert request.headers["X-API-Key"] == API_KEY
    assert first["uri"] == f"/v1/transactions/{TX_JSON['id']}" == sent_uri(request)


async def test_list_signs_the_query_in_order(fb: Any) -> None:
    router, client = fb
    route = router.get("/v1/transactions").respond(200, json=[TX_JSON, {**TX_JSON, "id": "b"}])

    found = await client.list_transactions(after_ms=1700000000000, limit=50, status="COMPLETED")

    assert [t.id for t in found] == [TX_JSON["id"], "b"]
    request = route.calls.last.request
    expected = (
        "/v1/transactions?after=1700000000000&limit=50&orderBy=createdAt&sort=ASC&status=COMPLETED"
    )
    assert sent_uri(request) == expected
    assert claims(request)["uri"] == expected

    await client.list_transactions(after_ms=5)
    assert claims(route.calls.last.request)["uri"] == (
        "/v1/transactions?after=5&limit=200&orderBy=createdAt&sort=ASC"
    )


async def test_external_id_is_one_quoted_path_segment(fb: Any) -> None:
    router, client = fb
    route = router.get(url__regex=r"/v1/transactions/external_tx_id/.*").respond(200, json=TX_JSON)

    found = await client.get_by_external_id("pay/1 x")

    assert found is not None and found.external_tx_id == "payout-1"
    request = route.calls.last.request
    assert sent_uri(request) == "/v1/transactions/external_tx_id/pay%2F1%20x"
    assert claims(request)["uri"] == "/v1/transactions/external_tx_id/pay%2F1%20x"


@pytest.mark.parametrize(
    "configured",
    [BASE, BASE + "/", BASE + "/v1", BASE + "/v1/", "https://fb.test/sandbox/fireblocks//v1"],
)
async def test_base_url_is_normalised(configured: str) -> None:
    with respx.mock(assert_all_called=True) as router:
        route = router.get(f"{BASE}/v1/vault/accounts/0/XLM").respond(200, json={"id": "XLM"})
        client = FireblocksClient(configured, API_KEY, KEY, clock=lambda: NOW)
        assert client.base_url == BASE
        await client.get_vault_asset("0", "XLM")
        await client.aclose()
    assert claims(route.calls.last.request)["uri"] == "/v1/vault/accounts/0/XLM"


# --- vault ---------------------------------------------------------------------------------


async def test_new_deposit_address(fb: Any) -> None:
    router, client = fb
    route = router.post("/v1/vault/accounts/0/XLM/addresses").respond(
        200,
        json={
            "address": VAULT_ADDR,
            "tag": "1234",
            "legacyAddress": "",
            "enterpriseAddress": "",
            "bip44AddressIndex": 0,
        },
    )

    address = await client.new_deposit_address("0", "XLM", description="deposit d-1")

    assert address == DepositAddress(address=VAULT_ADDR, tag="1234")
    request = route.calls.last.request
    assert request.content == b'{"description":"deposit d-1"}'
    assert claims(request)["bodyHash"] == hashlib.sha256(request.content).hexdigest()


async def test_vault_account_and_asset(fb: Any) -> None:
    router, client = fb
    asset = {
        "id": "XLM",
        "total": "100.5",
        "balance": "100.5",
        "available": "90.5",
        "pending": "10",
        "frozen": "0",
        "lockedAmount": "0",
    }
    router.get("/v1/vault/accounts/0").respond(
        200,
        json={"id": "0", "name": "Treasury", "hiddenOnUI": False, "autoFuel": False,
              "assets": [asset]},
    )  # fmt: skip
    router.get("/v1/vault/accounts/0/USDC").respond(200, json={"id": "USDC", "balance": "7"})

    account = await client.get_vault_account("0")
    single = await client.get_vault_asset("0", "USDC")

    expected = VaultAsset("XLM", Decimal("100.5"), Decimal("90.5"), Decimal("10"), Decimal("0"))
    assert account == VaultAccount(id="0", name="Treasury", assets=(expected,))
    assert single == VaultAsset("USDC", Decimal("7"), Decimal(0), Decimal(0), Decimal(0))


async def test_missing_vault_is_an_api_error(fb: Any) -> None:
    router, client = fb
    router.get("/v1/vault/accounts/9").respond(
        404, json={"message": "Vault account 9 not found", "code": 11001}
    )
    with pytest.raises(FireblocksApiError) as caught:
        await client.get_vault_account("9")
    assert caught.value.is_not_found and caught.value.code == 11001


# --- errors --------------------------------------------------------------------------------


async def test_not_found_is_none_for_both_gets(fb: Any) -> None:
    router, client = fb
    missing = {"message": "Transaction not found", "code": 1405}
    router.get("/v1/transactions/nope").respond(404, json=missing)
    router.get("/v1/transactions/external_tx_id/nope").respond(404, json=missing)

    assert await client.get_transaction("nope") is None
    assert await client.get_by_external_id("nope") is None


async def test_a_404_without_fireblocks_body_is_not_read_as_missing(fb: Any) -> None:
    # A wrong base URL must not look like "never created": the payout would be sent twice.
    router, client = fb
    router.get("/v1/transactions/external_tx_id/p").respond(404, text="<html>Not Found</html>")

    with pytest.raises(FireblocksApiError) as caught:
        await client.get_by_external_id("p")
    assert str(caught.value) == "Fireblocks answered HTTP 404: <html>Not Found</html>"
    assert caught.value.code is None


async def test_duplicate_external_id(fb: Any) -> None:
    router, client = fb
    message = "A transaction with externalTxId payout-1 already exists"
    router.post("/v1/transactions").respond(400, json={"message": message, "code": 1438})

    with pytest.raises(FireblocksApiError) as caught:
        await client.create_transaction(transfer(), idempotency_key="k")

    exc = caught.value
    assert exc.is_duplicate_external_id
    assert not exc.is_retryable and not exc.is_not_found
    assert (exc.status, exc.code) == (400, 1438)
    assert str(exc) == f"Fireblocks answered HTTP 400: {message} (code 1438)"


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limits_and_server_errors_are_retryable(fb: Any, status: int) -> None:
    router, client = fb
    router.post("/v1/transactions").respond(status, json={"message": "busy", "code": status})

    with pytest.raises(FireblocksApiError) as caught:
        await client.create_transaction(transfer(), idempotency_key="k")
    assert caught.value.is_retryable and not caught.value.is_duplicate_external_id


async def test_undocumented_error_body_is_cut_to_200_characters(fb: Any) -> None:
    router, client = fb
    router.get("/v1/vault/accounts/0").respond(502, text="x" * 500)

    with pytest.raises(FireblocksApiError) as caught:
        await client.get_vault_account("0")
    assert str(caught.value) == "Fireblocks answered HTTP 502: " + "x" * 200
    assert caught.value.is_retryable


async def test_error_body_echoing_the_api_key_is_redacted(fb: Any) -> None:
    router, client = fb
    router.get("/v1/vault/accounts/0").respond(
        401, json={"message": f"Unauthorized: unknown key {API_KEY}", "code": -7}
    )
    with pytest.raises(FireblocksApiError) as caught:
        await client.get_vault_account("0")
    assert API_KEY not in str(caught.value)
    assert (
        str(caught.value) == "Fireblocks answered HTTP 401: Unauthorized: unknown key *** (code -7)"
    )


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (httpx.ReadTimeout("read timed out"), "timed out"),
        (httpx.ConnectTimeout("connect timed out"), "timed out"),
        (httpx.ConnectError("refused"), "connection failed"),
    ],
)
async def test_no_answer_is_unavailable_and_leaks_no_secret(
    fb: Any, error: Exception, words: str
) -> None:
    router, client = fb
    router.post("/v1/transactions").mock(side_effect=error)

    with pytest.raises(FireblocksUnavailable) as caught:
        await client.create_transaction(transfer(), idempotency_key="k")

    text = str(caught.value)
    assert text.startswith(f"Fireblocks POST /v1/transactions {words}")
    assert API_KEY not in text and "Bearer" not in text
    assert caught.value.status is None and caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/v1/transactions/t", httpx.Response(200, text="not json")),
        ("/v1/transactions/t", httpx.Response(200, json={"status": "QUEUED"})),
        ("/v1/transactions/t", httpx.Response(200, json=["a list"])),
        ("/v1/transactions/t", httpx.Response(200, json={**TX_JSON, "amount": "12,5",
                                                              "amountInfo": None})),
        ("/v1/transactions", httpx.Response(200, json={"transactions": []})),
    ],
)  # fmt: skip
async def test_malformed_2xx_body_is_a_protocol_error(
    fb: Any, path: str, answer: httpx.Response
) -> None:
    router, client = fb
    router.get(path).mock(return_value=answer)

    with pytest.raises(FireblocksProtocolError) as caught:
        if path == "/v1/transactions":
            await client.list_transactions(after_ms=0)
        else:
            await client.get_transaction("t")
    assert caught.value.status == 200


async def test_created_without_id_is_a_protocol_error(fb: Any) -> None:
    router, client = fb
    router.post("/v1/transactions").respond(200, json={"status": "SUBMITTED"})
    with pytest.raises(FireblocksProtocolError, match="has no id"):
        await client.create_transaction(transfer(), idempotency_key="k")


async def test_repr_shows_no_secret() -> None:
    client = FireblocksClient(BASE + "/v1", API_KEY, KEY)
    try:
        assert repr(client) == f"FireblocksClient(base_url={BASE!r})"
        assert API_KEY not in repr(client) and "PRIVATE" not in repr(client)
    finally:
        await client.aclose()


async def test_injected_client_is_not_closed() -> None:
    shared = httpx.AsyncClient()
    client = FireblocksClient(BASE, API_KEY, KEY, client=shared)
    await client.aclose()
    assert not shared.is_closed
    await shared.aclose()


# --- models --------------------------------------------------------------------------------


def test_statuses() -> None:
    assert len(STATUSES) == 15 and len(set(STATUSES)) == 15
    assert STATUSES[0] == "SUBMITTED" and STATUSES[-1] == "FAILED"
    assert FAILURES <= set(STATUSES)


def test_transaction_parses_every_field_preferring_amount_info() -> None:
    tx = FbTransaction.from_json(TX_JSON)
    assert tx == FbTransaction(
        id=TX_JSON["id"],
        external_tx_id="payout-1",
        status="CONFIRMING",
        sub_status="",
        tx_hash=TX_JSON["txHash"],
        operation="TRANSFER",
        asset_id="XLM",
        amount=Decimal("12.5"),
        source_type="VAULT_ACCOUNT",
        source_id="0",
        destination_type="ONE_TIME_ADDRESS",
        destination_id="",
        source_address=VAULT_ADDR,
        destination_address=DEST,
        destination_tag="42",
        created_at_ms=1700000000000,
        last_updated_ms=1700000001000,
        note="anchorpay payout payout-1",
    )


@pytest.mark.parametrize(("raw", "expected"), [("12.5", "12.5"), (12.5, "12.5"), (3, "3")])
def test_transaction_amount_falls_back_to_top_level(raw: object, expected: str) -> None:
    data = {k: v for k, v in TX_JSON.items() if k != "amountInfo"}
    tx = FbTransaction.from_json({**data, "amount": raw})
    assert tx.amount == Decimal(expected) and str(tx.amount) == expected


def test_transaction_tolerates_missing_optional_fields_and_keeps_unknown_status() -> None:
    tx = FbTransaction.from_json({"id": "t", "status": "SOMETHING_NEW", "externalTxId": None})
    assert tx.status == "SOMETHING_NEW"
    assert tx.external_tx_id is None and tx.amount is None
    assert (tx.sub_status, tx.tx_hash, tx.source_type, tx.destination_id, tx.note) == ("",) * 5
    assert (tx.created_at_ms, tx.last_updated_ms) == (0, 0)


def test_incoming_transfer_shape() -> None:
    tx = FbTransaction.from_json(
        {
            **TX_JSON,
            "externalTxId": None,
            "source": {"type": "UNKNOWN", "id": ""},
            "destination": {"type": "VAULT_ACCOUNT", "id": "0"},
            "destinationTag": 77,
        }
    )
    assert tx.external_tx_id is None
    assert (tx.source_type, tx.destination_type, tx.destination_id) == (
        "UNKNOWN",
        "VAULT_ACCOUNT",
        "0",
    )
    assert tx.destination_tag == "77"


@pytest.mark.parametrize("data", [None, [], "tx", {"id": "t"}, {"status": "QUEUED"},
                                  {"id": "", "status": "QUEUED"},
                                  {"id": "t", "status": "QUEUED", "amount": True},
                                  {"id": "t", "status": "QUEUED", "amount": "NaN"},
                                  {"id": "t", "status": "QUEUED", "createdAt": "soon"},
                                  {"id": "t", "status": "QUEUED", "source": "vault"}])  # fmt: skip
def test_transaction_protocol_errors(data: object) -> None:
    with pytest.raises(FireblocksProtocolError):
        FbTransaction.from_json(data)


async def test_vault_addresses_follows_every_page_and_reads_only(fb: Any) -> None:
    router, client = fb
    path = "/v1/vault/accounts/0/XLM/addresses_paginated"
    other = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
    route = router.get(path).mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    "addresses": [{"address": VAULT_ADDR, "tag": "1"}, {"address": VAULT_ADDR}],
                    "paging": {"after": "c1"},
                },
            ),
            httpx.Response(200, json={"addresses": [{"address": other}], "paging": {}}),
        ]
    )
    assert await client.vault_addresses("0", "XLM") == [VAULT_ADDR, other]
    assert [c.request.url.query for c in route.calls] == [b"", b"after=c1"]
    router.get(path).respond(200, json={"paging": {}})
    with pytest.raises(FireblocksProtocolError, match="no 'addresses' array"):
        await client.vault_addresses("0", "XLM")
