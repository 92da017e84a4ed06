"""One structured line per payout state change (logfmt), shared by the processor and the
completion so neither imports the other for it."""

from __future__ import annotations

import logging
from typing import Any

from anchorpay.store.tables import PayoutRow

log = logging.getLogger("anchorpay.payouts")


def log_change(before: PayoutRow | None, after: PayoutRow, note: str = "") -> None:
    fields: dict[str, Any] = {
        "event": "payout_state",
        "payout": after.id,
        "transaction": after.transaction_id,
        "purpose": after.purpose,
        "from": before.state if before is not None else "-",
        "to": after.state,
        "attempts": after.attempts,
        "hash": after.tx_hash or "-",
    }
    if after.last_error:
        fields["error"] = after.last_error
    if note:
        fields["note"] = note
    log.info(" ".join(f"{k}={_quote(v)}" for k, v in fields.items()))


def _quote(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if any(c in text for c in ' ="') else text
