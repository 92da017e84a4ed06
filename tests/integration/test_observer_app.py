"""The observer with the real workflow and app: request_onchain_funds hands out a generated
memo, the observer credits the payment through the state machine, GET /health reports it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from anchorpay.adapters.ledger import (
    LatestLedger,
    LedgerNotFound,
    LedgerTransaction,
    ObservedPayment,
    PaymentsPage,
)
from anchorpay.domain.transaction import StellarPayment, StellarTransaction
from anchorpay.scheduler.observer import PaymentObserver
from anchorpay.store import observer as store
from support.app import DIST, USDC, USER, AppClient, ClientFactory, FakeLedger, SettingsFactory

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class PayingLedger(FakeLedger):
    """conftest's FakeLedger plus payments and a ledger sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.paid: list[ObservedPayment] = []
        self.sequence = 10

    def pay(self, to: str, amount: str, memo: str | None, memo_type: str = "id") -> str:
        n = len(self.paid) + 1
        tx_hash = f"{n:064x}"
        self.paid.append(
            ObservedPayment(
                id=str(500 + n),
                paging_token=str(500 + n),
                transaction_hash=tx_hash,
                type="payment",
                source_account=USER,
                destination_account=to,
                asset=USDC,
                amount=amount,
                memo=memo,
                memo_type=memo_type if memo else "none",
                successful=True,
                created_at=T0,
            )
        )
        asset = USDC.removeprefix("stellar:")
        record = StellarTransaction(
            id=tx_hash,
            created_at=T0,
            envelope="AAAA",
            payments=[StellarPayment(str(500 + n), amount, asset, "payment", USER, to)],
        )
        self.transactions[tx_hash] = LedgerTransaction(
            tx_hash, self.sequence, True, T0, "AAAA", memo, memo_type, USER, record
        )
        self.sequence += 1
        return tx_hash

    async def payments(self, account_id: str, cursor: str | None, limit: int = 200) -> PaymentsPage:
        mine = [p for p in self.paid if account_id in (p.destination_account, p.source_account)]
        if not mine:
            raise LedgerNotFound(account_id)
        after = int(cursor) if cursor else 0
        items = [p for p in mine if int(p.paging_token) > after][:limit]
        return PaymentsPage(items, items[-1].paging_token if items else cursor)

    async def latest_ledger(self) -> LatestLedger:
        return LatestLedger(self.sequence, T0)


async def rpc(client: AppClient, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    answer: dict[str, Any] = (await client.rpc(body)).json()
    assert "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


async def new_withdrawal(client: AppClient, amount: str = "10") -> dict[str, Any]:
    body = {"kind": "withdrawal", "amount_expected": {"asset": USDC, "amount": amount}}
    response = await client.post("/transactions", json={**body, "source_account": USER})
    assert response.status_code == 201, response.text
    created = response.json()
    return await rpc(
        client,
        "request_onchain_funds",
        {
            "transaction_id": created["id"],
            "amount_in": {"amount": amount, "asset": USDC},
            "amount_out": {"amount": "9", "asset": "iso4217:USD"},
            "fee_details": {"total": "1", "asset": USDC},
        },
    )


async def test_withdrawal_is_credited_through_the_workflow(
    client_factory: ClientFactory,
) -> None:
    ledger = PayingLedger()
    async with client_factory(ledger=ledger) as client:
        tx = await new_withdrawal(client)
        assert tx["status"] == "pending_user_transfer_start"
        assert tx["destination_account"] == DIST and tx["memo_type"] == "id"
        assert 0 < int(tx["memo"]) < 2**63
        other = await new_withdrawal(client)
        assert other["memo"] != tx["memo"]

        stray = ledger.pay(DIST, "3", "12345")
        tx_hash = ledger.pay(DIST, "9.5000000", tx["memo"])
        run = await PaymentObserver(client.services).run_once()
        assert run.error is None and run.credited == [tx["id"]]

        stored = (await client.get(f"/transactions/{tx['id']}")).json()
        assert stored["status"] == "pending_anchor"
        assert [s["id"] for s in stored["stellar_transactions"]] == [tx_hash]
        assert stored["amount_in"]["amount"] == "9.5000000"
        assert stored["message"] == (
            "Received an incoming payment. Amount mismatch: received 9.5 but 10 was expected"
        )
        untouched = (await client.get(f"/transactions/{other['id']}")).json()
        assert untouched["status"] == "pending_user_transfer_start"

        listed = (await client.get("/observer/unmatched")).json()["unmatched_payments"]
        assert [(p["stellar_transaction_id"], p["reason"]) for p in listed] == [(stray, "no_match")]

        done = await rpc(
            client,
            "notify_offchain_funds_sent",
            {"transaction_id": tx["id"], "external_transaction_id": "bank-1"},
        )
        assert done["status"] == "completed"
        # Replaying the observer (a second run) credits nothing twice.
        again = await PaymentObserver(client.services).run_once()
        assert again.payments == 0 and again.credited == []


async def test_health_reports_the_observer_and_answers_503_when_stalled(
    client_factory: ClientFactory,
) -> None:
    ledger = PayingLedger()
    async with client_factory(ledger=ledger) as client:
        body = (await client.get("/health")).json()
        assert body["observer"]["status"] == "starting"
        await PaymentObserver(client.services).run_once()
        response = await client.get("/health")
        assert response.status_code == 200
        assert response.json()["observer"]["last_ledger"] == 10
        # Pretend the last catch-up was long ago while ledgers kept closing.
        async with client.services.sessions() as session, session.begin():
            stale = datetime.now(UTC) - timedelta(
                seconds=client.services.settings.observer_stall_s + 5
            )
            await store.save_caught_up(session, 10, T0, stale)
        ledger.sequence = 12
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.json()["observer"]["status"] == "stalled"


async def test_unmatched_listing_needs_the_api_key(
    client_factory: ClientFactory, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(
        platform_server_auth_type="api_key",
        secret_platform_api_auth_secret="observer-test-api-key-0123456789abcdef",
    )
    async with client_factory(settings) as client:
        assert (await client.get("/observer/unmatched")).status_code == 403
        ok = await client.get(
            "/observer/unmatched", headers={"X-Api-Key": "observer-test-api-key-0123456789abcdef"}
        )
        assert ok.status_code == 200 and ok.json() == {"unmatched_payments": []}
        assert (await client.get("/health")).status_code == 200
