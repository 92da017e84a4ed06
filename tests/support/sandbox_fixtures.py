"""Shared helpers for the sandbox tests (imported explicitly, not via conftest): the asset
list, a hand-driven clock, envelope builders and a real uvicorn server for the sandbox app."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import uvicorn
from starlette.applications import Starlette
from stellar_sdk import Account, Asset, Keypair, TransactionBuilder
from stellar_sdk.operation import Operation

from anchorpay.domain.assets import Asset as ConfiguredAsset
from anchorpay.domain.assets import AssetList
from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET, SANDBOX_NETWORK_PASSPHRASE
from anchorpay.sandbox.app import Sandbox, create_sandbox_app

PASSPHRASE = SANDBOX_NETWORK_PASSPHRASE
DIST_KP = Keypair.from_secret(SANDBOX_DISTRIBUTION_SECRET)
DIST = DIST_KP.public_key
USDC_ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USDC = f"stellar:USDC:{USDC_ISSUER}"
USDC_SDK = Asset("USDC", USDC_ISSUER)
ASSETS = AssetList(
    (
        ConfiguredAsset(USDC, 7, DIST),
        ConfiguredAsset("stellar:native", 7, DIST),
        ConfiguredAsset("iso4217:USD", 2),
    )
)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_sandbox(clock: ManualClock | None = None, **kwargs: object) -> Sandbox:
    """A sandbox whose ledgers close only when the test says so."""
    return Sandbox(
        assets=ASSETS,
        network_passphrase=PASSPHRASE,
        distribution_secret=SANDBOX_DISTRIBUTION_SECRET,
        ledger_close_s=None,
        clock=clock or ManualClock(),
        **kwargs,  # type: ignore[arg-type]
    )


def envelope(
    sandbox: Sandbox,
    source: Keypair,
    ops: Sequence[Operation],
    *,
    sequence: int | None = None,
    signers: Sequence[Keypair] | None = None,
    fee: int = 100,
    bounds: tuple[int, int] | None = None,
    memo_text: str | None = None,
    memo_id: int | None = None,
) -> str:
    """A signed envelope; by default the next sequence number, 60 s time bounds from the
    sandbox clock, signed by `source`."""
    seq = sequence if sequence is not None else sandbox.ledger.accounts[source.public_key].sequence
    builder = TransactionBuilder(Account(source.public_key, seq), PASSPHRASE, base_fee=fee)
    now = int(sandbox.ledger.clock().timestamp())
    low, high = bounds if bounds is not None else (0, now + 60)
    builder.add_time_bounds(low, high)
    if memo_text is not None:
        builder.add_text_memo(memo_text)
    if memo_id is not None:
        builder.add_id_memo(memo_id)
    for op in ops:
        builder.append_operation(op)
    env = builder.build()
    for signer in signers if signers is not None else [source]:
        env.sign(signer)
    return str(env.to_xdr())


def payment(
    sandbox: Sandbox,
    source: Keypair,
    destination: str,
    amount: str,
    asset: Asset | None = None,
    **kwargs: object,
) -> str:
    from stellar_sdk import Payment

    op = Payment(destination, asset or Asset.native(), amount)
    return envelope(sandbox, source, [op], **kwargs)  # type: ignore[arg-type]


def balance(sandbox: Sandbox, account: str, asset: str = "stellar:native") -> Decimal | None:
    return sandbox.ledger.balance(account, asset)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free local port (a real socket); yields the base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # raises the startup error
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def served_sandbox(sandbox: Sandbox) -> AsyncIterator[str]:
    """The sandbox app on a real socket; yields its Horizon base URL."""
    async with serve(create_sandbox_app(sandbox)) as base:
        yield f"{base}/sandbox/horizon"
