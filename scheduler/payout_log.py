"""One structured line and the metrics of each payout state change (logfmt), shared by the
processor and the completion so neither imports the other for it."""

from __future__ import annotations

import logging
from typing import Any

from anchorpay.metrics import Metrics
from anchorpay.store.tables import PayoutRow

log = logging.getLogger("anchorpay.payouts")


# The states a payout is in once its envelope is recorded and may be on its way.
_SENT = ("submitting", "submitted")


def log_change(
    before: PayoutRow | None, after: PayoutRow, note: str = "", metrics: Metrics | None = None
) -> None:
    if metrics is not None and (before is None or before.state != after.state):
        metrics.payout_changes.labels(after.purpose, after.state).inc()
        if before is not None and before.state in _SENT and after.state == "confirmed":
            waited = (after.updated_at - before.updated_at).total_seconds()
            metrics.payout_settle_seconds.observe(max(0.0, waited))
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
