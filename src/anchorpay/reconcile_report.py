"""The report of `anchorpay reconcile`: an aligned text table or one JSON object."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from anchorpay.domain.amounts import plain
from anchorpay.domain.reconcile import LedgerPayment, PayoutRecord, Reconciliation

Format = Literal["table", "json"]


@dataclass(frozen=True)
class Report:
    result: Reconciliation
    accounts: tuple[str, ...]
    since: datetime | None
    payments: int  # outgoing payments considered

    @property
    def ok(self) -> bool:
        return self.result.ok


HEADER = ("PAYOUT", "TRANSACTION", "PURPOSE", "AMOUNT", "ASSET", "HASH", "LEDGER TIME")
Row = tuple[tuple[str, ...], str | None]  # the cells, and a note printed under them


def render(report: Report, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(as_json(report), indent=2, default=_json_value)
    return as_table(report)


def _amount(value: Decimal) -> str:
    return plain(value.normalize())


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_value(value: object) -> str:
    if isinstance(value, Decimal):
        return _amount(value)
    if isinstance(value, datetime):
        return _time(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _asset(asset: str) -> str:
    """`XLM`, or `CODE:GABC…WXYZ`: the issuer kept recognisable, the table narrow."""
    parts = asset.split(":")
    if len(parts) != 3:
        return "XLM" if asset == "stellar:native" else asset
    return f"{parts[1]}:{parts[2][:4]}…{parts[2][-4:]}"


def _row(payout: PayoutRecord | None, pay: LedgerPayment | None, note: str | None = None) -> Row:
    ids = (payout.id, payout.transaction_id, payout.purpose) if payout else ("-",) * 3
    if pay is not None:
        paid = (_amount(pay.amount), _asset(pay.asset), pay.tx_hash, _time(pay.created_at))
    else:  # a payout with no ledger payment: what it says it paid
        assert payout is not None
        paid = (_amount(payout.amount), _asset(payout.asset), payout.tx_hash or "-", "-")
    return (*ids, *paid), note


def _sections(r: Reconciliation) -> Iterator[tuple[str, list[Row]]]:
    flying = [
        _row(m.payout, m.payment, f"in flight ({m.payout.state})") for m in r.matched if m.in_flight
    ]
    yield f"matched: {len(r.matched)} ({len(flying)} in flight, on ledger)", flying
    yield f"payouts with no ledger payment: {len(r.missing)}", [_row(p, None) for p in r.missing]
    unexplained = [
        _row(u.payout, u.payment, f"{u.reason}; paid to {u.payment.destination}")
        for u in r.unexplained
    ]
    yield f"ledger payments with no payout: {len(unexplained)}", unexplained
    over = [
        _row(m.payout, m.payment, o.reason if m is o.matches[-1] else None)
        for o in r.overpaid
        for m in o.matches
    ]
    yield f"over-paid transactions: {len(r.overpaid)}", over


def as_table(report: Report) -> str:
    window = f"since {report.since:%Y-%m-%d}" if report.since else "all history"
    accounts = ", ".join(report.accounts) or "-"
    out = [f"reconcile: {report.payments} ledger payments from {accounts} ({window})"]
    sections = list(_sections(report.result))
    cells = [HEADER, *(row for _, rows in sections for row, _ in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]  # one grid for all

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    for title, rows in sections:
        out += ["", title, *([line(HEADER)] if rows else [])]
        for row, note in rows:
            out += [line(row), *([f"  ↳ {note}"] if note else [])]
    return "\n".join([*out, "", "result: OK" if report.ok else "result: MISMATCH"])


def as_json(report: Report) -> dict[str, Any]:
    """Every field of the domain values (amounts as strings), and the derived ones."""
    r = report.result
    return {
        "ok": report.ok,
        "since": f"{report.since:%Y-%m-%d}" if report.since else None,
        "accounts": list(report.accounts),
        "payments_read": report.payments,
        "matched": [{**asdict(m), "in_flight": m.in_flight} for m in r.matched],
        "payouts_without_payment": [asdict(p) for p in r.missing],
        "payments_without_payout": [{**asdict(u), "reason": u.reason} for u in r.unexplained],
        "overpaid": [{**asdict(o), "reason": o.reason} for o in r.overpaid],
    }
