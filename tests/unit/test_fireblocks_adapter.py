"""The Fireblocks adapter's decisions, one call at a time, against a stand-in client (the
client itself is tested with respx, and the flows against the sandbox over real HTTP):
the fifteen statuses, the adoption of a duplicate external id, which errors are transient,
the hash memo refusal and the ledger read behind COMPLETED."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from anchorpay.adapters.custody import (
    Confirmed,
    Failed,
    NotFound,
    PayoutOrder,
    Pending,
    PermanentCustodyError,
    TransientCustodyError,
)
from anchorpay.adapters.fireblocks.adapter import FireblocksAdapter
from anchorpay.adapters.fireblocks.client import (
    FireblocksApiError,
    FireblocksUnavailable,
)
from anchorpay.adapters.fireblocks.config import FireblocksConfig
from anchorpay.adapters.fireblocks.models import (
    STATUSES,
    CreatedTransaction,
    FbTransaction,
    TransferRequest,
)
from anchorpay.adapters.ledger import LedgerTransaction, LedgerUnavailable
from anchorpay.domain.transaction import StellarTransaction
from support.app import USDC, USER, FakeLedger

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CONFIG = FireblocksConfig(
    base_url="https://fireblocks.test",
    api_key="key",
    private_key=KEY,
    vault_account_id="7",
    asset_ids={USDC: "USDC_XLM", "stellar:native": "XLM"},
    webhook_key=None,
    jwks_url="https://keys.test/jwks.json",
    timeout_s=5.0,
)
HASH = "ab" * 32


def order(**overrides: Any) -> PayoutOrder:
    values: dict[str, Any] = {
        "id": "payout-1",
        "transaction_id": "tx-1",
        "purpose": "payment",
        "destination": USER,
        "asset": USDC,
        "amount": "12.50",
        "memo": "42",
        "memo_type": "id",
    }
    values.update(overrides)
    return PayoutOrder(**values)


def fb_tx(status: str, **overrides: Any) -> FbTransaction:
    data: dict[str, Any] = {
        "id": "fb-1",
        "externalTxId": "payout-1",
        "status": status,
        "subStatus": "",
        "txHash": "",
    }
    data.update(overrides)
    return FbTransaction.from_json(data)


class StandInClient:
    """Answers what the test sets; records the creates."""

    def __init__(self) -> None:
        self.created: list[tuple[TransferRequest, str]] = []
        self.create_error: Exception | None = None
        self.create_status = "SUBMITTED"
        self.found: FbTransaction | None = None
        self.lookup_error: Exception | None = None
        self.closed = False

    async def create_transaction(
        self, request: TransferRequest, *, idempotency_key: str
    ) -> CreatedTransaction:
        if self.create_error is not None:
            raise self.create_error
        self.created.append((request, idempotency_key))
        return CreatedTransaction(id="fb-1", status=self.create_status)

    async def get_by_external_id(self, external_tx_id: str) -> FbTransaction | None:
        if self.lookup_error is not None:
            raise self.lookup_error
        return self.found

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def client() -> StandInClient:
    return StandInClient()


@pytest.fixture
def adapter(client: StandInClient, ledger: FakeLedger) -> FireblocksAdapter:
    return FireblocksAdapter(CONFIG, client, ledger)  # type: ignore[arg-type]


def on_ledger(ledger: FakeLedger, successful: bool = True) -> None:
    record = StellarTransaction(id=HASH, created_at=None, envelope="AAAA")
    ledger.transactions[HASH] = LedgerTransaction(
        HASH, 99, successful, datetime.now(UTC), "AAAA", "42", "id", USER, record
    )


async def test_prepare_stores_the_payout_id_as_the_external_id(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    update = await adapter.prepare(order())
    assert update.adapter_ref == "payout-1"
    assert update.envelope_xdr is None and update.tx_hash is None
    assert client.created == []  # nothing is sent by prepare


@pytest.mark.parametrize("memo_type", ["hash", "return"])
async def test_hash_memos_are_refused_before_anything_is_stored(
    adapter: FireblocksAdapter, memo_type: str
) -> None:
    with pytest.raises(PermanentCustodyError) as caught:
        await adapter.prepare(order(memo="a" * 44, memo_type=memo_type))
    assert str(caught.value) == (
        f"Memo type[{memo_type}] is not supported for custody type[fireblocks]"
    )


async def test_submit_creates_with_external_id_and_idempotency_key(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    outcome = await adapter.submit(order())
    assert outcome == Pending("Fireblocks transaction fb-1 is SUBMITTED")
    ((request, key),) = client.created
    assert key == "payout-1"
    assert request.to_json() == {
        "operation": "TRANSFER",
        "assetId": "USDC_XLM",
        "amount": "12.5000000",
        "source": {"type": "VAULT_ACCOUNT", "id": "7"},
        "destination": {
            "type": "ONE_TIME_ADDRESS",
            "oneTimeAddress": {"address": USER, "tag": "42"},
        },
        "externalTxId": "payout-1",
        "note": "anchorpay payment payout-1 of transaction tx-1",
    }


async def test_no_memo_sends_no_tag(adapter: FireblocksAdapter, client: StandInClient) -> None:
    await adapter.submit(order(memo=None, memo_type=None))
    ((request, _),) = client.created
    assert request.tag is None
    assert "tag" not in request.to_json()["destination"]["oneTimeAddress"]  # type: ignore[index]


async def test_a_duplicate_external_id_is_resolved_by_lookup(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    client.create_error = FireblocksApiError(400, "A transaction with externalTxId exists", 1438)
    client.found = fb_tx("BROADCASTING")
    assert await adapter.submit(order()) == Pending("Fireblocks transaction fb-1 is BROADCASTING")


async def test_a_duplicate_that_cannot_be_found_is_transient(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    client.create_error = FireblocksApiError(400, "exists", 1438)
    with pytest.raises(TransientCustodyError, match="exists but does not find it"):
        await adapter.submit(order())


@pytest.mark.parametrize(
    "error",
    [
        FireblocksApiError(429, "Too many requests", 429),
        FireblocksApiError(503, "Unavailable", 503),
        FireblocksApiError(401, "Unauthorized: JWT signature does not verify", -7),
        FireblocksUnavailable("POST /v1/transactions timed out"),
    ],
)
async def test_unknown_outcomes_of_a_create_are_transient(
    adapter: FireblocksAdapter, client: StandInClient, error: Exception
) -> None:
    client.create_error = error
    with pytest.raises(TransientCustodyError):
        await adapter.submit(order())


async def test_a_refused_create_is_a_permanent_failure(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    client.create_error = FireblocksApiError(400, "destination address is invalid", 1000)
    outcome = await adapter.submit(order())
    assert isinstance(outcome, Failed)
    assert outcome.reason == (
        "Fireblocks refused the transfer: Fireblocks answered HTTP 400: "
        "destination address is invalid (code 1000)"
    )


async def test_lookup_of_nothing_is_not_dead(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    # The create is idempotent: the worker sends the same one again, never a new one.
    assert await adapter.lookup(order()) == NotFound(
        dead=False, detail="Fireblocks has no transfer payout-1 yet"
    )


async def test_a_failed_lookup_is_transient(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    client.lookup_error = FireblocksApiError(500, "boom", None)
    with pytest.raises(TransientCustodyError):
        await adapter.lookup(order())


@pytest.mark.parametrize("status", [s for s in STATUSES if s != "COMPLETED"])
async def test_every_status_is_mapped(
    adapter: FireblocksAdapter, client: StandInClient, status: str
) -> None:
    client.found = fb_tx(status, subStatus="BLOCKED_BY_POLICY")
    found = await adapter.lookup(order())
    if status in ("CANCELLED", "REJECTED", "BLOCKED", "FAILED"):
        assert found == Failed(
            f"Fireblocks transaction fb-1 ended {status} (BLOCKED_BY_POLICY); nothing was paid",
            status,
        )
    else:
        assert found == Pending(f"Fireblocks transaction fb-1 is {status}")


async def test_completed_is_confirmed_from_the_ledger(
    adapter: FireblocksAdapter, client: StandInClient, ledger: FakeLedger
) -> None:
    on_ledger(ledger)
    client.found = fb_tx("COMPLETED", txHash=HASH)
    found = await adapter.lookup(order())
    assert isinstance(found, Confirmed)
    assert (found.hash, found.ledger) == (HASH, 99)
    assert found.record is not None and found.record.id == HASH


async def test_completed_before_horizon_has_it_is_pending(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    client.found = fb_tx("COMPLETED", txHash=HASH)
    assert await adapter.lookup(order()) == Pending(
        f"{HASH} of Fireblocks transaction fb-1 not on Horizon yet"
    )
    client.found = fb_tx("COMPLETED")
    assert await adapter.lookup(order()) == Pending(
        "Fireblocks transaction fb-1 is COMPLETED without a txHash yet"
    )


async def test_completed_with_the_ledger_down_is_transient(
    adapter: FireblocksAdapter, client: StandInClient, ledger: FakeLedger
) -> None:
    async def down(tx_hash: str) -> LedgerTransaction:
        raise LedgerUnavailable("Horizon answered 503", 503)

    ledger.get_transaction = down  # type: ignore[method-assign]
    client.found = fb_tx("COMPLETED", txHash=HASH)
    with pytest.raises(TransientCustodyError, match="Could not look up"):
        await adapter.lookup(order())


async def test_an_unknown_status_is_pending(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    client.found = fb_tx("SOMETHING_NEW")
    assert await adapter.lookup(order()) == Pending("Fireblocks transaction fb-1 is SOMETHING_NEW")


async def test_a_create_rejected_at_once_reports_its_sub_status(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    client.create_status = "REJECTED"
    client.found = fb_tx("REJECTED", subStatus="BLOCKED_BY_POLICY")
    outcome = await adapter.submit(order())
    assert outcome == Failed(
        "Fireblocks transaction fb-1 ended REJECTED (BLOCKED_BY_POLICY); nothing was paid",
        "REJECTED",
    )


async def test_amount_is_sent_as_a_decimal_string(
    adapter: FireblocksAdapter, client: StandInClient
) -> None:
    await adapter.submit(order(amount="0.0000001", asset="stellar:native"))
    ((request, _),) = client.created
    assert request.amount == Decimal("0.0000001")
    assert request.to_json()["amount"] == "0.0000001"
    assert request.asset_id == "XLM"
