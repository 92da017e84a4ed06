"""The asyncio client (httpx.AsyncClient). `_sync.py` is the same, blocking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from anchorpay.client import _wire, calls
from anchorpay.client.auth import Auth
from anchorpay.client.batch import Batch
from anchorpay.client.calls import Call
from anchorpay.client.errors import ClientError, HttpError
from anchorpay.client.models import Payout, Transaction
from anchorpay.client.rest import creation, payouts_query

T = TypeVar("T")
P = ParamSpec("P")


def _method(
    builder: Callable[P, Call[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.call(builder(*args, **kwargs))

    method.__name__ = builder.__name__
    method.__doc__ = builder.__doc__
    return method


class AsyncClient:
    """anchorpay's API for a business backend: one method per JSON-RPC method, batches, the
    REST routes. Errors are exceptions (`anchorpay.client.errors`). A request that never
    reached the server is retried; one whose answer was lost is retried only for reads."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout_s)
        self._owned = http is None
        self._auth = auth
        self._retries = retries
        self._backoff_s = backoff_s
        self._next_id = 1

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    # --- sending -------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, idempotent: bool, **kwargs: Any
    ) -> httpx.Response:
        for attempt in range(self._retries + 1):
            headers = {**_wire.JSON_HEADERS, **(self._auth.headers() if self._auth else {})}
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
                if response.status_code in (502, 503, 504):
                    raise _wire.refusal(response)
                return response
            except (httpx.TransportError, HttpError) as exc:
                if attempt == self._retries or not _wire.retryable(exc, idempotent):
                    if isinstance(exc, httpx.TransportError):
                        raise _wire.lost(exc) from None
                    raise
                await asyncio.sleep(_wire.delay(exc, attempt, self._backoff_s))
        raise AssertionError("unreachable")

    async def _send(self, batch: Batch) -> None:
        if not batch.pending:
            return
        first, self._next_id = self._next_id, self._next_id + len(batch.pending)
        try:
            response = await self._request(
                "POST", "/", idempotent=batch.idempotent, json=_wire.body(batch.queued, first)
            )
            answer = _wire.json_of(response)
        except ClientError as exc:
            batch.fail(exc)
            return
        batch.settle(_wire.outcomes(batch.queued, first, answer))

    async def call(self, call: Call[T]) -> T:
        """Send one call (as a batch of one) and return its result, or raise its error."""
        batch = Batch()
        pending = batch.add(call)
        await self._send(batch)
        return pending.result()

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[Batch]:
        """`async with client.batch() as b: p = b.do_stellar_payment(tx_id)`; then
        `p.result()`. Nothing is sent if the block raises."""
        batch = Batch()
        yield batch
        await self._send(batch)

    # --- REST ----------------------------------------------------------------------------

    async def create_transaction(
        self,
        *,
        kind: str,
        asset: str,
        amount: calls.Money | None = None,
        destination_account: str | None = None,
        source_account: str | None = None,
        memo: str | None = None,
        memo_type: str | None = None,
        refund_memo: str | None = None,
        refund_memo_type: str | None = None,
        client_domain: str | None = None,
        client_name: str | None = None,
        id: str | None = None,
    ) -> Transaction:
        """`POST /transactions`: a SEP-24 transaction in `incomplete`. With your own `id`
        the call is idempotent (a repeat answers the stored transaction), so it is retried
        after a lost answer; without one it is not."""
        body = creation(
            kind=kind,
            asset=asset,
            amount=amount,
            destination_account=destination_account,
            source_account=source_account,
            memo=memo,
            memo_type=memo_type,
            refund_memo=refund_memo,
            refund_memo_type=refund_memo_type,
            client_domain=client_domain,
            client_name=client_name,
            id=id,
        )
        repeatable = id is not None
        response = await self._request("POST", "/transactions", idempotent=repeatable, json=body)
        return Transaction.of(_wire.json_of(response))

    async def payouts(
        self,
        *,
        transaction_id: str | None = None,
        states: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Payout]:
        """`GET /payouts`: what the worker does for do_stellar_payment / do_stellar_refund."""
        response = await self._request(
            "GET",
            "/payouts",
            idempotent=True,
            params=payouts_query(transaction_id, states, limit),
        )
        return [Payout.of(p) for p in _wire.json_of(response)["payouts"]]

    async def payout(self, payout_id: str) -> Payout:
        response = await self._request("GET", f"/payouts/{payout_id}", idempotent=True)
        return Payout.of(_wire.json_of(response))

    # --- one method per JSON-RPC method (anchorpay.client.calls) -------------------------

    notify_interactive_flow_completed = _method(calls.notify_interactive_flow_completed)
    request_offchain_funds = _method(calls.request_offchain_funds)
    request_onchain_funds = _method(calls.request_onchain_funds)
    notify_offchain_funds_received = _method(calls.notify_offchain_funds_received)
    notify_onchain_funds_received = _method(calls.notify_onchain_funds_received)
    notify_offchain_funds_sent = _method(calls.notify_offchain_funds_sent)
    notify_offchain_funds_pending = _method(calls.notify_offchain_funds_pending)
    notify_offchain_funds_available = _method(calls.notify_offchain_funds_available)
    notify_onchain_funds_sent = _method(calls.notify_onchain_funds_sent)
    notify_amounts_updated = _method(calls.notify_amounts_updated)
    notify_refund_pending = _method(calls.notify_refund_pending)
    notify_refund_sent = _method(calls.notify_refund_sent)
    do_stellar_refund = _method(calls.do_stellar_refund)
    do_stellar_payment = _method(calls.do_stellar_payment)
    notify_transaction_error = _method(calls.notify_transaction_error)
    notify_transaction_expired = _method(calls.notify_transaction_expired)
    notify_transaction_recovery = _method(calls.notify_transaction_recovery)
    notify_transaction_on_hold = _method(calls.notify_transaction_on_hold)
    notify_customer_info_updated = _method(calls.notify_customer_info_updated)
    request_trust = _method(calls.request_trust)
    notify_trust_set = _method(calls.notify_trust_set)
    get_transaction = _method(calls.get_transaction)
    get_transactions = _method(calls.get_transactions)
    get_quote = _method(calls.get_quote)
