"""When to try a payout again: tenacity's exponential backoff with full jitter.

The worker does not sleep in a retry loop (a payout's retries outlive any process); it asks
tenacity's wait strategy for the delay of attempt N and stores `next_attempt_at` on the row.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tenacity import RetryCallState, Retrying, wait_random_exponential

from anchorpay.settings import Settings


class Backoff:
    """Delay before attempt `n + 1` after `n` failed ones: uniform in [0, min(max, base·2^(n-1))]
    (full jitter: workers that failed together do not come back together), never below
    `floor` so a broken network is not hammered."""

    def __init__(self, base_s: float, max_s: float, floor_s: float | None = None) -> None:
        self._wait = wait_random_exponential(multiplier=base_s, max=max_s)
        self._floor = min(base_s / 2, max_s) if floor_s is None else floor_s
        self._retrying = Retrying()

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(settings.payout_retry_base_s, settings.payout_retry_max_s)

    def delay(self, attempts: int) -> float:
        state = RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        state.attempt_number = max(1, attempts)
        return max(self._floor, float(self._wait(state)))

    def next_attempt_at(self, now: datetime, attempts: int) -> datetime:
        return now + timedelta(seconds=self.delay(attempts))
