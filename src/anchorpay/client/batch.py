"""A JSON-RPC batch: calls queued with the same typed methods as the client, sent as one
HTTP request when the `with` block ends (each call applied on its own, in order, as the API
does: spec §1.2), each read back from its `Pending`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from anchorpay.client import calls
from anchorpay.client._wire import Outcome
from anchorpay.client.calls import Call
from anchorpay.client.errors import ClientError

T = TypeVar("T")
P = ParamSpec("P")


class Pending(Generic[T]):
    """One call of a batch: its result (or its error, raised) once the batch was sent."""

    def __init__(self, call: Call[T]) -> None:
        self.call = call
        self._outcome: Outcome[T] | None = None

    def result(self) -> T:
        if self._outcome is None:
            raise ClientError(f"{self.call.method}: the batch has not been sent")
        return self._outcome.get()

    @property
    def error(self) -> Exception | None:
        return None if self._outcome is None else self._outcome.error

    def settle(self, outcome: Outcome[T]) -> None:
        self._outcome = outcome


def _queued(builder: Callable[P, Call[T]]) -> Callable[Concatenate[Batch, P], Pending[T]]:
    def queue(self: Batch, /, *args: P.args, **kwargs: P.kwargs) -> Pending[T]:
        return self.add(builder(*args, **kwargs))

    queue.__name__ = builder.__name__
    queue.__doc__ = builder.__doc__
    return queue


class Batch:
    def __init__(self) -> None:
        self.pending: list[Pending[Any]] = []

    def add(self, call: Call[T]) -> Pending[T]:
        entry = Pending(call)
        self.pending.append(entry)
        return entry

    @property
    def queued(self) -> list[Call[Any]]:
        return [p.call for p in self.pending]

    @property
    def idempotent(self) -> bool:
        return all(p.call.idempotent for p in self.pending)

    def settle(self, outcomes: list[Outcome[Any]]) -> None:
        for entry, outcome in zip(self.pending, outcomes, strict=True):
            entry.settle(outcome)

    def fail(self, error: Exception) -> None:
        for entry in self.pending:
            entry.settle(Outcome(error=error))

    notify_interactive_flow_completed = _queued(calls.notify_interactive_flow_completed)
    request_offchain_funds = _queued(calls.request_offchain_funds)
    request_onchain_funds = _queued(calls.request_onchain_funds)
    notify_offchain_funds_received = _queued(calls.notify_offchain_funds_received)
    notify_onchain_funds_received = _queued(calls.notify_onchain_funds_received)
    notify_offchain_funds_sent = _queued(calls.notify_offchain_funds_sent)
    notify_offchain_funds_pending = _queued(calls.notify_offchain_funds_pending)
    notify_offchain_funds_available = _queued(calls.notify_offchain_funds_available)
    notify_onchain_funds_sent = _queued(calls.notify_onchain_funds_sent)
    notify_amounts_updated = _queued(calls.notify_amounts_updated)
    notify_refund_pending = _queued(calls.notify_refund_pending)
    notify_refund_sent = _queued(calls.notify_refund_sent)
    do_stellar_refund = _queued(calls.do_stellar_refund)
    do_stellar_payment = _queued(calls.do_stellar_payment)
    notify_transaction_error = _queued(calls.notify_transaction_error)
    notify_transaction_expired = _queued(calls.notify_transaction_expired)
    notify_transaction_recovery = _queued(calls.notify_transaction_recovery)
    notify_transaction_on_hold = _queued(calls.notify_transaction_on_hold)
    notify_customer_info_updated = _queued(calls.notify_customer_info_updated)
    request_trust = _queued(calls.request_trust)
    notify_trust_set = _queued(calls.notify_trust_set)
    get_transaction = _queued(calls.get_transaction)
    get_transactions = _queued(calls.get_transactions)
    get_quote = _queued(calls.get_quote)
