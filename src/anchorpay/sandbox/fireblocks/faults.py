"""Fault injection for the sandbox Fireblocks, so tests can reproduce what goes wrong with a
custody provider: a lost answer after the transfer was made, rate limiting, a slow answer, a
policy rejection, a failure on chain and lost webhooks.

Kinds (POST /sandbox/fireblocks/faults bodies; `count` defaults to 1):
  {"kind": "unavailable_after_create", "count": 1}   created (and walks on), answered 503
  {"kind": "rate_limited", "count": 1}               a create answered 429, nothing created
  {"kind": "slow_answer", "count": 1, "delay_s": 2}  created, answered after `delay_s`
  {"kind": "reject_by_policy", "count": 1}           SUBMITTED → REJECTED (BLOCKED_BY_POLICY)
  {"kind": "fail_on_chain", "count": 1}              … → BROADCASTING → FAILED
                                                      (REJECTED_BY_BLOCKCHAIN), nothing paid
  {"kind": "drop_webhooks", "count": 1}              events kept in the outbox, never sent
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from anchorpay.sandbox.faults import FaultError, kind_and_count

KINDS = (
    "unavailable_after_create",
    "rate_limited",
    "slow_answer",
    "reject_by_policy",
    "fail_on_chain",
    "drop_webhooks",
)
MAX_DELAY_S = 60.0


@dataclass(slots=True)
class FireblocksFaults:
    counts: Counter[str] = field(default_factory=Counter)  # every kind but slow_answer
    delays: list[float] = field(default_factory=list)  # slow_answer: one delay per create

    def add(self, body: Any) -> None:
        """Record a fault from a request body. Raises FaultError with an exact sentence."""
        kind, count = kind_and_count(body, KINDS)
        if kind == "slow_answer":
            delay = body.get("delay_s")
            if isinstance(delay, bool) or not isinstance(delay, int | float):
                raise FaultError("The field 'delay_s' must be a number of seconds from 0 to 60.")
            if not 0 <= delay <= MAX_DELAY_S:
                raise FaultError("The field 'delay_s' must be a number of seconds from 0 to 60.")
            self.delays.extend([float(delay)] * count)
        else:
            self.counts[kind] += count

    def clear(self) -> None:
        self.counts.clear()
        self.delays.clear()

    def take(self, kind: str) -> bool:
        """Consume one fault of `kind` (not slow_answer); True when there was one."""
        if self.counts[kind] > 0:
            self.counts[kind] -= 1
            return True
        return False

    def take_delay(self) -> float | None:
        return self.delays.pop(0) if self.delays else None

    def describe(self) -> dict[str, Any]:
        found: dict[str, Any] = {kind: self.counts[kind] for kind in KINDS if kind != "slow_answer"}
        found["slow_answer"] = list(self.delays)
        return found
