"""The sandbox Fireblocks over real HTTP (uvicorn): transfers that walk and really pay on the
sandbox ledger, exactly once; the JWT check; every fault; payments into the vault; deposit
addresses; vault balances; signed webhooks to a real receiver. Ledgers close on their own
every 50 ms and transactions step every 20 ms."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.routing import Mount
from stellar_sdk import Asset, Keypair

from anchorpay.sandbox.app import Sandbox, create_sandbox_app, sandbox_routes
from anchorpay.sandbox.fireblocks import (
    SANDBOX_FIREBLOCKS_API_KEY,
    SANDBOX_FIREBLOCKS_VAULT_ACCOUNT,
    SANDBOX_FIREBLOCKS_VAULT_ID,
)
from anchorpay.sandbox.fireblocks.service import FireblocksSandbox
from anchorpay.sandbox.state import NATIVE, OpRecord, TxRecord
from support.fireblocks_fixtures import (
    ASSET_MAPPING,
    FireblocksApi,
    FireblocksNet,
    WebhookReceiver,
    compact,
    fireblocks_net,
    signed_headers,
    verify_webhook,
    wait_for,
)
from support.sandbox_fixtures import ASSETS, USDC, USDC_ISSUER, payment, serve

WALK = ["SUBMITTED", "PENDING_SIGNATURE", "BROADCASTING", "CONFIRMING", "COMPLETED"]


def transfer(
    address: str,
    amount: str = "12.5",
    asset: str = "XLM",
    tag: str | None = None,
    external_tx_id: str | None = "payout-1",
) -> dict[str, Any]:
    one_time: dict[str, Any] = {"address": address}
    if tag is not None:
        one_time["tag"] = tag
    body: dict[str, Any] = {
        "operation": "TRANSFER",
        "assetId": asset,
        "amount": amount,
        "source": {"type": "VAULT_ACCOUNT", "id": "0"},
        "destination": {"type": "ONE_TIME_ADDRESS", "oneTimeAddress": one_time},
        "note": "anchorpay payout",
    }
    if external_tx_id is not None:
        body["externalTxId"] = external_tx_id
    return body


def vault_payments(net: FireblocksNet) -> list[OpRecord]:
    """Every payment operation the vault made on the ledger (failed ones too)."""
    ops = net.sandbox.ledger.records(account=net.vault, include_failed=True, limit=200)
    return [op for op in ops if op.type == "payment" and op.source_account == net.vault]


def ledger_tx(net: FireblocksNet, tx_hash: str) -> TxRecord:
    return net.sandbox.ledger.transactions[tx_hash]


async def create(net: FireblocksNet, body: dict[str, Any], **kwargs: Any) -> str:
    response = await net.api.post("/v1/transactions", body, **kwargs)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "SUBMITTED"
    return str(response.json()["id"])


async def fault(net: FireblocksNet, **body: Any) -> None:
    response = await net.dev.post("/faults", json=body)
    assert response.status_code == 204, response.text


async def jwks(net: FireblocksNet) -> dict[str, Any]:
    response = await net.dev.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return dict(response.json())


@pytest.fixture
async def net() -> AsyncIterator[FireblocksNet]:
    async with fireblocks_net() as net:
        yield net


# --- transfers --------------------------------------------------------------------------------


TRANSFER_CASES = [  # (asset, Fireblocks asset, tag, Stellar memo type, memo)
    ("stellar:native", "XLM", "12345", "id", "12345"),
    (USDC, "USDC_XLM", "invoice 7", "text", "invoice 7"),
    ("stellar:native", "XLM", None, "none", None),
    ("stellar:native", "XLM", "007", "text", "007"),  # a leading zero would be lost as an id
    ("stellar:native", "XLM", str(2**64), "text", str(2**64)),  # too big for an id
]


async def test_transfers_walk_to_completed_and_pay_exactly_once() -> None:
    receiver = WebhookReceiver()
    async with serve(receiver.app()) as hook_base, fireblocks_net() as net:
        net.fb.webhook_url = f"{hook_base}/hook"
        vault_xlm, vault_usdc = net.fb.vault.balance(NATIVE), net.fb.vault.balance(USDC)
        made = []
        for i, (asset, fb_asset, tag, memo_type, memo) in enumerate(TRANSFER_CASES):
            user = net.sandbox.create_account(trust=(USDC,))
            body = transfer(user.public_key, "12.5", fb_asset, tag, external_tx_id=f"p-{i}")
            made.append((await create(net, body), user.public_key, asset, memo_type, memo))
        for tx_id, *_ in made:
            await net.wait_status(tx_id, "COMPLETED")

        for i, (tx_id, user, asset, memo_type, memo) in enumerate(made):
            response = await net.api.get(f"/v1/transactions/{tx_id}")
            assert response.status_code == 200
            tx = response.json()
            tag = TRANSFER_CASES[i][2]
            assert tx["status"] == "COMPLETED" and tx["subStatus"] == ""
            assert tx["externalTxId"] == f"p-{i}" and tx["operation"] == "TRANSFER"
            assert tx["assetId"] == TRANSFER_CASES[i][1] and tx["amount"] == 12.5
            assert tx["amountInfo"] == {
                "amount": "12.5",
                "requestedAmount": "12.5",
                "netAmount": "12.5",
            }
            assert tx["source"]["type"] == "VAULT_ACCOUNT" and tx["source"]["id"] == "0"
            assert tx["destination"]["type"] == "ONE_TIME_ADDRESS"
            assert tx["sourceAddress"] == SANDBOX_FIREBLOCKS_VAULT_ACCOUNT
            assert tx["destinationAddress"] == user
            assert tx["destinationTag"] == (tag or "")
            assert tx["note"] == "anchorpay payout"
            assert tx["createdAt"] <= tx["lastUpdated"]

            [op] = [op for op in vault_payments(net) if op.details["to"] == user]
            assert op.successful and op.tx_hash == tx["txHash"]
            assert op.details["amount"] == "12.5000000"
            assert op.details.get("asset_code", "native") == (
                "native" if asset == NATIVE else "USDC"
            )
            record = ledger_tx(net, tx["txHash"])
            assert (record.memo_type, record.memo) == (memo_type, memo)
            start = Decimal(100) if asset == NATIVE else Decimal(0)
            assert net.sandbox.ledger.balance(user, asset) == start + Decimal("12.5")
        assert len(vault_payments(net)) == len(TRANSFER_CASES)
        fees = Decimal("0.00001") * len(TRANSFER_CASES)
        assert net.fb.vault.balance(NATIVE) == vault_xlm - Decimal("12.5") * 4 - fees
        assert net.fb.vault.balance(USDC) == vault_usdc - Decimal("12.5")

        await wait_for(lambda: len(receiver.received) == 5 * len(TRANSFER_CASES))
        keys = await jwks(net)
        for body, headers in receiver.received:
            verify_webhook(body, headers, keys)
        events = receiver.events()
        for tx_id, *_ in made:
            mine = [e for e in events if e["resourceId"] == tx_id]
            assert [e["data"]["status"] for e in mine] == WALK
            assert [e["eventType"] for e in mine] == ["transaction.created"] + [
                "transaction.status.updated"
            ] * 4
            assert all(e["workspaceId"] == "sandbox" and e["eventVersion"] == 1 for e in mine)
            assert mine[2]["data"]["txHash"] == ""  # BROADCASTING
            assert mine[3]["data"]["txHash"] == net.fb.transactions[tx_id].tx_hash != ""


async def test_duplicate_external_tx_id_is_refused_and_pays_once(net: FireblocksNet) -> None:
    user = net.sandbox.create_account()
    tx_id = await create(net, transfer(user.public_key, external_tx_id="p-1"))
    again = await net.api.post("/v1/transactions", transfer(user.public_key, external_tx_id="p-1"))
    assert again.status_code == 400
    assert again.json() == {
        "message": "A transaction with externalTxId p-1 already exists",
        "code": 1438,
    }
    await net.wait_status(tx_id, "COMPLETED")
    by_external = await net.api.get("/v1/transactions/external_tx_id/p-1")
    assert by_external.status_code == 200 and by_external.json()["id"] == tx_id
    assert len(net.fb.transactions) == 1
    assert len(vault_payments(net)) == 1


async def test_idempotency_key_replays_the_first_answer(net: FireblocksNet) -> None:
    user = net.sandbox.create_account()
    key = {"Idempotency-Key": "k-1"}
    first = await net.api.post("/v1/transactions", transfer(user.public_key), headers=key)
    await net.wait_status(first.json()["id"], "COMPLETED")
    again = await net.api.post("/v1/transactions", transfer(user.public_key), headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() == {"id": first.json()["id"], "status": "SUBMITTED"}
    assert len(net.fb.transactions) == 1
    assert len(vault_payments(net)) == 1


async def test_transfers_made_together_all_pay_with_their_own_sequence_numbers(
    net: FireblocksNet,
) -> None:
    users = [net.sandbox.create_account() for _ in range(6)]
    ids = await asyncio.gather(
        *(
            create(net, transfer(u.public_key, f"{i + 1}", external_tx_id=f"p-{i}"))
            for i, u in enumerate(users)
        )
    )
    for tx_id in ids:
        await net.wait_status(tx_id, "COMPLETED")
    ops = vault_payments(net)
    assert len(ops) == 6 and all(op.successful for op in ops)
    sequences = {ledger_tx(net, op.tx_hash).sequence for op in ops}
    assert len(sequences) == 6
    paid = {op.details["to"]: op.details["amount"] for op in ops}
    assert paid == {u.public_key: f"{i + 1}.0000000" for i, u in enumerate(users)}


async def test_a_payment_the_ledger_refuses_fails_with_the_result_code(net: FireblocksNet) -> None:
    missing = Keypair.random().public_key  # no such account: op_no_destination
    tx_id = await create(net, transfer(missing))
    await net.wait_status(tx_id, "FAILED")
    tx = net.fb.transactions[tx_id]
    assert tx.sub_status == "REJECTED_BY_BLOCKCHAIN"
    assert tx.note == "Stellar result code: tx_failed (op_no_destination)"
    assert tx.tx_hash and not ledger_tx(net, tx.tx_hash).successful


@pytest.mark.parametrize(
    ("sandbox_fault", "answers"),
    [
        # answered 504 while held out of the ledger: watched until it lands
        ({"kind": "delay_inclusion", "ledgers": 4}, ["TimedOut"]),
        # lost before the ledger saw it: the same envelope is given again
        ({"kind": "drop_next_submission"}, ["TimedOut", "TxRecord"]),
    ],
)
async def test_a_submission_that_times_out_is_watched_and_never_replaced(
    sandbox_fault: dict[str, Any], answers: list[str]
) -> None:
    async with fireblocks_net(submit_timeout_s=0.08) as net:
        submitted: list[tuple[str, str]] = []
        real_submit = net.sandbox.submit

        async def spy(xdr: str, timeout_s: float | None = None) -> Any:
            answer = await real_submit(xdr, timeout_s)
            submitted.append((xdr, type(answer).__name__))
            return answer

        net.sandbox.submit = spy  # type: ignore[method-assign]
        async with httpx.AsyncClient(base_url=f"{net.base}/sandbox") as sandbox_dev:
            assert (await sandbox_dev.post("/faults", json=sandbox_fault)).status_code == 204
        user = net.sandbox.create_account()
        tx_id = await create(net, transfer(user.public_key))
        await net.wait_status(tx_id, "COMPLETED", "FAILED")
        assert net.fb.transactions[tx_id].status == "COMPLETED"
        [op] = vault_payments(net)
        assert op.tx_hash == net.fb.transactions[tx_id].tx_hash
        assert [kind for _, kind in submitted] == answers
        assert len({xdr for xdr, _ in submitted}) == 1


# --- create-time validation -------------------------------------------------------------------


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


G = SANDBOX_FIREBLOCKS_VAULT_ACCOUNT
BASE = transfer(G)


AMOUNT = "amount must be a positive decimal string with at most 7 decimals"
TAG = (
    "destination.oneTimeAddress.tag must be a memo id (a uint64) or a memo text of at most 28 bytes"
)
BAD_BODIES: list[tuple[Any, str]] = [
    ([], "The request body must be a JSON object"),
    (BASE | {"operation": "BURN"}, "operation must be TRANSFER"),
    (BASE | {"assetId": "BTC"}, "assetId must be one of: USDC_XLM, XLM"),
    (_without(BASE, "assetId"), "assetId must be one of: USDC_XLM, XLM"),
    (BASE | {"amount": "0"}, AMOUNT),
    (BASE | {"amount": "-1"}, AMOUNT),
    (BASE | {"amount": "abc"}, AMOUNT),
    (BASE | {"amount": "NaN"}, AMOUNT),
    (BASE | {"amount": 5}, AMOUNT),  # a JSON number, never sent by the contract
    (BASE | {"amount": "1.00000001"}, AMOUNT),
    (
        BASE | {"source": {"type": "VAULT_ACCOUNT", "id": "9"}},
        'source must be {"type": "VAULT_ACCOUNT", "id": "0"}',
    ),
    (_without(BASE, "destination"), "destination must be a JSON object"),
    (
        BASE | {"destination": {"type": "VAULT_ACCOUNT"}},
        "destination.type must be ONE_TIME_ADDRESS",
    ),
    (
        transfer("GNOTANACCOUNT"),
        "destination.oneTimeAddress.address must be a Stellar account id (G…)",
    ),
    (transfer(G, tag="x" * 29), TAG),
    (transfer(G, tag="9" * 29), TAG),  # too big for an id, too long for a text
    (transfer(G) | {"externalTxId": ""}, "externalTxId must be a non-empty string"),
    (BASE | {"note": 3}, "note must be a string"),
]


async def test_bad_create_bodies_are_refused_with_the_field(net: FireblocksNet) -> None:
    for body, message in BAD_BODIES:
        response = await net.api.request("POST", "/v1/transactions", body)
        assert (response.status_code, response.json()) == (400, {"message": message, "code": 1000})
    bad_json = signed_headers("POST", "/v1/transactions", b"{")
    response = await net.api.client.post("/v1/transactions", content=b"{", headers=bad_json)
    assert response.json() == {"message": "The request body must be valid JSON", "code": 1000}
    assert net.fb.transactions == {}


async def test_external_tx_id_is_optional(net: FireblocksNet) -> None:
    user = net.sandbox.create_account()
    first = await create(net, transfer(user.public_key, external_tx_id=None))
    second = await create(net, transfer(user.public_key, external_tx_id=None))
    assert first != second
    assert net.fb.transactions[first].to_json()["externalTxId"] is None


# --- authentication ---------------------------------------------------------------------------

OTHER_KEY_PEM = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
)


def bad_jwts() -> list[tuple[dict[str, Any], dict[str, str], str]]:
    """(request_jwt options, headers replacing the signed ones, the reason refused)."""
    now = time.time()
    return [
        (
            {"private_pem": OTHER_KEY_PEM},
            {},
            "JWT signature does not verify with the API key's public key",
        ),
        (
            {"signed_uri": "/v1/transactions/other"},
            {},
            "JWT uri does not match the request path and query",
        ),
        (
            {"signed_uri": "/v1/transactions?x=1"},
            {},
            "JWT uri does not match the request path and query",
        ),
        (
            {"signed_uri": "/fireblocks/v1/transactions"},  # neither relative nor the full path
            {},
            "JWT uri does not match the request path and query",
        ),
        (
            {"signed_uri": "/other/sandbox/fireblocks/v1/transactions"},
            {},
            "JWT uri does not match the request path and query",
        ),
        ({"bodyHash": "0" * 64}, {}, "JWT bodyHash does not match the request body"),
        ({"now": now - 60}, {}, "JWT has expired"),
        ({"lifetime_s": 58}, {}, "JWT exp is more than 57 seconds after iat"),
        ({"lifetime_s": 60}, {}, "JWT exp is more than 57 seconds after iat"),
        ({"lifetime_s": 3600}, {}, "JWT exp is more than 57 seconds after iat"),
        ({"now": now + 120}, {}, "JWT iat is in the future"),
        ({"sub": "someone-else"}, {}, "JWT sub does not match the API key"),
        ({"api_key": "no-such-key"}, {}, "unknown API key"),
        ({"bodyHash": None}, {}, "JWT has no bodyHash claim"),
        ({"uri": None}, {}, "JWT has no uri claim"),
        ({}, {"Authorization": ""}, "missing Bearer JWT in the Authorization header"),
        ({}, {"Authorization": "Basic abc"}, "missing Bearer JWT in the Authorization header"),
        ({}, {"Authorization": "Bearer not-a-jwt"}, "malformed JWT"),
        ({}, {"X-API-Key": ""}, "missing X-API-Key header"),
    ]


async def test_requests_with_a_bad_jwt_are_refused_and_create_nothing(net: FireblocksNet) -> None:
    user = net.sandbox.create_account()
    for jwt_options, headers, reason in bad_jwts():
        response = await net.api.post(
            "/v1/transactions", transfer(user.public_key), headers=headers, **jwt_options
        )
        assert response.status_code == 401, reason
        assert response.json() == {"message": f"Unauthorized: {reason}", "code": -7}
    assert net.fb.transactions == {}
    assert net.fb.counters["POST /v1/transactions"] == len(bad_jwts())


async def test_an_hs256_jwt_and_a_wrong_query_are_refused(net: FireblocksNet) -> None:
    body = b""
    headers = signed_headers("GET", "/v1/transactions?limit=5", body)
    response = await net.api.client.get("/v1/transactions?limit=6", headers=headers)
    assert response.json()["message"] == (
        "Unauthorized: JWT uri does not match the request path and query"
    )
    token = jwt.encode({"uri": "/v1/transactions"}, "secret" * 6, algorithm="HS256")
    headers = {"X-API-Key": SANDBOX_FIREBLOCKS_API_KEY, "Authorization": f"Bearer {token}"}
    response = await net.api.client.get("/v1/transactions", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized: JWT algorithm must be RS256", "code": -7}


async def test_a_small_clock_skew_and_an_exact_query_are_accepted(net: FireblocksNet) -> None:
    response = await net.api.get("/v1/transactions?limit=5&sort=ASC", now=time.time() + 30)
    assert response.status_code == 200 and response.json() == []


@pytest.mark.parametrize("lifetime_s", [25, 29, 30, 55, 56, 57])
async def test_token_lifetimes_up_to_the_sdks_55_s_plus_skew_are_accepted(
    net: FireblocksNet, lifetime_s: int
) -> None:
    """Fireblocks documents 30 s, its official SDKs sign exp = iat + 55 and are served."""
    response = await net.api.get("/v1/transactions?limit=5", lifetime_s=lifetime_s)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "signed_uri",
    ["/v1/transactions?limit=5", "/sandbox/fireblocks/v1/transactions?limit=5"],
)
async def test_the_uri_may_be_signed_with_or_without_the_mount_prefix(
    net: FireblocksNet, signed_uri: str
) -> None:
    """anchorpay's client signs the path after its base URL; the official SDKs sign the whole
    path of the URL (their base path includes /sandbox/fireblocks)."""
    response = await net.api.get("/v1/transactions?limit=5", signed_uri=signed_uri)
    assert response.status_code == 200, response.text
    wrong_query = signed_uri.replace("limit=5", "limit=6")
    refused = await net.api.get("/v1/transactions?limit=5", signed_uri=wrong_query)
    assert refused.json() == {
        "message": "Unauthorized: JWT uri does not match the request path and query",
        "code": -7,
    }


async def test_an_api_key_registered_through_the_dev_route_works(net: FireblocksNet) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    response = await net.dev.post("/api_keys", json={"api_key": "k2", "public_key_pem": public_pem})
    assert response.status_code == 201
    answer = await net.api.get("/v1/transactions", api_key="k2", private_pem=private_pem)
    assert answer.status_code == 200
    bad = await net.dev.post("/api_keys", json={"api_key": "k3", "public_key_pem": "nope"})
    assert bad.status_code == 400
    assert bad.json() == {"error": "The field 'public_key_pem' must be an RSA public key in PEM."}


# --- faults -----------------------------------------------------------------------------------


async def test_unavailable_after_create_creates_then_answers_503(net: FireblocksNet) -> None:
    await fault(net, kind="unavailable_after_create")
    user = net.sandbox.create_account()
    key = {"Idempotency-Key": "k-503"}
    response = await net.api.post("/v1/transactions", transfer(user.public_key), headers=key)
    assert response.status_code == 503
    assert response.json()["code"] == 503
    [tx] = net.fb.transactions.values()
    await net.wait_status(tx.id, "COMPLETED")
    # the client retries with the same key and learns the id; nothing new is made
    again = await net.api.post("/v1/transactions", transfer(user.public_key), headers=key)
    assert again.status_code == 200 and again.json() == {"id": tx.id, "status": "SUBMITTED"}
    assert len(net.fb.transactions) == 1 and len(vault_payments(net)) == 1


async def test_rate_limited_creates_nothing(net: FireblocksNet) -> None:
    await fault(net, kind="rate_limited", count=2)
    user = net.sandbox.create_account()
    for _ in range(2):
        response = await net.api.post("/v1/transactions", transfer(user.public_key))
        assert response.status_code == 429 and response.json()["code"] == 429
    assert net.fb.transactions == {}
    tx_id = await create(net, transfer(user.public_key))
    await net.wait_status(tx_id, "COMPLETED")
    assert len(vault_payments(net)) == 1


async def test_slow_answer_creates_while_the_client_gives_up(net: FireblocksNet) -> None:
    await fault(net, kind="slow_answer", delay_s=0.5)
    user = net.sandbox.create_account()
    with pytest.raises(httpx.ReadTimeout):
        await net.api.post("/v1/transactions", transfer(user.public_key), timeout_s=0.1)
    [tx] = net.fb.transactions.values()
    await net.wait_status(tx.id, "COMPLETED")
    assert len(vault_payments(net)) == 1
    lookup = await net.api.get("/v1/transactions/external_tx_id/payout-1")
    assert lookup.json()["status"] == "COMPLETED"


async def test_reject_by_policy_pays_nothing(net: FireblocksNet) -> None:
    await fault(net, kind="reject_by_policy")
    user = net.sandbox.create_account()
    tx_id = await create(net, transfer(user.public_key))
    await net.wait_status(tx_id, "REJECTED")
    await asyncio.sleep(0.1)
    tx = net.fb.transactions[tx_id]
    assert (tx.status, tx.sub_status, tx.tx_hash) == ("REJECTED", "BLOCKED_BY_POLICY", "")
    assert vault_payments(net) == []
    statuses = [e.status for e in net.fb.outbox.events]
    assert statuses == ["SUBMITTED", "REJECTED"]


async def test_fail_on_chain_pays_nothing(net: FireblocksNet) -> None:
    await fault(net, kind="fail_on_chain")
    user = net.sandbox.create_account()
    tx_id = await create(net, transfer(user.public_key))
    await net.wait_status(tx_id, "FAILED")
    await asyncio.sleep(0.1)
    tx = net.fb.transactions[tx_id]
    assert (tx.status, tx.sub_status) == ("FAILED", "REJECTED_BY_BLOCKCHAIN")
    assert "tx_failed" in tx.note
    assert vault_payments(net) == []
    statuses = [e.status for e in net.fb.outbox.events]
    assert statuses == ["SUBMITTED", "PENDING_SIGNATURE", "BROADCASTING", "FAILED"]
    # the fault was for one transfer only
    second = await create(net, transfer(user.public_key, external_tx_id="payout-2"))
    await net.wait_status(second, "COMPLETED")


BAD_FAULTS: list[tuple[Any, str]] = [
    (
        {"kind": "nope"},
        "The fault kind must be one of: unavailable_after_create, rate_limited, slow_answer, "
        "reject_by_policy, fail_on_chain, drop_webhooks.",
    ),
    ({"kind": "rate_limited", "count": 0}, "The field 'count' must be an integer from 1 to 1000."),
    ({"kind": "slow_answer"}, "The field 'delay_s' must be a number of seconds from 0 to 60."),
    (
        {"kind": "slow_answer", "delay_s": 61},
        "The field 'delay_s' must be a number of seconds from 0 to 60.",
    ),
    ([1], "The body must be a JSON object."),
]


async def test_bad_fault_bodies_are_refused(net: FireblocksNet) -> None:
    for body, error in BAD_FAULTS:
        response = await net.dev.post("/faults", json=body)
        assert (response.status_code, response.json()) == (400, {"error": error})
    response = await net.dev.post("/faults", content=b"{")
    assert response.json() == {"error": "The body must be valid JSON."}


async def test_faults_are_shown_and_cleared(net: FireblocksNet) -> None:
    await fault(net, kind="rate_limited", count=3)
    await fault(net, kind="slow_answer", delay_s=1)
    state = (await net.dev.get("/state")).json()
    assert state["faults"]["rate_limited"] == 3 and state["faults"]["slow_answer"] == [1.0]
    assert (await net.dev.delete("/faults")).status_code == 204
    state = (await net.dev.get("/state")).json()
    assert state["faults"]["rate_limited"] == 0 and state["faults"]["slow_answer"] == []


# --- incoming payments ------------------------------------------------------------------------


async def test_payments_into_the_vault_become_completed_incoming_transactions(
    net: FireblocksNet,
) -> None:
    usdc = Asset("USDC", USDC_ISSUER)
    cases: list[tuple[dict[str, Any], str, Asset | None, str]] = [
        ({"memo_text": "dep-42"}, "dep-42", usdc, "USDC_XLM"),
        ({"memo_id": 123456789}, "123456789", None, "XLM"),
        ({}, "", usdc, "USDC_XLM"),
    ]
    paid = {}
    for memo, tag, asset, fb_asset in cases:
        user = net.sandbox.create_account(trust=(USDC,))
        net.sandbox.ledger.add_trustline(user.public_key, USDC, balance=Decimal(50))
        xdr = payment(net.sandbox, user, net.vault, "7.25", asset, **memo)
        answer = await net.sandbox.submit(xdr)
        assert isinstance(answer, TxRecord) and answer.successful
        paid[answer.hash] = (user.public_key, tag, fb_asset)
    await wait_for(lambda: len(net.fb.transactions) == len(cases))
    for tx in list(net.fb.transactions.values()):
        await net.wait_status(tx.id, "COMPLETED")
    for tx in net.fb.transactions.values():
        got = (await net.api.get(f"/v1/transactions/{tx.id}")).json()
        payer, tag, fb_asset = paid[got["txHash"]]
        assert got["status"] == "COMPLETED" and got["subStatus"] == ""
        assert got["source"]["type"] == "UNKNOWN"
        assert got["destination"] == {
            "type": "VAULT_ACCOUNT",
            "id": SANDBOX_FIREBLOCKS_VAULT_ID,
            "name": "anchorpay sandbox vault",
        }
        assert (got["sourceAddress"], got["destinationAddress"]) == (payer, net.vault)
        assert got["destinationTag"] == tag
        assert (got["assetId"], got["amount"], got["externalTxId"]) == (fb_asset, 7.25, None)
        assert got["amountInfo"]["amount"] == "7.25"
        mine = [e for e in net.fb.outbox.events if e.resource_id == tx.id]
        assert [(e.event_type, e.status) for e in mine] == [
            ("transaction.created", "CONFIRMING"),
            ("transaction.status.updated", "COMPLETED"),
        ]


async def test_the_vaults_own_transfers_are_not_incoming(net: FireblocksNet) -> None:
    user = net.sandbox.create_account()
    tx_id = await create(net, transfer(user.public_key))
    await net.wait_status(tx_id, "COMPLETED")
    await asyncio.sleep(0.1)  # a few more ledger scans
    assert list(net.fb.transactions) == [tx_id]


# --- vault and deposit addresses --------------------------------------------------------------


async def test_deposit_addresses_are_the_vault_with_fresh_tags(net: FireblocksNet) -> None:
    tags = set()
    for i in range(5):
        response = await net.api.post(
            "/v1/vault/accounts/0/XLM/addresses", {"description": f"user {i}"}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["address"] == SANDBOX_FIREBLOCKS_VAULT_ACCOUNT
        assert body["tag"].isdigit() and len(body["tag"]) == 9
        assert set(body) == {
            "address",
            "tag",
            "legacyAddress",
            "enterpriseAddress",
            "bip44AddressIndex",
        }
        tags.add(body["tag"])
    assert len(tags) == 5
    no_vault = await net.api.post("/v1/vault/accounts/7/XLM/addresses", {})
    assert no_vault.status_code == 404 and no_vault.json()["code"] == 11001
    no_asset = await net.api.post("/v1/vault/accounts/0/BTC/addresses", {})
    assert no_asset.status_code == 404 and no_asset.json() == {
        "message": "Asset BTC not found in vault account 0",
        "code": 11002,
    }


async def test_vault_balances_are_the_ledger_balances(net: FireblocksNet) -> None:
    user = net.sandbox.create_account(trust=(USDC,))
    tx_id = await create(net, transfer(user.public_key, "100.25", "USDC_XLM"))
    await net.wait_status(tx_id, "COMPLETED")
    account = (await net.api.get("/v1/vault/accounts/0")).json()
    assert account["id"] == "0" and account["hiddenOnUI"] is False
    by_id = {a["id"]: a for a in account["assets"]}
    assert by_id["USDC_XLM"]["balance"] == "999899.75"
    xlm = net.sandbox.ledger.balance(net.vault)
    assert xlm is not None
    assert Decimal(by_id["XLM"]["total"]) == xlm
    one = (await net.api.get("/v1/vault/accounts/0/USDC_XLM")).json()
    assert one == {
        "id": "USDC_XLM",
        "total": "999899.75",
        "balance": "999899.75",
        "available": "999899.75",
        "pending": "0",
        "frozen": "0",
        "lockedAmount": "0",
    }
    missing = await net.api.get("/v1/vault/accounts/1")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Vault account 1 not found", "code": 11001}
    assert (await net.api.get("/v1/vault/accounts/0/BTC")).json()["code"] == 11002


# --- reads ------------------------------------------------------------------------------------


async def test_listing_pages_by_created_at_and_filters_by_status(net: FireblocksNet) -> None:
    user = net.sandbox.create_account()
    await fault(net, kind="reject_by_policy")
    ids = [await create(net, transfer(user.public_key, external_tx_id=f"p-{i}")) for i in range(3)]
    for tx_id in ids:
        await net.wait_status(tx_id, "COMPLETED", "REJECTED")
    created = [net.fb.transactions[i].created_at for i in ids]

    ascending = (await net.api.get("/v1/transactions?orderBy=createdAt&sort=ASC")).json()
    assert [t["id"] for t in ascending] == ids
    descending = (await net.api.get("/v1/transactions")).json()
    assert [t["id"] for t in descending] == ids[::-1]
    after = (await net.api.get(f"/v1/transactions?after={created[1]}&sort=ASC")).json()
    assert [t["id"] for t in after][-2:] == ids[1:] and ids[1] in [t["id"] for t in after]
    limited = (await net.api.get("/v1/transactions?sort=ASC&limit=2")).json()
    assert [t["id"] for t in limited] == ids[:2]
    rejected = (await net.api.get("/v1/transactions?status=REJECTED")).json()
    assert [t["id"] for t in rejected] == ids[:1]
    bad = await net.api.get("/v1/transactions?limit=501")
    assert bad.status_code == 400
    assert bad.json() == {"message": "limit must be an integer from 1 to 500", "code": 1000}
    missing = await net.api.get("/v1/transactions/nope")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Transaction nope not found", "code": 1405}
    missing = await net.api.get("/v1/transactions/external_tx_id/nope")
    assert missing.status_code == 404 and missing.json()["code"] == 1405
    state = (await net.dev.get("/state")).json()
    assert state["counters"]["POST /v1/transactions"] == 3
    assert len(state["transactions"]) == 3 and state["vault_address"] == net.vault


# --- webhooks ---------------------------------------------------------------------------------


async def test_webhooks_are_retried_until_delivered_in_order() -> None:
    receiver = WebhookReceiver(statuses=[500, 503])
    async with serve(receiver.app()) as hook_base, fireblocks_net() as net:
        response = await net.dev.post(
            "/settings", json={"webhook_url": f"{hook_base}/hook", "step_s": 0.01}
        )
        assert response.json() == {"step_s": 0.01, "webhook_url": f"{hook_base}/hook"}
        user = net.sandbox.create_account()
        first = await create(net, transfer(user.public_key, external_tx_id="a"))
        second = await create(net, transfer(user.public_key, external_tx_id="b"))
        await wait_for(lambda: len(receiver.received) == 10)
        events = receiver.events()
        for tx_id in (first, second):
            mine = [e["data"]["status"] for e in events if e["resourceId"] == tx_id]
            assert mine == WALK
        outbox = (await net.dev.get("/webhooks")).json()
        assert len(outbox) == 10 and all(e["delivery"] == "delivered" for e in outbox)
        assert sum(e["attempts"] for e in outbox) == 12
        # one 500 and one 503 went to the first event(s): each transaction's chain waited
        assert all(e["attempts"] <= 3 and e["lastError"] == "" for e in outbox)
        keys = await jwks(net)
        for event in outbox:  # the outbox holds the exact bytes and headers: replayable
            verify_webhook(event["body"].encode(), event["headers"], keys)
        assert len({e["id"] for e in events}) == 10


async def test_a_webhook_is_given_up_after_five_retries() -> None:
    receiver = WebhookReceiver(statuses=[500] * 6)
    async with serve(receiver.app()) as hook_base, fireblocks_net() as net:
        net.fb.outbox.retry_delay_s = 0.01
        net.fb.webhook_url = f"{hook_base}/hook"
        user = net.sandbox.create_account()
        tx_id = await create(net, transfer(user.public_key))
        await net.wait_status(tx_id, "COMPLETED")
        await wait_for(lambda: len(receiver.received) == 4)
        first = net.fb.outbox.events[0]
        assert (first.delivery, first.attempts, first.last_error) == ("failed", 6, "HTTP 500")
        assert receiver.attempts == 6 + 4


async def test_drop_webhooks_keeps_them_in_the_outbox_only() -> None:
    receiver = WebhookReceiver()
    async with serve(receiver.app()) as hook_base, fireblocks_net() as net:
        net.fb.webhook_url = f"{hook_base}/hook"
        await fault(net, kind="drop_webhooks", count=2)
        user = net.sandbox.create_account()
        tx_id = await create(net, transfer(user.public_key))
        await net.wait_status(tx_id, "COMPLETED")
        await wait_for(lambda: len(receiver.received) == 3)
        assert [e["data"]["status"] for e in receiver.events()] == WALK[2:]
        outbox = (await net.dev.get("/webhooks")).json()
        assert [e["delivery"] for e in outbox] == ["dropped"] * 2 + ["delivered"] * 3
        assert [e["status"] for e in outbox] == WALK


async def test_without_a_webhook_url_events_are_kept_but_not_sent(net: FireblocksNet) -> None:
    user = net.sandbox.create_account()
    tx_id = await create(net, transfer(user.public_key))
    await net.wait_status(tx_id, "COMPLETED")
    await wait_for(lambda: all(e.delivery == "skipped" for e in net.fb.outbox.events))
    assert len(net.fb.outbox.events) == 5


async def test_the_jwks_serves_the_webhook_key(net: FireblocksNet) -> None:
    keys = await jwks(net)
    [key] = keys["keys"]
    assert set(key) == {"kty", "kid", "use", "alg", "n", "e"}
    assert (key["kty"], key["use"], key["alg"], key["e"]) == ("RSA", "sig", "RS512", "AQAB")
    assert "=" not in key["n"]


async def test_bad_settings_are_refused(net: FireblocksNet) -> None:
    response = await net.dev.post("/settings", json={"step_s": 0})
    assert response.json() == {
        "error": "The field 'step_s' must be a number of seconds above 0, at most 60."
    }
    response = await net.dev.post("/settings", json={"webhook_url": "ftp://x"})
    assert response.json() == {"error": "The field 'webhook_url' must be an http(s) URL or null."}


# --- mounting ---------------------------------------------------------------------------------


async def test_the_sandbox_app_without_fireblocks_is_unchanged() -> None:
    sandbox = Sandbox(assets=ASSETS, ledger_close_s=None)
    async with serve(create_sandbox_app(sandbox)) as base, httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/sandbox/fireblocks/state")).status_code == 404
        assert (await client.get(f"{base}/sandbox/stats")).status_code == 200


async def test_a_second_sandbox_fireblocks_reuses_the_vault_account() -> None:
    sandbox = Sandbox(assets=ASSETS, ledger_close_s=None)
    first = FireblocksSandbox(sandbox, ASSET_MAPPING)
    before = sandbox.ledger.balance(first.vault_address)
    FireblocksSandbox(sandbox, ASSET_MAPPING)
    assert sandbox.ledger.balance(first.vault_address) == before == Decimal(10_000_000)
    assert sandbox.ledger.balance(first.vault_address, USDC) == Decimal(1_000_000)


async def test_a_body_hash_covers_the_exact_bytes(net: FireblocksNet) -> None:
    """The sandbox hashes the raw bytes: the same JSON spaced differently is another body."""
    user = net.sandbox.create_account()
    body = transfer(user.public_key)
    headers = signed_headers("POST", "/v1/transactions", compact(body))
    spaced = compact(body).replace(b",", b", ")
    response = await net.api.client.post("/v1/transactions", content=spaced, headers=headers)
    assert response.status_code == 401
    response = await net.api.client.post("/v1/transactions", content=compact(body), headers=headers)
    assert response.status_code == 200


async def test_mounted_deeper_the_jwt_uri_stays_relative_to_the_base_url() -> None:
    """sandbox_routes(sandbox, fireblocks) inside another app (as anchorpay's app mounts it):
    the `uri` claim is the path after the Fireblocks mount, wherever that is, or the whole
    path as sent; a part of the prefix is neither."""
    sandbox = Sandbox(assets=ASSETS, ledger_close_s=0.05)
    fb = FireblocksSandbox(sandbox, ASSET_MAPPING, step_s=0.02)
    app = Starlette(
        routes=[Mount("/outer", routes=[Mount("/sandbox", routes=sandbox_routes(sandbox, fb))])]
    )
    await sandbox.start()
    await fb.start()
    try:
        async with (
            serve(app) as base,
            httpx.AsyncClient(base_url=f"{base}/outer/sandbox/fireblocks") as client,
        ):
            api = FireblocksApi(client)
            user = sandbox.create_account()
            response = await api.post("/v1/transactions", transfer(user.public_key))
            assert response.status_code == 200, response.text
            await wait_for(lambda: fb.transactions[response.json()["id"]].status == "COMPLETED")
            path = "/v1/transactions/external_tx_id/payout-1"
            assert (await api.get(path)).status_code == 200
            full = await api.get(path, signed_uri=f"/outer/sandbox/fireblocks{path}")
            assert full.status_code == 200, full.text
            partial = await api.get(path, signed_uri=f"/sandbox/fireblocks{path}")
            assert partial.json()["message"] == (
                "Unauthorized: JWT uri does not match the request path and query"
            )
            assert (await client.get("/state")).json()["counters"]["POST /v1/transactions"] == 1
    finally:
        await fb.stop()
        await sandbox.stop()
