"""Fireblocks' official Python SDK (`fireblocks`, unchanged) against the sandbox Fireblocks over
real HTTP: it signs the JWT `uri` with the full request path (mount prefix included) and
`exp = iat + 55`, and parses every answer into its own models. Vault accounts, asset wallets,
a transfer created with an externalTxId and read back by it, and the webhook key that verifies
the transfer's webhooks; the transfer listing and a deposit address."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from decimal import Decimal
from typing import Any

import pytest
from fireblocks.client import Fireblocks
from fireblocks.client_configuration import ClientConfiguration
from fireblocks.exceptions import ApiException
from fireblocks.models.create_address_request import CreateAddressRequest
from fireblocks.models.destination_transfer_peer_path import DestinationTransferPeerPath
from fireblocks.models.one_time_address import OneTimeAddress
from fireblocks.models.source_transfer_peer_path import SourceTransferPeerPath
from fireblocks.models.transaction_request import TransactionRequest
from fireblocks.models.transaction_request_amount import TransactionRequestAmount
from fireblocks.models.transfer_peer_path_type import TransferPeerPathType

from anchorpay.sandbox.fireblocks import (
    SANDBOX_FIREBLOCKS_API_KEY,
    SANDBOX_FIREBLOCKS_API_SECRET_PEM,
    SANDBOX_FIREBLOCKS_VAULT_ID,
)
from anchorpay.sandbox.state import NATIVE
from support.fireblocks_fixtures import FireblocksNet, fireblocks_net, verify_webhook, wait_for
from support.sandbox_fixtures import USDC

# The SDK only warns when an answer does not fit its models: here that fails the test.
pytestmark = pytest.mark.filterwarnings("error:Failed to deserialize")


@pytest.fixture
async def net() -> AsyncIterator[FireblocksNet]:
    async with fireblocks_net() as net:
        yield net


@pytest.fixture
def sdk(net: FireblocksNet) -> Fireblocks:
    """The SDK as a user configures it: the sandbox's base path ends with /v1, like
    https://api.fireblocks.io/v1."""
    return Fireblocks(
        ClientConfiguration(
            api_key=SANDBOX_FIREBLOCKS_API_KEY,
            secret_key=SANDBOX_FIREBLOCKS_API_SECRET_PEM,
            base_path=f"{net.base}/sandbox/fireblocks/v1",
        )
    )


async def call(request: Callable[[], Future[Any]]) -> Any:
    """The SDK's parsed answer (`ApiResponse.data`). The SDK blocks on its own threads, while
    the sandbox serves on this event loop."""
    response = await asyncio.to_thread(lambda: request().result())
    return response.data


async def test_the_sdk_lists_the_vault_and_its_asset_wallets(
    net: FireblocksNet, sdk: Fireblocks
) -> None:
    xlm = f"{net.fb.vault.balance(NATIVE):f}".rstrip("0").rstrip(".")
    usdc = f"{net.fb.vault.balance(USDC):f}".rstrip("0").rstrip(".")

    paged = await call(lambda: sdk.vaults.get_paged_vault_accounts(limit=10))
    assert [(a.id, a.name) for a in paged.accounts] == [
        (SANDBOX_FIREBLOCKS_VAULT_ID, "anchorpay sandbox vault")
    ]
    assert {(a.id, a.total, a.available) for a in paged.accounts[0].assets} == {
        ("XLM", xlm, xlm),
        ("USDC_XLM", usdc, usdc),
    }

    account = await call(lambda: sdk.vaults.get_vault_account(SANDBOX_FIREBLOCKS_VAULT_ID))
    assert account.id == SANDBOX_FIREBLOCKS_VAULT_ID and account.hidden_on_ui is False

    asset = await call(
        lambda: sdk.vaults.get_vault_account_asset(SANDBOX_FIREBLOCKS_VAULT_ID, "USDC_XLM")
    )
    assert (asset.id, asset.total, asset.available, asset.pending) == ("USDC_XLM", usdc, usdc, "0")

    wallets = await call(lambda: sdk.vaults.get_asset_wallets(limit=100))
    assert sorted((w.vault_id, w.asset_id, w.total) for w in wallets.asset_wallets) == [
        (SANDBOX_FIREBLOCKS_VAULT_ID, "USDC_XLM", usdc),
        (SANDBOX_FIREBLOCKS_VAULT_ID, "XLM", xlm),
    ]
    only_xlm = await call(lambda: sdk.vaults.get_asset_wallets(asset_id="XLM"))
    assert [w.asset_id for w in only_xlm.asset_wallets] == ["XLM"]

    # every call above was the SDK's own signing: uri with /sandbox/fireblocks, exp = iat + 55
    assert net.fb.counters["GET /v1/vault/accounts_paged"] == 1
    assert net.fb.counters["GET /v1/vault/asset_wallets"] == 2


