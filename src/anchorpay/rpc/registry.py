"""The RPC method table: every method name of spec/rpc.md §2.2 is known; each group of
methods lives in its own module under `rpc/methods/` and contributes its handlers here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from anchorpay.domain.errors import InternalError, MethodNotFound
from anchorpay.rpc import openrpc
from anchorpay.rpc.methods import reads, sep24
from anchorpay.workflow import Services

Handler = Callable[[Services, Any], Awaitable[Any]]

# The 24 methods of the Anchor Platform's RpcMethod (spec §2.2). There are no others.
ALL_METHODS: tuple[str, ...] = (
    "notify_interactive_flow_completed",
    "request_offchain_funds",
    "notify_offchain_funds_sent",
    "notify_offchain_funds_received",
    "notify_refund_pending",
    "notify_refund_sent",
    "request_trust",
    "notify_trust_set",
    "notify_customer_info_updated",
    "do_stellar_payment",
    "notify_onchain_funds_sent",
    "notify_onchain_funds_received",
    "notify_offchain_funds_available",
    "notify_offchain_funds_pending",
    "notify_transaction_error",
    "notify_transaction_expired",
    "do_stellar_refund",
    "request_onchain_funds",
    "notify_amounts_updated",
    "notify_transaction_recovery",
    "notify_transaction_on_hold",
    "get_transaction",
    "get_transactions",
    "get_quote",
)


def build_handlers() -> dict[str, Handler]:
    handlers: dict[str, Handler] = {}
    handlers.update(reads.handlers())
    handlers.update(sep24.handlers())
    unknown = set(handlers) - set(ALL_METHODS)
    if unknown:  # a programming error, caught by the tests
        raise RuntimeError(f"handlers for methods the API does not have: {sorted(unknown)}")
    return handlers


class Registry:
    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self.handlers: Mapping[str, Handler] = (
            handlers if handlers is not None else build_handlers()
        )
        self._description: dict[str, Any] | None = None

    def description(self) -> dict[str, Any]:
        """The OpenRPC document of the registered methods (built once: it never changes)."""
        if self._description is None:
            names = [m for m in ALL_METHODS if m in self.handlers]
            self._description = openrpc.document(names)
        return self._description

    async def call(self, services: Services, method: str, params: Any) -> Any:
        if method == openrpc.DISCOVER:  # OpenRPC's service discovery, not an Anchor Platform method
            return self.description()
        handler = self.handlers.get(method)
        if handler is None:
            if method in ALL_METHODS:
                raise InternalError(f"RPC method[{method}] is not implemented yet")
            raise MethodNotFound(f"No matching RPC method[{method}]")
        return await handler(services, params)
