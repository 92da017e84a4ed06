"""`anchorpay sandbox pay` and `anchorpay sandbox reset`: a wallet's payment from the shell,
and starting over on a fresh sandbox network.

`pay` asks the running server's sandbox (`POST /sandbox/payments`, as any HTTP client would)
and prints the transaction hash alone, so a shell can capture it: `HASH=$(anchorpay sandbox
pay …)`. A refusal is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from anchorpay.settings import ConfigError, Settings

PAY_TIMEOUT_S = 60.0  # the server holds the request until a ledger applies the payment


def add_pay_arguments(pay: argparse.ArgumentParser) -> None:
    payer = pay.add_mutually_exclusive_group(required=True)
    payer.add_argument("--from", dest="source", help="a sandbox account made by the sandbox")
    payer.add_argument("--from-secret", help="the payer's secret seed (S…)")
    pay.add_argument("--to", required=True, help="the destination account (G…)")
    pay.add_argument("--asset", required=True, help="stellar:native or stellar:CODE:ISSUER")
    pay.add_argument("--amount", required=True, help='a decimal amount such as "10"')
    pay.add_argument("--memo", help="the memo")
    pay.add_argument("--memo-type", default=None, help="text (default), id or hash")
    pay.add_argument("--url", help="the server (default: this configuration's own address)")


def pay(args: argparse.Namespace, settings: Settings) -> int:
    body: dict[str, Any] = {"to": args.to, "asset": args.asset, "amount": args.amount}
    if args.source:
        body["from"] = args.source
    else:
        body["from_secret"] = args.from_secret
    if args.memo is not None:
        body["memo"] = args.memo
    if args.memo_type is not None:
        body["memo_type"] = args.memo_type
    import httpx  # here, not at import: the parser loads this module for every command

    base = (args.url or settings.local_base_url()).rstrip("/")
    try:
        response = httpx.post(f"{base}/sandbox/payments", json=body, timeout=PAY_TIMEOUT_S)
    except httpx.HTTPError as exc:
        print(f"anchorpay: sandbox pay: {base} does not answer ({exc})", file=sys.stderr)
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code == 404 and not answer.get("error"):
        print(f"anchorpay: sandbox pay: {base} serves no sandbox", file=sys.stderr)
        return 1
    if response.status_code not in (200, 202):
        error = answer.get("error") or f"HTTP {response.status_code}"
        print(f"anchorpay: sandbox pay: {error}", file=sys.stderr)
        return 1
    print(answer["hash"])
    return 0


def reset(settings: Settings) -> int:
    """Start over on a new sandbox network, asking nothing: remove the sandbox state file and
    make the database forget the old network (its identity, the observer's ledger cursors).
    Transactions and payouts are kept. Run it with anchorpay stopped."""
    import asyncio
    from pathlib import Path

    from anchorpay.clock import SYSTEM
    from anchorpay.sandbox.persist import MEMORY, SandboxStateError, lock_state
    from anchorpay.store import ledger_network, migrate
    from anchorpay.store.db import create_engine, session_factory

    path = settings.sandbox_state_path()
    removed = False
    if path != MEMORY:
        try:
            lock = lock_state(path)  # a running sandbox holds it: refuse, remove nothing
        except SandboxStateError as exc:
            raise ConfigError(str(exc)) from None
        lock.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            found = Path(path + suffix)
            if found.exists():
                found.unlink()
                removed = removed or suffix == ""

    async def forget() -> int:
        engine = create_engine(settings.database_url)  # creates SQLite's folder
        try:
            async with session_factory(engine)() as session, session.begin():
                passphrase = settings.network_passphrase
                return await ledger_network.forget(session, passphrase, SYSTEM.now())
        finally:
            await engine.dispose()

    asyncio.run(create_engine(settings.database_url).dispose())
    migrate.upgrade_sync(settings.database_url)
    cursors = asyncio.run(forget())
    state = f"removed {path}" if removed else f"no sandbox state at {path}"
    print(
        f"anchorpay: sandbox reset: {state}; the database forgot the old network and "
        f"{cursors} ledger cursor(s); the next start begins a new sandbox network"
    )
    return 0
