"""The status-changing SEP-24 methods (spec/rpc.md §3): each one is the workflow applying
the state machine to the stored transaction; the result is the transaction object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from anchorpay import workflow
from anchorpay.domain import machine
from anchorpay.rpc.result import transaction_result
from anchorpay.workflow import Services

Handler = Callable[[Services, Any], Awaitable[Any]]


def _handler(method: str) -> Handler:
    async def handle(services: Services, params: Any) -> dict[str, object]:
        tx = await workflow.run_method(services, method, params)
        return transaction_result(tx, services.assets)

    handle.__name__ = method
    return handle


def handlers() -> dict[str, Handler]:
    return {method: _handler(method) for method in sorted(machine.METHODS)}
