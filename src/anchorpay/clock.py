"""The one place anchorpay reads the time. Everything else is handed a `Clock` by the
composition root (through `Services`), so tests move time instead of sleeping and a whole
process can run on one test clock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


class Clock:
    """The system's clock: wall time (aware, UTC) and a monotonic counter for intervals."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        """Seconds since the epoch (JWT `iat`/`exp`, webhook timestamps)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds on a counter that never goes back (caches, rate limits)."""
        return time.monotonic()


class ManualClock(Clock):
    """A clock that moves only when told to (tests, simulations)."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._ticks = 0.0

    def now(self) -> datetime:
        return self._now

    def time(self) -> float:
        return self._now.timestamp()

    def monotonic(self) -> float:
        return self._ticks

    def __call__(self) -> datetime:  # usable where a `now` callable is expected
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._ticks += seconds


SYSTEM = Clock()
