"""The payment observer's part of `GET /health`.

The observer records, after every run that caught up with every watched account, the ledger
it was caught up with and when (`observer_state`). It is **stalled** when that is older than
OBSERVER_STALL_S and the ledger moved on since (or Horizon cannot even be asked): the health
check then answers 503. It is `network_changed` (503 at once) when its last run refused the
ledger as another network, or the ledger is behind the ledger it processed. A network that
closed no ledger is `idle`, not stalled. Before the first run completes the status is
`starting` (healthy; `last_error` says what failed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from anchorpay.adapters.ledger import LedgerError
from anchorpay.network_guard import NetworkChanged
from anchorpay.services import JobServices
from anchorpay.store import observer as store

# How the observer records its refusal of another network (`ObserverRun.error`).
NETWORK_CHANGED = f"{NetworkChanged.__name__}: {NetworkChanged.PREFIX}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


async def observer_health(services: JobServices, *, now: datetime | None = None) -> dict[str, Any]:
    """`{"healthy": bool, "status": "starting" | "ok" | "idle" | "stalled", "last_ledger",
    "last_ledger_closed_at", "caught_up_at", "seconds_since_caught_up", "latest_ledger",
    "stall_after_s", "last_error", "last_error_at"}`. Asks Horizon for the latest ledger only
    when the observer is late."""
    now = now or services.clock.now()
    stall_s = services.settings.observer_stall_s
    if services.settings.deposit_info_generator == "custody":  # the custodian reports instead
        return {"healthy": True, "status": "off", "stall_after_s": stall_s}
    async with services.sessions() as session:
        state = await store.get_state(session)
    info: dict[str, Any] = {
        "healthy": True,
        "status": "starting",
        "last_ledger": None,
        "last_ledger_closed_at": None,
        "caught_up_at": None,
        "seconds_since_caught_up": None,
        "latest_ledger": None,
        "stall_after_s": stall_s,
        "last_error": state.last_error if state else None,
        "last_error_at": _iso(state.last_error_at) if state else None,
    }
    if state is not None and (state.last_error or "").startswith(NETWORK_CHANGED):
        # The observer refuses to read another network: down now, not after the stall delay.
        info.update(healthy=False, status="network_changed")
        return info
    if state is None or state.caught_up_at is None or state.last_ledger is None:
        return info
    age = max(0.0, (now - state.caught_up_at).total_seconds())
    info.update(
        last_ledger=state.last_ledger,
        last_ledger_closed_at=_iso(state.last_ledger_closed_at),
        caught_up_at=_iso(state.caught_up_at),
        seconds_since_caught_up=round(age, 3),
        status="ok",
    )
    if age <= stall_s:
        return info
    try:
        latest = await services.ledger.latest_ledger()
    except LedgerError:
        moved = True  # Horizon cannot be read: neither can the observer
    else:
        info["latest_ledger"] = latest.sequence
        if latest.sequence < state.last_ledger:  # behind what was processed: another network
            info.update(healthy=False, status="network_changed")
            return info
        moved = latest.sequence > state.last_ledger
    if moved:
        info.update(healthy=False, status="stalled")
    else:
        info["status"] = "idle"
    return info
