"""Prometheus metrics (README, "Monitoring"): what moved in this process, counted where it
happens, plus gauges read from the database when `/metrics` is scraped.

Each process has its own `Metrics` (its own registry, handed down in `Services`), so several
apps in one test process never share counts, and an `anchorpay worker` process serves its
own (`--metrics-port`). Labels are closed sets (method names, codes, states): never an id."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Seconds; a ledger closes every ~5 s, a Fireblocks payout may take minutes.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SETTLE = (1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # --- the API
        self.rpc_requests = Counter(
            "anchorpay_rpc_requests",
            "JSON-RPC requests by method and outcome (0 = a result, else the error code)",
            ["method", "code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "anchorpay_rpc_request_seconds",
            "Time to answer one JSON-RPC request, by method",
            ["method"],
            buckets=_LATENCY,
            registry=r,
        )
        # --- payouts (the worker)
        self.payout_changes = Counter(
            "anchorpay_payout_state_changes",
            "Payout state changes written by the worker, by purpose and new state",
            ["purpose", "state"],
            registry=r,
        )
        self.payout_retries = Counter(
            "anchorpay_payout_retries",
            "Payout steps rescheduled after a transient failure, by what failed",
            ["error_class"],
            registry=r,
        )
        self.payout_settle_seconds = Histogram(
            "anchorpay_payout_submit_to_confirm_seconds",
            "From the payout's submission being recorded to its confirmation",
            buckets=_SETTLE,
            registry=r,
        )
        self.payout_batch_size = Histogram(
            "anchorpay_payout_batch_size",
            "Payouts carried by one envelope the worker built for several (operation batching)",
            buckets=(2, 5, 10, 25, 50, 75, 100),
            registry=r,
        )
        # --- incoming payments and trustlines
        self.observer_payments = Counter(
            "anchorpay_observer_payments",
            "Incoming payments the observer decided on: credited or unmatched",
            ["outcome"],
            registry=r,
        )
        self.observer_lag_ledgers = Gauge(
            "anchorpay_observer_lag_ledgers",
            "Ledgers between the network's latest and what the observer is caught up with",
            registry=r,
        )
        self.observer_runs = Counter(
            "anchorpay_observer_runs",
            "Observer runs by outcome (caught_up, behind, failed)",
            ["outcome"],
            registry=r,
        )
        self.trustline_polls = Counter(
            "anchorpay_trustline_polls", "Trustline poller cycles", registry=r
        )
        self.trustline_reads = Counter(
            "anchorpay_trustline_reads", "Account reads made by the trustline poller", registry=r
        )
        # --- Fireblocks
        self.fireblocks_calls = Counter(
            "anchorpay_fireblocks_api_calls",
            "Fireblocks API calls by endpoint and HTTP status (0 = no answer)",
            ["endpoint", "status"],
            registry=r,
        )
        self.fireblocks_webhooks = Counter(
            "anchorpay_fireblocks_webhooks",
            "Fireblocks webhooks received, by outcome",
            ["outcome"],
            registry=r,
        )
        # --- business events (BUSINESS_CALLBACK_URL)
        self.event_deliveries = Counter(
            "anchorpay_event_deliveries",
            "Event callback attempts by outcome (delivered, retry, failed, error)",
            ["outcome"],
            registry=r,
        )
        self.event_delivery_seconds = Histogram(
            "anchorpay_event_delivery_seconds",
            "Time the business callback took to answer one event",
            buckets=_LATENCY,
            registry=r,
        )
        self.event_commit_to_delivery_seconds = Histogram(
            "anchorpay_event_commit_to_delivery_seconds",
            "From an event's change committing to its delivery being acknowledged",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=r,
        )
        self.events = Gauge(
            "anchorpay_events", "Business events by delivery state", ["state"], registry=r
        )
        # --- read from the database at scrape time
        self.transactions = Gauge(
            "anchorpay_transactions", "Transactions by status", ["status"], registry=r
        )
        self.payouts = Gauge("anchorpay_payouts", "Payouts by state", ["state"], registry=r)
        self.oldest_unconfirmed_s = Gauge(
            "anchorpay_payout_oldest_in_flight_seconds",
            "Seconds since the longest-waiting payout in flight last changed (0: none)",
            registry=r,
        )
        self._snapshot_at = -math.inf  # never taken

    @contextmanager
    def timed_rpc(self, method: str) -> Iterator[list[int]]:
        """Count and time one request; the caller puts the outcome code in the list."""
        outcome = [0]
        started = time.perf_counter()
        try:
            yield outcome
        finally:
            self.rpc_seconds.labels(method).observe(time.perf_counter() - started)
            self.rpc_requests.labels(method, str(outcome[0])).inc()

    def snapshot_due(self, max_age_s: float, now: float) -> bool:
        """Whether the database gauges are older than `max_age_s` at `now` (the clock's
        monotonic seconds): a scrape every second costs one grouped query every few seconds,
        not one per scrape."""
        if now - self._snapshot_at < max_age_s:
            return False
        self._snapshot_at = now
        return True

    def set_counts(self, gauge: Gauge, counts: Mapping[str, int], known: tuple[str, ...]) -> None:
        """Every known label gets a value (0 when absent), so a state that empties drops to
        0 instead of keeping its last count."""
        for label in (*known, *(k for k in counts if k not in known)):
            gauge.labels(label).set(counts.get(label, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