async def test_the_sdk_creates_a_transfer_and_finds_it_by_external_id(
    net: FireblocksNet, sdk: Fireblocks
) -> None:
    user = net.sandbox.create_account()
    before = net.sandbox.ledger.balance(user.public_key, NATIVE)
    assert before is not None
    request = TransactionRequest(
        asset_id="XLM",
        amount=TransactionRequestAmount("12.5"),
        source=SourceTransferPeerPath(
            type=TransferPeerPathType.VAULT_ACCOUNT, id=SANDBOX_FIREBLOCKS_VAULT_ID
        ),
        destination=DestinationTransferPeerPath(
            type=TransferPeerPathType.ONE_TIME_ADDRESS,
            one_time_address=OneTimeAddress(address=user.public_key, tag="4242"),
        ),
        external_tx_id="sdk-payout-1",
        note="paid by the official SDK",
    )
    created = await call(
        lambda: sdk.transactions.create_transaction(
            transaction_request=request, idempotency_key="sdk-key-1"
        )
    )
    assert created.status == "SUBMITTED"
    await net.wait_status(created.id, "COMPLETED")

    found = await call(lambda: sdk.transactions.get_transaction_by_external_id("sdk-payout-1"))
    assert (found.id, found.external_tx_id, found.status) == (
        created.id,
        "sdk-payout-1",
        "COMPLETED",
    )
    assert (found.asset_id, found.amount_info.amount, found.destination_tag) == (
        "XLM",
        "12.5",
        "4242",
    )
    assert found.destination_address == user.public_key
    record = net.sandbox.ledger.transactions[found.tx_hash]
    assert (record.memo_type, record.memo) == ("id", "4242")
    assert net.sandbox.ledger.balance(user.public_key, NATIVE) == before + Decimal("12.5")

    # Fireblocks refuses a second transfer with the same externalTxId (no second payment)
    with pytest.raises(ApiException) as refused:
        await call(lambda: sdk.transactions.create_transaction(transaction_request=request))
    assert refused.value.status == 400
    assert json.loads(refused.value.body) == {
        "message": "A transaction with externalTxId sdk-payout-1 already exists",
        "code": 1438,
    }
    assert len(net.fb.transactions) == 1

    with pytest.raises(ApiException) as missing:
        await call(lambda: sdk.transactions.get_transaction_by_external_id("no-such-id"))
    assert missing.value.status == 404

    listed = await call(
        lambda: sdk.transactions.get_transactions(
            after="0", order_by="createdAt", sort="ASC", limit=10, status="COMPLETED"
        )
    )
    assert [(t.id, t.external_tx_id) for t in listed] == [(created.id, "sdk-payout-1")]


async def test_the_sdk_creates_a_deposit_address(net: FireblocksNet, sdk: Fireblocks) -> None:
    """What DEPOSIT_INFO_GENERATOR=custody asks: the vault's account with a new tag."""

    def new_address(description: str) -> Callable[[], Future[Any]]:
        request = CreateAddressRequest(description=description)
        return lambda: sdk.vaults.create_vault_account_asset_address(
            SANDBOX_FIREBLOCKS_VAULT_ID, "USDC_XLM", create_address_request=request
        )

    first = await call(new_address("withdrawal 1"))
    second = await call(new_address("withdrawal 2"))
    assert first.address == second.address == net.vault
    assert first.tag.isdigit() and second.tag.isdigit() and first.tag != second.tag
    assert net.fb.deposit_tags == {first.tag: "withdrawal 1", second.tag: "withdrawal 2"}


async def test_the_webhook_key_verifies_the_webhooks_of_an_sdk_transfer(
    net: FireblocksNet, sdk: Fireblocks
) -> None:
    """The SDK has no call for the webhook key: it is the JWKS (and the legacy PEM) the
    sandbox publishes, and it verifies every event of a transfer the SDK created."""
    user = net.sandbox.create_account()
    request = TransactionRequest(
        asset_id="XLM",
        amount=TransactionRequestAmount("1"),
        source=SourceTransferPeerPath(
            type=TransferPeerPathType.VAULT_ACCOUNT, id=SANDBOX_FIREBLOCKS_VAULT_ID
        ),
        destination=DestinationTransferPeerPath(
            type=TransferPeerPathType.ONE_TIME_ADDRESS,
            one_time_address=OneTimeAddress(address=user.public_key),
        ),
        external_tx_id="sdk-payout-2",
    )
    created = await call(lambda: sdk.transactions.create_transaction(transaction_request=request))
    await net.wait_status(created.id, "COMPLETED")
    await wait_for(lambda: len(net.fb.outbox.events) == 5)
    jwks = (await net.dev.get("/.well-known/jwks.json")).json()
    events = (await net.dev.get("/webhooks")).json()
    assert [(e["resourceId"], e["status"]) for e in events] == [
        (created.id, status)
        for status in ("SUBMITTED", "PENDING_SIGNATURE", "BROADCASTING", "CONFIRMING", "COMPLETED")
    ]
    for event in events:
        verify_webhook(event["body"].encode(), event["headers"], jwks)
