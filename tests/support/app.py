"""Shared test helpers (imported as `support.app`): constants, the fake ledger, the app
client type, request bodies. The fixtures that use them are in tests/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import URL
from starlette.applications import Starlette

from anchorpay.adapters.ledger import (
    Account,
    Balance,
    LatestLedger,
    LedgerNotFound,
    LedgerTransaction,
    PaymentsPage,
    SubmitResult,
)
from anchorpay.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"
USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
DIST = "GDPWCPMWBW6PCXSXVZ4ISXK7245P6QEVSARTRJ4AG3ZMHBJTMCLZQ5GS"
USER = "GDJLBYYKMCXNVVNABOE66NYXQGIA5AC5D223Z2KF6ZEYK4UBCA7FKLTG"


class FakeLedger:
    """A LedgerClient over dicts: accounts by id, transactions by hash."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.transactions: dict[str, LedgerTransaction] = {}
        self.closed = False

    def add_account(self, account_id: str, *assets: str) -> None:
        balances = tuple(Balance(asset=a, balance=0) for a in ("stellar:native", *assets))  # type: ignore[arg-type]
        self.accounts[account_id] = Account(account_id, 1, balances)

    async def get_account(self, account_id: str) -> Account:
        if account_id not in self.accounts:
            raise LedgerNotFound(f"account {account_id} not found")
        return self.accounts[account_id]

    async def get_transaction(self, tx_hash: str) -> LedgerTransaction:
        if tx_hash not in self.transactions:
            raise LedgerNotFound(f"transaction {tx_hash} not found")
        return self.transactions[tx_hash]

    async def submit(self, envelope_xdr: str) -> SubmitResult:
        raise NotImplementedError

    async def payments(self, account_id: str, cursor: str | None, limit: int = 200) -> PaymentsPage:
        return PaymentsPage()

    async def latest_ledger(self) -> LatestLedger:
        return LatestLedger(1, datetime.now(UTC))

    async def aclose(self) -> None:
        self.closed = True


class AppClient(httpx.AsyncClient):
    """An httpx client over the app, with the app at hand."""

    app: Starlette

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def rpc(self, body: Any, **kwargs: Any) -> httpx.Response:
        return await self.post("/", json=body, **kwargs)


SettingsFactory = Callable[..., Settings]
ClientFactory = Callable[..., contextlib.AbstractAsyncContextManager[AppClient]]


POSTGRES_ENV = "ANCHORPAY_TEST_POSTGRES_URL"


def _pg_admin(url: URL, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE) on the server of `url`."""
    import asyncpg  # type: ignore[import-untyped]

    async def run() -> None:
        conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def deposit_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sep": "24",
        "kind": "deposit",
        "amount_expected": {"asset": USDC},
        "destination_account": USER,
        "client_name": "referenceCustodial",
    }
    body.update(overrides)
    return body


async def create_tx(client: AppClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/transactions", json=deposit_body(**overrides))
    assert response.status_code in (200, 201), response.text
    created: dict[str, Any] = response.json()
    return created
