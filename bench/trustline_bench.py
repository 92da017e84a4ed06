"""One trustline cycle with 500 waiting payouts over 20 accounts: ledger reads and time."""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from stellar_sdk import Keypair

from anchorpay.adapters.ledger import (
    Account,
    Balance,
    LatestLedger,
    LedgerNotFound,
    LedgerTransaction,
    PaymentsPage,
    SubmitResult,
)
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.scheduler.trustlines import TrustlinePoller
from anchorpay.settings import Settings
from anchorpay.store import transactions as repo
from anchorpay.store.db import create_engine, session_factory
from anchorpay.store.migrate import upgrade
from anchorpay.store.tables import PayoutRow
from anchorpay.workflow import Services

USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
CONFIG = Path(__file__).resolve().parent.parent / "config"


class Ledger:
    def __init__(self, trusting: set[str]) -> None:
        self.trusting = trusting
        self.reads: Counter[str] = Counter()

    async def get_account(self, account_id: str) -> Account:
        self.reads[account_id] += 1
        assets = ("stellar:native", USDC) if account_id in self.trusting else ("stellar:native",)
        return Account(account_id, 1, tuple(Balance(a, Decimal(0)) for a in assets))

    async def get_transaction(self, tx_hash: str) -> LedgerTransaction:
        raise LedgerNotFound(tx_hash)

    async def submit(self, envelope_xdr: str) -> SubmitResult:
        raise NotImplementedError

    async def payments(self, account_id: str, cursor: str | None, limit: int = 200) -> PaymentsPage:
        return PaymentsPage()

    async def latest_ledger(self) -> LatestLedger:
        return LatestLedger(1, datetime.now(UTC))

    async def aclose(self) -> None:
        return None


async def main(waiting: int = 500, accounts: int = 20) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=url,
            stellar_network="testnet",
            horizon_url="http://horizon.invalid",
            custody_type="stellar",
            assets_file=CONFIG / "assets.toml",
        )
        await upgrade(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        ids = [Keypair.random().public_key for _ in range(accounts)]
        now = datetime.now(UTC)
        async with sessions() as session, session.begin():
            for i in range(waiting):
                tx_id = str(uuid.uuid4())
                await repo.insert(
                    session,
                    Transaction(
                        id=tx_id,
                        kind=Kind.DEPOSIT,
                        status=Status.PENDING_TRUST,
                        started_at=now,
                        requested_asset=USDC,
                        amount_out="1",
                        amount_out_asset=USDC,
                        to_account=ids[i % accounts],
                        transfer_received_at=now,
                    ),
                )
                session.add(
                    PayoutRow(
                        id=str(uuid.uuid4()),
                        transaction_id=tx_id,
                        purpose="payment",
                        state="waiting_trust",
                        destination=ids[i % accounts],
                        asset=USDC,
                        amount="1",
                        adapter="stellar",
                        waiting_since=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
        ledger = Ledger(trusting=set())
        services = Services(settings, settings.load_assets(), sessions, ledger)
        poller = TrustlinePoller(services)
        start = time.perf_counter()
        await poller.run_cycle()
        idle = time.perf_counter() - start
        idle_reads = sum(ledger.reads.values())
        ledger.trusting = set(ids)
        ledger.reads.clear()
        start = time.perf_counter()
        report = await poller.run_cycle()
        resumed = time.perf_counter() - start
        await engine.dispose()
    print(
        f"trustline cycle, {waiting} waiting payouts over {accounts} accounts: "
        f"{idle_reads} account reads, {idle * 1000:.0f} ms with nothing to do; "
        f"{sum(ledger.reads.values())} reads and {resumed * 1000:.0f} ms to resume "
        f"{report.trusted}"
    )
