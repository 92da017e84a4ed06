"""The Fireblocks incoming poll's cursor and its decisions, on SQLite and PostgreSQL, with a
stand-in list endpoint (the flow over real HTTP is in test_fireblocks_e2e.py):

- outgoing transfers are passed over; a COMPLETED incoming one is decided once;
- an incoming transfer not final yet holds the cursor, so it is listed again until it
  completes (then it is decided), unless it is older than BLOCK_MAX_S;
- a transfer matching no withdrawal is recorded unmatched (`no_match`), once, whichever road
  (poll or webhook) sees it again."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.fireblocks.config import FireblocksConfig
from anchorpay.adapters.fireblocks.models import FbTransaction
from anchorpay.clock import SYSTEM, Clock
from anchorpay.domain.assets import AssetList
from anchorpay.fireblocks_transfers import BLOCK_MAX_S, IncomingTransfers
from anchorpay.metrics import Metrics
from anchorpay.settings import Settings
from anchorpay.store import observer as observer_store
from support.app import CONFIG_DIR, USDC, USER, FakeLedger

VAULT = "GVAULTXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
CONFIG = FireblocksConfig(
    base_url="https://fireblocks.test",
    api_key="key",
    private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    vault_account_id="0",
    asset_ids={USDC: "USDC_XLM", "stellar:native": "XLM"},
    webhook_key=None,
    jwks_url="https://keys.test/jwks.json",
    timeout_s=5.0,
)


@dataclass
class Services:
    settings: Settings
    assets: AssetList
    sessions: async_sessionmaker[AsyncSession]
    ledger: FakeLedger
    fireblocks: FireblocksConfig | None = CONFIG
    clock: Clock = SYSTEM
    metrics: Metrics = field(default_factory=Metrics)


class ListEndpoint:
    """`GET /v1/transactions?after=…`: inclusive, oldest first; counts the calls."""

    def __init__(self, transfers: list[FbTransaction]) -> None:
        self.transfers = transfers
        self.calls: list[int] = []

    async def list_transactions(self, *, after_ms: int, limit: int = 200) -> list[FbTransaction]:
        self.calls.append(after_ms)
        found = sorted(
            (t for t in self.transfers if t.created_at_ms >= after_ms),
            key=lambda t: t.created_at_ms,
        )
        return found[:limit]

    def set_status(self, fb_id: str, status: str) -> None:
        self.transfers = [replace(t, status=status) if t.id == fb_id else t for t in self.transfers]


def incoming(
    fb_id: str, created_ms: int, status: str = "COMPLETED", tag: str = "42"
) -> FbTransaction:
    data: dict[str, Any] = {
        "id": fb_id,
        "status": status,
        "txHash": fb_id.ljust(64, "0"),
        "assetId": "USDC_XLM",
        "amountInfo": {"amount": "5"},
        "source": {"type": "UNKNOWN"},
        "destination": {"type": "VAULT_ACCOUNT", "id": "0"},
        "sourceAddress": USER,
        "destinationAddress": VAULT,
        "destinationTag": tag,
        "createdAt": created_ms,
    }
    return FbTransaction.from_json(data)


def outgoing(fb_id: str, created_ms: int) -> FbTransaction:
    data: dict[str, Any] = {
        "id": fb_id,
        "status": "BROADCASTING",
        "externalTxId": f"payout-{fb_id}",
        "source": {"type": "VAULT_ACCOUNT", "id": "0"},
        "destination": {"type": "ONE_TIME_ADDRESS"},
        "createdAt": created_ms,
    }
    return FbTransaction.from_json(data)


def poller(sessions: async_sessionmaker[AsyncSession], endpoint: ListEndpoint) -> IncomingTransfers:
    settings = Settings(_env_file=None, assets_file=CONFIG_DIR / "assets.toml")  # type: ignore[call-arg]
    services = Services(settings, settings.load_assets(), sessions, FakeLedger())

    async def never(params: dict[str, Any], finish: Any) -> Any:
        raise AssertionError("no withdrawal waits: nothing may be credited")

    return IncomingTransfers(services, CONFIG, endpoint, apply=never, clock=lambda: NOW)  # type: ignore[arg-type]


async def unmatched(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str, str]]:
    async with sessions() as session:
        rows = await observer_store.list_unmatched(session, limit=50)
    return sorted((r.id, r.reason, r.amount) for r in rows)


async def test_a_transfer_not_final_holds_the_cursor_until_it_completes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    t0 = NOW_MS - 60_000
    endpoint = ListEndpoint(
        [
            outgoing("out1", t0),
            incoming("in1", t0 + 1000),
            incoming("in2", t0 + 2000, status="CONFIRMING"),
            incoming("in3", t0 + 3000),
        ]
    )
    poll = poller(sessions, endpoint)

    assert await poll.poll() == 1  # in1; in2 holds the cursor, in3 waits behind it
    async with sessions() as session:
        assert await observer_store.get_cursor(session, "fireblocks:0") == str(t0 + 1000)
    assert await unmatched(sessions) == [("fireblocks:in1", "no_match", "5.0000000")]

    assert await poll.poll() == 0  # still confirming: listed again, nothing decided
    endpoint.set_status("in2", "COMPLETED")
    assert await poll.poll() == 2  # in1 is seen again (inclusive `after`) but not twice
    assert await poll.poll() == 0
    async with sessions() as session:
        assert await observer_store.get_cursor(session, "fireblocks:0") == str(t0 + 3000)
    assert await unmatched(sessions) == [
        ("fireblocks:in1", "no_match", "5.0000000"),
        ("fireblocks:in2", "no_match", "5.0000000"),
        ("fireblocks:in3", "no_match", "5.0000000"),
    ]
    # The webhook road meets the same record: decided once.
    assert await poll.handle(endpoint.transfers[2]) == "seen"


async def test_a_transfer_stuck_longer_than_the_limit_no_longer_holds_the_cursor(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    old = NOW_MS - int(BLOCK_MAX_S * 1000) - 1000
    endpoint = ListEndpoint(
        [incoming("stuck", old, status="PENDING_AML_SCREENING"), incoming("later", old + 500)]
    )
    poll = poller(sessions, endpoint)
    assert await poll.poll() == 1
    async with sessions() as session:
        assert await observer_store.get_cursor(session, "fireblocks:0") == str(old + 500)
    assert await unmatched(sessions) == [("fireblocks:later", "no_match", "5.0000000")]


async def test_failed_and_outgoing_transfers_are_passed_over(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    t0 = NOW_MS - 10_000
    endpoint = ListEndpoint([incoming("gone", t0, status="FAILED"), outgoing("out", t0 + 1)])
    poll = poller(sessions, endpoint)
    assert await poll.poll() == 0
    assert await unmatched(sessions) == []
    async with sessions() as session:
        assert await observer_store.get_cursor(session, "fireblocks:0") == str(t0 + 1)
