"""The pure state machine: validate + apply per second, for a typical deposit step."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from anchorpay.domain import machine
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.settings import load_assets

USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
CONFIG = Path(__file__).resolve().parent.parent / "config" / "assets.toml"


def run(n: int = 20_000) -> float:
    ctx = machine.MachineContext(
        assets=load_assets(CONFIG),
        custody_enabled=False,
        custody_type="none",
        deposit_info_generator="self",
        now=datetime.now(UTC),
    )
    tx = Transaction(
        id="bench",
        kind=Kind.DEPOSIT,
        status=Status.INCOMPLETE,
        started_at=datetime.now(UTC),
        requested_asset=USDC,
    )
    params = {
        "transaction_id": "bench",
        "amount_in": {"amount": "100", "asset": "iso4217:USD"},
        "amount_out": {"amount": "95", "asset": USDC},
        "fee_details": {"total": "5", "asset": "iso4217:USD"},
    }
    start = time.perf_counter()
    for _ in range(n):
        plan = machine.validate(tx, "request_offchain_funds", params, ctx)
        machine.apply(plan, machine.Facts(), ctx)
    return n / (time.perf_counter() - start)


def main() -> None:
    print(f"state machine: {run():,.0f} request_offchain_funds validate+apply per second")


if __name__ == "__main__":
    main()
