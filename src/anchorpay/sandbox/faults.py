"""Fault injection for the sandbox's Horizon surface, so tests can reproduce what goes wrong
with a real network: a lost submission, a 504 after the transaction landed, a slow inclusion,
failing requests and one account that keeps failing.

Kinds (POST /sandbox/faults bodies):
  {"kind": "drop_next_submission", "count": 1}           the envelope never reaches the ledger;
                                                          Horizon answers 504
  {"kind": "gateway_timeout_after_apply", "count": 1}    applied, then answered 504
  {"kind": "delay_inclusion", "ledgers": 2, "count": 1}  held out of the next N ledgers
  {"kind": "fail_next", "count": 3, "status": 503, "route": "POST /transactions"}
                                                          answered `status` without acting;
                                                          `route` optional (default: any)
  {"kind": "account_error", "account": "G…", "status": 500}
                                                          every read of that account fails
                                                          until the faults are cleared
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "drop_next_submission",
    "gateway_timeout_after_apply",
    "delay_inclusion",
    "fail_next",
    "account_error",
)


class FaultError(ValueError):
    """A fault request that makes no sense; the message is the sentence shown to the caller."""


def int_field(body: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FaultError(f"The field '{key}' must be an integer from {low} to {high}.")
    return value


def kind_and_count(body: Any, kinds: tuple[str, ...]) -> tuple[str, int]:
    """The `kind` (one of `kinds`) and `count` (1 to 1000, default 1) of a fault body."""
    if not isinstance(body, dict):
        raise FaultError("The body must be a JSON object with a 'kind'.")
    kind = body.get("kind")
    if kind not in kinds:
        raise FaultError(f"The fault kind must be one of: {', '.join(kinds)}.")
    return str(kind), int_field(body, "count", 1, 1, 1000)


@dataclass(slots=True)
class Faults:
    drops: int = 0
    timeouts_after_apply: int = 0
    delays: list[int] = field(default_factory=list)  # ledgers to hold, one per submission
    failures: list[tuple[str | None, int]] = field(default_factory=list)  # (route, status)
    account_errors: dict[str, int] = field(default_factory=dict)

    def add(self, body: Any) -> None:
        """Record a fault from a request body. Raises FaultError with an exact sentence."""
        kind, count = kind_and_count(body, KINDS)
        if kind == "drop_next_submission":
            self.drops += count
        elif kind == "gateway_timeout_after_apply":
            self.timeouts_after_apply += count
        elif kind == "delay_inclusion":
            self.delays.extend([int_field(body, "ledgers", 1, 1, 1000)] * count)
        elif kind == "fail_next":
            status = int_field(body, "status", 503, 400, 599)
            route = body.get("route")
            if route is not None and not isinstance(route, str):
                raise FaultError("The field 'route' must be a string like 'GET /accounts/{id}'.")
            self.failures.extend([(route, status)] * count)
        else:
            account = body.get("account")
            if not isinstance(account, str) or not account:
                raise FaultError("The field 'account' must be a Stellar account id.")
            self.account_errors[account] = int_field(body, "status", 500, 400, 599)

    def clear(self) -> None:
        self.drops = self.timeouts_after_apply = 0
        self.delays.clear()
        self.failures.clear()
        self.account_errors.clear()

    # --- consumed by the Horizon routes -------------------------------------------------------

    def failure_for(self, route: str, account: str | None) -> int | None:
        """The status to answer this request with instead of serving it, if any."""
        if account is not None and account in self.account_errors:
            return self.account_errors[account]
        for i, (only, status) in enumerate(self.failures):
            if only is None or only == route:
                del self.failures[i]
                return status
        return None

    def take_drop(self) -> bool:
        if self.drops:
            self.drops -= 1
            return True
        return False

    def take_timeout_after_apply(self) -> bool:
        if self.timeouts_after_apply:
            self.timeouts_after_apply -= 1
            return True
        return False

    def take_delay(self) -> int:
        return self.delays.pop(0) if self.delays else 0

    def describe(self) -> dict[str, Any]:
        return {
            "drop_next_submission": self.drops,
            "gateway_timeout_after_apply": self.timeouts_after_apply,
            "delay_inclusion": list(self.delays),
            "fail_next": [{"route": r, "status": s} for r, s in self.failures],
            "account_error": dict(self.account_errors),
        }
