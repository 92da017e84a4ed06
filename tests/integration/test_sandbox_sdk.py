"""stellar-sdk's own `Server` (requests) and `ServerAsync` (aiohttp) against the sandbox's
Horizon surface on a real socket: every endpoint they call for the root, accounts, payments,
operations, transactions (by account, ledger and hash; submit and async submit), ledgers and
fee stats, with paging through the SDK's own `next()` / `prev()` and its error classes. No
request here is made by hand. Ledgers close when the test says so."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from stellar_sdk import (
    AiohttpClient,
    Asset,
    Keypair,
    Server,
    ServerAsync,
    TransactionBuilder,
    TransactionEnvelope,
)
from stellar_sdk.exceptions import BadRequestError, NotFoundError
from stellar_sdk.xdr import TransactionResult, TransactionResultCode

from anchorpay.sandbox.app import Sandbox, create_sandbox_app
from support.sandbox_fixtures import (
    DIST,
    DIST_KP,
    PASSPHRASE,
    USDC,
    USDC_ISSUER,
    USDC_SDK,
    make_sandbox,
    serve,
)

T = TypeVar("T")


@dataclass
class Net:
    sandbox: Sandbox
    url: str  # the Horizon base URL, as a wallet would configure it

    async def sync(self, call: Callable[[], T]) -> T:
        """A blocking SDK call off the event loop that serves the sandbox."""
        return await asyncio.to_thread(call)

    async def submit_and_close(self, call: Callable[[], T]) -> T:
        """A blocking submission waits for its ledger: close it once the envelope is queued."""
        task = asyncio.create_task(asyncio.to_thread(call))
        await self.sandbox.wait_queued()
        await self.sandbox.close_ledger()
        return await task


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    sandbox = make_sandbox()
    async with serve(create_sandbox_app(sandbox)) as base:
        yield Net(sandbox, f"{base}/sandbox/horizon")


@contextlib.asynccontextmanager
async def server_async(net: Net) -> AsyncIterator[ServerAsync]:
    server = ServerAsync(net.url, client=AiohttpClient())
    try:
        yield server
    finally:
        await server.close()


def pay(
    server: Server, source: Keypair, to: str, amount: str, memo: int | None = None
) -> TransactionEnvelope:
    """Build and sign a USDC payment with the SDK, from the account Horizon reports."""
    account = server.load_account(source.public_key)
    builder = TransactionBuilder(account, PASSPHRASE, base_fee=server.fetch_base_fee())
    builder.append_payment_op(to, USDC_SDK, amount).set_timeout(300)
    if memo is not None:
        builder.add_id_memo(memo)
    envelope = builder.build()
    envelope.sign(source)
    return envelope


def records(page: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page["_embedded"]["records"]
    return found


async def test_root_fee_stats_and_base_fee(net: Net) -> None:
    await net.sandbox.close_ledger()
    with Server(net.url) as server:
        root = await net.sync(server.root().call)
        stats = await net.sync(server.fee_stats().call)
        base_fee = await net.sync(server.fetch_base_fee)
    assert root["network_passphrase"] == PASSPHRASE
    assert (root["history_latest_ledger"], root["core_latest_ledger"]) == (2, 2)
    assert root["_links"]["fee_stats"]["href"] == f"{net.url}/fee_stats"
    assert stats["last_ledger"] == "2" and stats["last_ledger_base_fee"] == "100"
    assert stats["fee_charged"]["p99"] == "100" and stats["max_fee"]["mode"] == "100"
    assert base_fee == 100


async def test_accounts_payments_operations_transactions_ledgers(net: Net) -> None:
    user = net.sandbox.create_account(trust=(USDC,))
    with Server(net.url) as server:
        xdr = await net.sync(lambda: pay(server, DIST_KP, user.public_key, "12.5", memo=7))
        sent = await net.submit_and_close(lambda: server.submit_transaction(xdr))
        tx_hash = sent["hash"]
        assert (sent["successful"], sent["ledger"], sent["memo"]) == (True, 2, "7")

        account = await net.sync(server.accounts().account_id(user.public_key).call)
        usdc = next(b for b in account["balances"] if b.get("asset_code") == "USDC")
        assert (usdc["balance"], usdc["asset_issuer"]) == ("12.5000000", USDC_ISSUER)
        loaded = await net.sync(lambda: server.load_account(DIST))
        assert loaded.sequence == net.sandbox.ledger.accounts[DIST].sequence

        by_signer = await net.sync(server.accounts().for_signer(user.public_key).call)
        assert [a["id"] for a in records(by_signer)] == [user.public_key]
        by_asset = await net.sync(server.accounts().for_asset(USDC_SDK).call)
        assert user.public_key in [a["id"] for a in records(by_asset)]
        assert DIST in [a["id"] for a in records(by_asset)]

        for builder in (
            server.payments().for_account(user.public_key),
            server.payments().for_transaction(tx_hash),
            server.payments().for_ledger(2),
            server.payments(),
        ):
            (payment,) = records(await net.sync(builder.call))
            assert (payment["type"], payment["amount"], payment["to"]) == (
                "payment",
                "12.5000000",
                user.public_key,
            )
            assert payment["transaction_hash"] == tx_hash

        ops = records(await net.sync(server.operations().for_transaction(tx_hash).call))
        assert [o["type"] for o in ops] == ["payment"]
        one = await net.sync(server.operations().operation(ops[0]["id"]).call)
        assert one["paging_token"] == ops[0]["paging_token"]
        joined = records(
            await net.sync(
                server.operations().for_account(user.public_key).join("transactions").call
            )
        )
        assert joined[0]["transaction"]["hash"] == tx_hash
        assert [
            o["id"] for o in records(await net.sync(server.operations().for_ledger(2).call))
        ] == [ops[0]["id"]]

        for builder in (
            server.transactions().for_account(user.public_key),
            server.transactions().for_account(DIST),
            server.transactions().for_ledger(2),
            server.transactions(),
        ):
            assert [t["hash"] for t in records(await net.sync(builder.call))] == [tx_hash]
        fetched = await net.sync(server.transactions().transaction(tx_hash).call)
        assert (fetched["ledger"], fetched["source_account"]) == (2, DIST)
        assert TransactionEnvelope.from_xdr(fetched["envelope_xdr"], PASSPHRASE).hash_hex() == (
            tx_hash
        )

        ledger = await net.sync(server.ledgers().ledger(2).call)
        assert (ledger["sequence"], ledger["successful_transaction_count"]) == (2, 1)
        assert ledger["prev_hash"] == net.sandbox.ledger.headers[0].hash
        latest = records(await net.sync(server.ledgers().order(desc=True).limit(1).call))
        assert [h["sequence"] for h in latest] == [2]


async def test_paging_with_the_sdk_next_and_prev(net: Net) -> None:
    user = net.sandbox.create_account(trust=(USDC,))
    with Server(net.url) as server:
        hashes = []
        for memo in (1, 2, 3):
            xdr = await net.sync(lambda m=memo: pay(server, DIST_KP, user.public_key, "1", m))
            sent = await net.submit_and_close(lambda x=xdr: server.submit_transaction(x))
            hashes.append(sent["hash"])
        builder = server.transactions().for_account(user.public_key).limit(2)
        first = records(await net.sync(builder.call))
        second = records(await net.sync(builder.next))
        third = records(await net.sync(builder.next))
        assert [t["hash"] for t in first] == hashes[:2]
        assert [t["hash"] for t in second] == hashes[2:]
        assert third == []
        payments = server.payments().for_account(user.public_key).order(desc=True).limit(1)
        newest = records(await net.sync(payments.call))
        older = records(await net.sync(payments.next))
        back = records(await net.sync(payments.prev))
        assert [p["transaction_hash"] for p in newest + older] == [hashes[2], hashes[1]]
        assert [p["transaction_hash"] for p in back] == [hashes[2]]
        after = records(
            await net.sync(
                server.payments()
                .for_account(user.public_key)
                .cursor(newest[0]["paging_token"])
                .call
            )
        )
        assert after == []
        now = records(await net.sync(server.transactions().cursor("now").call))
        assert now == []


async def test_failed_transactions_only_with_include_failed(net: Net) -> None:
    stranger = net.sandbox.create_account()  # no USDC trustline: op_no_trust
    with Server(net.url) as server:
        xdr = await net.sync(lambda: pay(server, DIST_KP, stranger.public_key, "1"))
        with pytest.raises(BadRequestError) as refused:
            await net.submit_and_close(lambda: server.submit_transaction(xdr))
        extras = refused.value.extras
        assert extras is not None
        assert extras["result_codes"] == {"transaction": "tx_failed", "operations": ["op_no_trust"]}
        result = TransactionResult.from_xdr(extras["result_xdr"])
        assert result.result.code == TransactionResultCode.txFAILED
        assert result.fee_charged.int64 == 100
        plain = server.transactions().for_account(stranger.public_key)
        with_failed = server.transactions().for_account(stranger.public_key).include_failed(True)
        assert records(await net.sync(plain.call)) == []
        failed = records(await net.sync(with_failed.call))
        assert [(t["hash"], t["successful"]) for t in failed] == [(extras["hash"], False)]
        assert records(await net.sync(with_failed.prev)) == []  # the link keeps the filter
        assert "include_failed=true" in with_failed.next_href


async def test_errors_are_horizon_problems(net: Net) -> None:
    unknown = Keypair.random().public_key
    with Server(net.url) as server:
        with pytest.raises(NotFoundError) as missing:
            await net.sync(server.accounts().account_id(unknown).call)
        assert missing.value.status == 404
        assert missing.value.type == "https://stellar.org/horizon-errors/not_found"
        with pytest.raises(NotFoundError):
            await net.sync(server.transactions().transaction("ab" * 32).call)
        with pytest.raises(NotFoundError):
            await net.sync(server.ledgers().ledger(99).call)
        with pytest.raises(NotFoundError):
            await net.sync(server.transactions().for_account(unknown).call)
        with pytest.raises(BadRequestError) as bad:
            await net.sync(server.payments().cursor("yesterday").call)
        assert bad.value.status == 400 and bad.value.extras is not None
        assert bad.value.extras["invalid_field"] == "cursor"
        xdr = await net.sync(lambda: pay(server, DIST_KP, DIST, "1"))
        stale = xdr
        stale.transaction.sequence -= 1
        stale.signatures = []
        stale.sign(DIST_KP)
        with pytest.raises(BadRequestError) as refused:
            await net.sync(lambda: server.submit_transaction(stale))
        assert refused.value.extras is not None
        assert refused.value.extras["result_codes"] == {"transaction": "tx_bad_seq"}
        code = TransactionResult.from_xdr(refused.value.extras["result_xdr"]).result.code
        assert code == TransactionResultCode.txBAD_SEQ


async def test_server_async_reads_and_async_submission(net: Net) -> None:
    user = net.sandbox.create_account(trust=(USDC,))
    async with server_async(net) as server:
        root = await server.root().call()
        assert root["network_passphrase"] == PASSPHRASE
        assert (await server.fee_stats().call())["last_ledger_base_fee"] == "100"
        account = await server.load_account(DIST)
        builder = TransactionBuilder(account, PASSPHRASE, base_fee=await server.fetch_base_fee())
        builder.append_payment_op(user.public_key, Asset("USDC", USDC_ISSUER), "3").set_timeout(300)
        envelope = builder.build()
        envelope.sign(DIST_KP)

        pending = await server.submit_transaction_async(envelope)
        assert pending == {"tx_status": "PENDING", "hash": envelope.hash_hex()}
        with pytest.raises(BadRequestError) as duplicate:
            await server.submit_transaction_async(envelope)
        assert duplicate.value.status == 409
        with pytest.raises(NotFoundError):  # queued, not yet in a ledger
            await server.transactions().transaction(envelope.hash_hex()).call()

        await net.sandbox.close_ledger()
        applied = await server.transactions().transaction(envelope.hash_hex()).call()
        assert (applied["successful"], applied["ledger"]) == (True, 2)
        with pytest.raises(BadRequestError) as again:  # its sequence number is spent
            await server.submit_transaction_async(envelope)
        assert again.value.status == 400
        body = json.loads(again.value.message)
        assert (body["tx_status"], body["hash"]) == ("ERROR", envelope.hash_hex())
        code = TransactionResult.from_xdr(body["errorResultXdr"]).result.code
        assert code == TransactionResultCode.txBAD_SEQ

        paid = await server.payments().for_account(user.public_key).call()
        assert [p["amount"] for p in records(paid)] == ["3.0000000"]
        txs = await server.transactions().for_account(user.public_key).call()
        assert [t["hash"] for t in records(txs)] == [envelope.hash_hex()]
        ops = await server.operations().for_account(user.public_key).call()
        assert [o["type"] for o in records(ops)] == ["payment"]
        ledgers = await server.ledgers().order(desc=True).limit(1).call()
        assert [h["sequence"] for h in records(ledgers)] == [2]
        with pytest.raises(NotFoundError):
            await server.accounts().account_id(Keypair.random().public_key).call()
