"""HorizonLedgerClient against recorded Horizon JSON shapes (respx): parsing, paging and the
error mapping (404 -> LedgerNotFound; timeouts, connection errors, 429, 5xx ->
LedgerUnavailable; a refused submission -> SubmitResult with Horizon's result codes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from stellar_sdk import Account, Asset, Keypair, TransactionBuilder, TransactionEnvelope

from anchorpay.adapters.horizon import HorizonLedgerClient
from anchorpay.adapters.ledger import LedgerError, LedgerNotFound, LedgerUnavailable

H = "https://horizon-testnet.stellar.org"
ACCOUNT = "GDJLBYYKMCXNVVNABOE66NYXQGIA5AC5D223Z2KF6ZEYK4UBCA7FKLTG"
DIST = "GDPWCPMWBW6PCXSXVZ4ISXK7245P6QEVSARTRJ4AG3ZMHBJTMCLZQ5GS"
ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
TX = "3389e9f0f1a65f19736cacf544c2e825313e8447f569233bb8db39aa607c8889"
TESTNET = "Test SDF Network ; September 2015"


def _envelope() -> tuple[str, str]:
    source = Keypair.random()
    env = (
        TransactionBuilder(Account(source.public_key, 41), TESTNET, 100)
        .append_payment_op(ACCOUNT, Asset.native(), "1")
        .set_timeout(60)
        .build()
    )
    env.sign(source)
    return env.to_xdr(), env.hash_hex()


ENVELOPE, ENVELOPE_HASH = _envelope()

ACCOUNT_JSON: dict[str, Any] = {
    "_links": {"self": {"href": f"{H}/accounts/{ACCOUNT}"}},
    "id": ACCOUNT,
    "account_id": ACCOUNT,
    "sequence": "4294967302",
    "sequence_ledger": 4170,
    "sequence_time": "1700000000",
    "subentry_count": 2,
    "last_modified_ledger": 4170,
    "last_modified_time": "2024-01-15T10:00:00Z",
    "thresholds": {"low_threshold": 0, "med_threshold": 0, "high_threshold": 0},
    "flags": {
        "auth_required": False,
        "auth_revocable": False,
        "auth_immutable": False,
        "auth_clawback_enabled": False,
    },
    "balances": [
        {
            "balance": "12.5000000",
            "limit": "922337203685.4775807",
            "buying_liabilities": "0.0000000",
            "selling_liabilities": "0.0000000",
            "last_modified_ledger": 4170,
            "is_authorized": True,
            "is_authorized_to_maintain_liabilities": True,
            "asset_type": "credit_alphanum4",
            "asset_code": "USDC",
            "asset_issuer": ISSUER,
        },
        {
            "balance": "0.0000000",
            "limit": "1000.0000000",
            "buying_liabilities": "0.0000000",
            "selling_liabilities": "0.0000000",
            "last_modified_ledger": 4170,
            "is_authorized": False,
            "is_authorized_to_maintain_liabilities": False,
            "asset_type": "credit_alphanum12",
            "asset_code": "EURTOKEN",
            "asset_issuer": ISSUER,
        },
        {
            "balance": "5.0000000",
            "liquidity_pool_id": "ab" * 32,
            "limit": "922337203685.4775807",
            "last_modified_ledger": 4170,
            "is_authorized": True,
            "asset_type": "liquidity_pool_shares",
        },
        {
            "balance": "9999.9999900",
            "buying_liabilities": "0.0000000",
            "selling_liabilities": "0.0000000",
            "asset_type": "native",
        },
    ],
    "signers": [{"weight": 1, "key": ACCOUNT, "type": "ed25519_public_key"}],
    "data": {},
    "num_sponsoring": 0,
    "num_sponsored": 0,
    "paging_token": ACCOUNT,
}

TX_JSON: dict[str, Any] = {
    "_links": {"self": {"href": f"{H}/transactions/{TX}"}},
    "id": TX,
    "paging_token": "17909970300751872",
    "successful": True,
    "hash": TX,
    "ledger": 4170011,
    "created_at": "2024-01-15T10:00:05Z",
    "source_account": DIST,
    "source_account_sequence": "4294967297",
    "fee_account": DIST,
    "fee_charged": "100",
    "max_fee": "100",
    "operation_count": 1,
    "envelope_xdr": ENVELOPE,
    "result_xdr": "AAAAAAAAAGQAAAAAAAAAAQAAAAAAAAABAAAAAAAAAAA=",
    "result_meta_xdr": "AAAAAwAAAAAAAAAC",
    "fee_meta_xdr": "AAAAAgAAAAMAAA==",
    "memo_type": "id",
    "memo": "1234567890",
    "signatures": ["c2lnbmF0dXJl"],
    "valid_after": "1970-01-01T00:00:00Z",
    "valid_before": "2024-01-15T10:01:00Z",
    "preconditions": {"timebounds": {"min_time": "0", "max_time": "1705312860"}},
}


def payment_record(
    op_id: str, amount: str, *, kind: str = "payment", tx: dict[str, Any] | None = None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "_links": {"transaction": {"href": f"{H}/transactions/{TX}"}},
        "id": op_id,
        "paging_token": op_id,
        "transaction_successful": True,
        "source_account": DIST,
        "type": kind,
        "type_i": 1 if kind == "payment" else 13,
        "created_at": "2024-01-15T10:00:05Z",
        "transaction_hash": TX,
        "asset_type": "credit_alphanum4",
        "asset_code": "USDC",
        "asset_issuer": ISSUER,
        "from": DIST,
        "to": ACCOUNT,
        "amount": amount,
    }
    if tx is not None:
        record["transaction"] = tx
    return record


def page(records: list[dict[str, Any]], next_cursor: str = "") -> dict[str, Any]:
    return {
        "_links": {
            "self": {"href": f"{H}/accounts/{ACCOUNT}/payments?cursor=&limit=10&order=asc"},
            "next": {"href": f"{H}/accounts/{ACCOUNT}/payments?cursor={next_cursor}"},
            "prev": {"href": f"{H}/accounts/{ACCOUNT}/payments?cursor=&order=desc"},
        },
        "_embedded": {"records": records},
    }


@pytest.fixture
async def horizon() -> AsyncIterator[tuple[respx.MockRouter, HorizonLedgerClient]]:
    with respx.mock(base_url=H, assert_all_called=False) as router:
        client = HorizonLedgerClient(H, timeout_s=2.0)
        yield router, client
        await client.aclose()


async def test_get_account_parses_balances(horizon: Any) -> None:
    router, client = horizon
    router.get(f"/accounts/{ACCOUNT}").respond(200, json=ACCOUNT_JSON)
    account = await client.get_account(ACCOUNT)
    assert account.account_id == ACCOUNT and account.sequence == 4294967302
    assets = {b.asset: b for b in account.balances}
    assert set(assets) == {
        f"stellar:USDC:{ISSUER}",
        f"stellar:EURTOKEN:{ISSUER}",
        "stellar:native",
    }
    assert assets[f"stellar:USDC:{ISSUER}"].balance == Decimal("12.5")
    assert assets["stellar:native"].balance == Decimal("9999.99999")
    assert account.trusts(f"stellar:USDC:{ISSUER}")
    assert not account.trusts(f"stellar:EURTOKEN:{ISSUER}")  # present but not authorized


async def test_not_found_and_transient_errors(horizon: Any) -> None:
    router, client = horizon
    not_found = {
        "type": "https://stellar.org/horizon-errors/not_found",
        "title": "Resource Missing",
        "status": 404,
        "detail": "The resource at the url requested was not found.",
    }
    router.get(f"/accounts/{ACCOUNT}").respond(404, json=not_found)
    with pytest.raises(LedgerNotFound):
        await client.get_account(ACCOUNT)
    for status in (429, 500, 503, 504):
        router.get(f"/accounts/{ACCOUNT}").respond(status, json={"status": status})
        with pytest.raises(LedgerUnavailable) as info:
            await client.get_account(ACCOUNT)
        assert info.value.status == status
    router.get(f"/accounts/{ACCOUNT}").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(LedgerUnavailable) as info:
        await client.get_account(ACCOUNT)
    assert info.value.status is None
    router.get(f"/accounts/{ACCOUNT}").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(LedgerUnavailable):
        await client.get_account(ACCOUNT)
    router.get(f"/accounts/{ACCOUNT}").respond(502, text="<html>Bad Gateway</html>")
    with pytest.raises(LedgerUnavailable):
        await client.get_account(ACCOUNT)
    router.get(f"/accounts/{ACCOUNT}").respond(400, json={"title": "Bad Request"})
    with pytest.raises(LedgerError) as err:
        await client.get_account(ACCOUNT)
    assert "400 Bad Request" in str(err.value)


async def test_get_transaction_with_payments(horizon: Any) -> None:
    router, client = horizon
    router.get(f"/transactions/{TX}").respond(200, json=TX_JSON)
    payments = page(
        [
            payment_record("17909970300751873", "12.5000000"),
            payment_record("17909970300751874", "1.0000000", kind="path_payment_strict_send"),
            {**payment_record("17909970300751875", "0"), "type": "create_account"},
        ]
    )
    router.get(f"/transactions/{TX}/payments").respond(200, json=payments)
    tx = await client.get_transaction(TX)
    assert tx.hash == TX and tx.ledger == 4170011 and tx.successful
    assert tx.created_at == datetime(2024, 1, 15, 10, 0, 5, tzinfo=UTC)
    assert (tx.memo, tx.memo_type, tx.source_account) == ("1234567890", "id", DIST)
    assert tx.envelope_xdr == ENVELOPE
    record = tx.record
    assert record.id == TX and record.memo == "1234567890" and record.memo_type == "id"
    assert [(p.amount, p.asset, p.payment_type) for p in record.payments] == [
        ("12.5000000", f"USDC:{ISSUER}", "payment"),
        ("1.0000000", f"USDC:{ISSUER}", "path_payment"),
    ]
    assert record.payments[0].destination_account == ACCOUNT
    router.get("/transactions/ff").respond(404, json={"status": 404})
    with pytest.raises(LedgerNotFound):
        await client.get_transaction("ff")


async def test_transaction_without_memo(horizon: Any) -> None:
    router, client = horizon
    body = {k: v for k, v in TX_JSON.items() if k != "memo"} | {"memo_type": "none"}
    router.get(f"/transactions/{TX}").respond(200, json=body)
    router.get(f"/transactions/{TX}/payments").respond(200, json=page([]))
    tx = await client.get_transaction(TX)
    assert (tx.memo, tx.memo_type) == (None, "none")
    assert (tx.record.memo, tx.record.memo_type) == (None, None)


async def test_submit_success(horizon: Any) -> None:
    router, client = horizon
    route = router.post("/transactions").respond(200, json=TX_JSON)
    result = await client.submit(ENVELOPE)
    assert result.successful and result.hash == TX and result.ledger == 4170011
    sent = route.calls.last.request
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert httpx.QueryParams(sent.content.decode())["tx"] == ENVELOPE


async def test_submit_success_carries_the_ledger_record(horizon: Any) -> None:
    """What a read of the transaction would give: operation ids from the paging token."""
    router, client = horizon
    router.post("/transactions").respond(200, json=TX_JSON)
    record = (await client.submit(ENVELOPE)).record
    assert record is not None
    assert (record.id, record.envelope, record.memo, record.memo_type) == (
        TX,
        ENVELOPE,
        "1234567890",
        "id",
    )
    assert record.created_at == datetime(2024, 1, 15, 10, 0, 5, tzinfo=UTC)
    (payment,) = record.payments
    source = TransactionEnvelope.from_xdr(ENVELOPE, TESTNET).transaction.source.account_id
    assert (payment.id, payment.amount, payment.asset, payment.payment_type) == (
        "17909970300751873",
        "1.0000000",
        "native",
        "payment",
    )
    assert (payment.source_account, payment.destination_account) == (source, ACCOUNT)
    # An answer without a paging token (an older Horizon): no record, the caller reads it.
    router.post("/transactions").respond(200, json={**TX_JSON, "paging_token": None})
    assert (await client.submit(ENVELOPE)).record is None


async def test_submit_failure_carries_result_codes(horizon: Any) -> None:
    router, client = horizon
    failed = {
        "type": "https://stellar.org/horizon-errors/transaction_failed",
        "title": "Transaction Failed",
        "status": 400,
        "detail": "The transaction failed when submitted to the stellar network. "
        "The `extras.result_codes` field on this response contains further details.",
        "extras": {
            "envelope_xdr": ENVELOPE,
            "result_codes": {"transaction": "tx_failed", "operations": ["op_no_trust"]},
            "result_xdr": "AAAAAAAAAGT/////AAAAAQAAAAAAAAAB////+gAAAAA=",
            "hash": TX,
        },
    }
    router.post("/transactions").respond(400, json=failed)
    result = await client.submit(ENVELOPE)
    assert not result.successful and result.hash == TX
    assert (result.transaction_code, result.operation_codes) == ("tx_failed", ("op_no_trust",))
    bad_seq = {
        **failed,
        "extras": {"envelope_xdr": ENVELOPE, "result_codes": {"transaction": "tx_bad_seq"}},
    }
    router.post("/transactions").respond(400, json=bad_seq)
    root = router.get("/").respond(200, json={"network_passphrase": TESTNET})
    result = await client.submit(ENVELOPE)
    # A 400 without the hash: computed from the envelope with the network's passphrase.
    assert result.transaction_code == "tx_bad_seq" and result.operation_codes == ()
    assert result.hash == ENVELOPE_HASH
    await client.submit(ENVELOPE)
    assert root.call_count == 1  # the passphrase is read once
    malformed = {
        "type": "https://stellar.org/horizon-errors/transaction_malformed",
        "title": "Transaction Malformed",
        "status": 400,
        "extras": {"envelope_xdr": "garbage"},
    }
    router.post("/transactions").respond(400, json=malformed)
    result = await client.submit("garbage")
    assert result.transaction_code == "tx_malformed" and result.hash == ""


async def test_submit_timeouts_are_unavailable(horizon: Any) -> None:
    router, client = horizon
    timeout = {
        "type": "https://stellar.org/horizon-errors/timeout",
        "title": "Timeout",
        "status": 504,
    }
    router.post("/transactions").respond(504, json=timeout)
    with pytest.raises(LedgerUnavailable) as info:
        await client.submit(ENVELOPE)
    assert info.value.status == 504
    router.post("/transactions").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(LedgerUnavailable) as info:
        await client.submit(ENVELOPE)
    assert info.value.status is None


async def test_payments_page_with_cursor_and_joined_memo(horizon: Any) -> None:
    router, client = horizon
    tx = {**TX_JSON, "memo_type": "text", "memo": "hello"}
    records = [
        payment_record("100", "1.0000000", tx=tx),
        {
            "id": "101",
            "paging_token": "101",
            "transaction_successful": False,
            "source_account": DIST,
            "type": "create_account",
            "type_i": 0,
            "created_at": "2024-01-15T10:00:05Z",
            "transaction_hash": TX,
            "starting_balance": "20.0000000",
            "funder": DIST,
            "account": ACCOUNT,
            "transaction": {**TX_JSON, "memo_type": "none", "memo": None},
        },
    ]
    route = router.get(f"/accounts/{ACCOUNT}/payments").respond(200, json=page(records, "101"))
    result = await client.payments(ACCOUNT, "99", limit=2)
    params = route.calls.last.request.url.params
    assert dict(params) == {"order": "asc", "limit": "2", "join": "transactions", "cursor": "99"}
    first, second = result.payments
    assert result.next_cursor == "101"
    assert (first.amount, first.asset, first.memo, first.memo_type) == (
        "1.0000000",
        f"stellar:USDC:{ISSUER}",
        "hello",
        "text",
    )
    assert first.destination_account == ACCOUNT and first.successful
    assert (second.type, second.asset, second.amount, second.source_account) == (
        "create_account",
        "stellar:native",
        "20.0000000",
        DIST,
    )
    assert not second.successful and second.memo is None
    router.get(f"/accounts/{ACCOUNT}/payments").respond(200, json=page([]))
    empty = await client.payments(ACCOUNT, None)
    assert empty.payments == [] and empty.next_cursor is None
    assert "cursor" not in route.calls.last.request.url.params


async def test_latest_ledger(horizon: Any) -> None:
    router, client = horizon
    body = page(
        [
            {
                "id": "ab" * 32,
                "paging_token": "17909970300751872",
                "hash": "ab" * 32,
                "sequence": 4170011,
                "closed_at": "2024-01-15T10:00:05Z",
                "protocol_version": 21,
            }
        ]
    )
    route = router.get("/ledgers").respond(200, json=body)
    latest = await client.latest_ledger()
    assert latest.sequence == 4170011
    assert latest.closed_at == datetime(2024, 1, 15, 10, 0, 5, tzinfo=UTC)
    assert dict(route.calls.last.request.url.params) == {"order": "desc", "limit": "1"}


async def test_injected_client_is_not_closed() -> None:
    async with httpx.AsyncClient(base_url=H) as shared:
        client = HorizonLedgerClient(H, client=shared)
        await client.aclose()
        assert not shared.is_closed
