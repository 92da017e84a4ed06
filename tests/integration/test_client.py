"""The typed client (anchorpay.client) against a started server over real HTTP: a deposit
driven to completion by its methods and paid once on the sandbox ledger, batches whose
elements fail on their own, the auth modes, and the retry rule (a lost answer is repeated
for reads only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest

from anchorpay.client import (
    ApiKey,
    AssetAmount,
    AsyncClient,
    Client,
    Fee,
    Forbidden,
    Jwt,
    RpcError,
    Transaction,
    TransportError,
)
from support.payout_fixtures import USD, USDC, running_app
from support.sandbox_fixtures import free_port

SECRET = "k" * 16 + "e" * 16 + "y" * 8  # 40 bytes: strong enough for api_key and HS256


async def test_a_deposit_driven_by_the_client_is_paid_once(tmp_path: Path, db_url: str) -> None:
    async with running_app(tmp_path, database_url=db_url) as env:
        user = await env.account()
        async with AsyncClient(str(env.client.base_url)) as api:
            created = await api.create_transaction(
                kind="deposit",
                asset=USDC,
                amount=Decimal("10"),
                destination_account=user.public_key,
            )
            assert (created.status, created.kind, created.sep) == ("incomplete", "deposit", "24")
            asked = await api.request_offchain_funds(
                created.id,
                amount_in=AssetAmount(Decimal("10"), USD),
                amount_out=AssetAmount(Decimal("9"), USDC),
                fee=Fee(Decimal("1"), USD),
            )
            assert asked.status == "pending_user_transfer_start"
            assert asked.amount_out is not None
            assert (asked.amount_out.amount, asked.amount_out.asset) == (Decimal("9"), USDC)
            assert asked.fee_details is not None and asked.fee_details.total == Decimal("1")
            received = await api.notify_offchain_funds_received(created.id, message="fiat in")
            assert (received.status, received.message) == ("pending_anchor", "fiat in")
            paying = await api.do_stellar_payment(created.id)
            assert paying.status == "pending_stellar"

            async def completed() -> bool:
                return (await api.get_transaction(created.id)).status == "completed"

            await env.drive(completed)
            done = await api.get_transaction(created.id)
            (payout,) = await api.payouts(transaction_id=created.id)
            assert (payout.state, payout.purpose, payout.amount) == ("confirmed", "payment", 9)
            assert [s.id for s in done.stellar_transactions] == [payout.tx_hash]
            assert await api.payout(payout.id) == payout
            listed = await api.get_transactions(statuses=["completed"])
            assert [t.id for t in listed] == [created.id]
            with pytest.raises(RpcError) as caught:
                await api.do_stellar_payment(created.id)
            assert (caught.value.code, caught.value.transaction_id) == (-32600, created.id)
            assert caught.value.message == (
                "RPC method[do_stellar_payment] is not supported. Status[completed], "
                "kind[deposit], protocol[24], funds received[true]"
            )
        paid = await env.payments_to(user.public_key)
        assert [(p["transaction_hash"], Decimal(p["amount"])) for p in paid] == [
            (payout.tx_hash, Decimal(9))
        ]


async def test_a_batch_reports_each_call_on_its_own(tmp_path: Path, db_url: str) -> None:
    async with running_app(tmp_path, database_url=db_url, run_worker=False) as env:
        base = str(env.client.base_url)
        async with AsyncClient(base) as api:
            created = await api.create_transaction(
                kind="withdrawal", asset=USDC, amount="5", id="client-batch-1"
            )
            async with api.batch() as batch:
                first = batch.request_onchain_funds(
                    created.id,
                    amount_in=AssetAmount("5", USDC),
                    amount_out=AssetAmount("5", USD),
                    fee=Fee("0", USDC),
                )
                again = batch.request_onchain_funds(created.id)  # now refused by its status
                unknown = batch.get_transaction("no-such-id")
                read = batch.get_transaction(created.id)
            assert first.result().status == "pending_user_transfer_start"
            assert isinstance(again.error, RpcError) and again.error.code == -32600
            assert isinstance(unknown.error, RpcError)
            assert (unknown.error.code, unknown.error.message) == (
                -32603,  # the reference's get_transaction answer (spec §4.1)
                "transaction (id=no-such-id) is not found",
            )
            assert read.result() == first.result()  # the later read sees what the first did
            # The same id and body again answers the stored transaction (idempotent create).
            repeat = await api.create_transaction(
                kind="withdrawal", asset=USDC, amount="5", id="client-batch-1"
            )
            assert repeat.id == created.id

        # The blocking client, from a thread (the server shares this event loop).
        def blocking() -> Transaction:
            with Client(base) as sync_api:
                return sync_api.get_transaction(created.id)

        assert (await asyncio.to_thread(blocking)).status == "pending_user_transfer_start"


@pytest.mark.parametrize("mode", ["api_key", "jwt"])
async def test_the_auth_modes(tmp_path: Path, mode: str) -> None:
    async with running_app(
        tmp_path,
        run_worker=False,
        platform_server_auth_type=mode,
        secret_platform_api_auth_secret=SECRET,
    ) as env:
        base = str(env.client.base_url)
        auth = ApiKey(SECRET) if mode == "api_key" else Jwt(SECRET)
        assert SECRET not in repr(auth)
        async with AsyncClient(base, auth=auth) as api:
            created = await api.create_transaction(kind="withdrawal", asset=USDC)
            assert (await api.get_transaction(created.id)).id == created.id
        async with AsyncClient(base) as anonymous:
            with pytest.raises(Forbidden) as caught:
                await anonymous.get_transaction(created.id)
            assert (caught.value.status, caught.value.message) == (403, "forbidden")
        wrong = ApiKey("w" * 40) if mode == "api_key" else Jwt("w" * 40)
        async with AsyncClient(base, auth=wrong) as impostor:
            with pytest.raises(Forbidden):
                await impostor.do_stellar_payment(created.id)


@asynccontextmanager
async def answers_lost() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads each request and closes the connection without answering: the
    call may have been applied, its answer is lost. Yields its URL and the requests seen."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        yield f"http://127.0.0.1:{port}", seen


async def test_a_lost_answer_is_repeated_for_reads_only() -> None:
    async with answers_lost() as (url, seen):
        async with AsyncClient(url, retries=2, backoff_s=0.01) as api:
            with pytest.raises(TransportError):
                await api.get_transaction("t1")
            assert len(seen) == 3  # a read: tried, then repeated twice
            seen.clear()
            with pytest.raises(TransportError) as caught:
                await api.do_stellar_payment("t1")
            assert len(seen) == 1  # a payment: never repeated after it may have landed
            assert "RemoteProtocolError" in str(caught.value)


async def test_a_refused_connection_is_retried_then_reported() -> None:
    port = free_port()  # nothing listens: nothing was sent, so any call may be retried
    async with AsyncClient(f"http://127.0.0.1:{port}", retries=1, backoff_s=0.01) as api:
        with pytest.raises(TransportError) as caught:
            await api.do_stellar_payment("t1")
        assert "ConnectError" in str(caught.value)
