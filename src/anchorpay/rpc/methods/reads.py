"""Read-only methods (spec/rpc.md §4): `get_transaction` and `get_transactions`.

`get_transactions` gets the REST endpoint's defaults (sep 24, created_at, asc, page 0, size
20) instead of the reference's NullPointerException, accepts enum values in upper case (the
reference's `CREATED_AT`, `ASC`) or lower case (the REST's), and refuses a bad value with
-32602 and a sentence. `ListQuery.parse` is shared with `GET /transactions`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from anchorpay.domain.errors import InternalError, InvalidParams
from anchorpay.domain.statuses import Status
from anchorpay.rpc.result import transaction_result
from anchorpay.store import transactions as repo
from anchorpay.store.transactions import Order, OrderBy
from anchorpay.workflow import Services

Handler = Callable[[Services, Any], Awaitable[Any]]

SEPS = ("6", "24", "31")
ORDER_BYS = ("created_at", "transfer_received_at", "user_action_required_by")
ORDERS = ("asc", "desc")
MAX_PAGE_SIZE = 200
MAX_PAGE_NUMBER = 1_000_000_000  # page_number × page_size stays far inside a 64-bit OFFSET
_QUERY_INT = re.compile(r"-?[0-9]+")
_OUT_OF_RANGE = 10**19  # stands for any query integer of more than 18 digits
_STATUSES = frozenset(s.value for s in Status)


@dataclass(frozen=True, slots=True)
class ListQuery:
    sep: str = "24"
    order_by: OrderBy = "created_at"
    order: Order = "asc"
    statuses: tuple[str, ...] = ()
    page_number: int = 0
    page_size: int = 20

    @classmethod
    def parse(cls, values: dict[str, Any], *, from_query: bool = False) -> ListQuery:
        """Validate JSON params (or, with `from_query`, URL query strings). Raises
        InvalidParams with a sentence naming the field."""
        sep = _choice(values, "sep", SEPS, "24", numbers=True)
        order_by = _choice(values, "order_by", ORDER_BYS, "created_at")
        order = _choice(values, "order", ORDERS, "asc")
        statuses = _statuses(values.get("statuses"), from_query)
        page_number = _integer(values, "page_number", 0, from_query)
        if page_number < 0:
            raise InvalidParams("page_number must be an integer of 0 or more")
        if page_number > MAX_PAGE_NUMBER:
            raise InvalidParams(f"page_number must be an integer from 0 to {MAX_PAGE_NUMBER}")
        page_size = _integer(values, "page_size", 20, from_query)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidParams(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
        return cls(
            sep=sep,
            order_by=cast(OrderBy, order_by),
            order=cast(Order, order),
            statuses=statuses,
            page_number=page_number,
            page_size=page_size,
        )


def _choice(
    values: dict[str, Any], name: str, allowed: tuple[str, ...], default: str, numbers: bool = False
) -> str:
    value = values.get(name)
    if value is None:
        return default
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    raise InvalidParams(f"{name} must be one of {', '.join(allowed)}")


def _statuses(value: Any, from_query: bool) -> tuple[str, ...]:
    if value is None:
        return ()
    if from_query and isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidParams("statuses must be a list of SEP-24 status strings")
    for status in value:
        if status not in _STATUSES:
            raise InvalidParams(f"statuses: '{status}' is not a SEP-24 status")
    return tuple(dict.fromkeys(value))


def _integer(values: dict[str, Any], name: str, default: int, from_query: bool) -> int:
    value = values.get(name)
    if value is None:
        return default
    if from_query and isinstance(value, str) and _QUERY_INT.fullmatch(value.strip()):
        digits = value.strip()
        # Past 18 digits it is out of every field's range; int() of thousands of digits fails.
        return (
            int(digits)
            if len(digits.lstrip("-")) <= 18
            else _OUT_OF_RANGE * (-1 if digits.startswith("-") else 1)
        )
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidParams(f"{name} must be an integer")


async def list_transactions(services: Services, query: ListQuery) -> list[dict[str, object]]:
    if query.sep != "24":  # anchorpay holds SEP-24 transactions only
        return []
    async with services.sessions() as session:
        found = await repo.list_page(
            session,
            statuses=query.statuses or None,
            order_by=query.order_by,
            order=query.order,
            page_number=query.page_number,
            page_size=query.page_size,
        )
    return [transaction_result(tx, services.assets) for tx in found]


async def get_transaction(services: Services, params: Any) -> dict[str, object]:
    if params is not None and not isinstance(params, dict):
        raise InvalidParams("params must be a JSON object with a transaction_id")
    transaction_id = (params or {}).get("transaction_id")
    if transaction_id is None or transaction_id == "":
        raise InvalidParams("transaction id cannot be empty")
    if not isinstance(transaction_id, str):
        raise InvalidParams("transaction_id must be a string")
    tx = await repo.read(services.sessions, transaction_id)
    if tx is None:
        raise InternalError(f"transaction (id={transaction_id}) is not found")
    return transaction_result(tx, services.assets)


async def get_transactions(services: Services, params: Any) -> dict[str, object]:
    if params is not None and not isinstance(params, dict):
        raise InvalidParams("params must be a JSON object")
    query = ListQuery.parse(params or {})
    return {"records": await list_transactions(services, query)}


def handlers() -> dict[str, Handler]:
    return {"get_transaction": get_transaction, "get_transactions": get_transactions}
