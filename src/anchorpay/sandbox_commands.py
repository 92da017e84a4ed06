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

from anchorpay.settings import Settings

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
