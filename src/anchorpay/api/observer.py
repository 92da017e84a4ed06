"""The payment observer's HTTP surface.

- `GET /observer/unmatched[?account=G…&limit=&offset=]`: the incoming payments that credited
  no withdrawal (newest first) with the reason, so an operator can refund or credit them by
  hand. Same authentication as `/transactions`.
- The `observer` member of `GET /health` (a check the composition root hands in, see
  `api/observer_health.py`): 503 when the observer is stalled.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from anchorpay.api.observer_health import observer_health
from anchorpay.rpc.envelope import bad_string
from anchorpay.services import JobServices
from anchorpay.store import observer as store
from anchorpay.store.observer_tables import UnmatchedPaymentRow

MAX_LIMIT = 200
MAX_OFFSET = 1_000_000_000
_INT = re.compile(r"-?[0-9]+")


def _ts(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def unmatched_view(row: UnmatchedPaymentRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "paging_token": row.paging_token,
        "account": row.account,
        "stellar_transaction_id": row.transaction_hash,
        "source_account": row.source_account,
        "asset": row.asset,
        "amount": row.amount,
        "memo": row.memo,
        "memo_type": row.memo_type,
        "reason": row.reason,
        "detail": row.detail,
        "transaction_id": row.transaction_id,
        "created_at": _ts(row.created_at),
        "recorded_at": _ts(row.recorded_at),
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int(request: Request, name: str, default: int) -> int | None:
    """The query integer (ASCII digits, optional minus), or None when it is not one; more
    than 18 digits stands for "too large" (int() of thousands of digits fails)."""
    raw = request.query_params.get(name, str(default)).strip()
    if not _INT.fullmatch(raw):
        return None
    return int(raw) if len(raw) <= 18 else MAX_OFFSET + 1


async def list_unmatched(request: Request) -> JSONResponse:
    limit = _int(request, "limit", 50)
    offset = _int(request, "offset", 0)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"limit must be an integer between 1 and {MAX_LIMIT}")
    if offset is None or offset < 0:
        return _error(400, "offset must be a non-negative integer")
    if offset > MAX_OFFSET:
        return _error(400, f"offset must be an integer from 0 to {MAX_OFFSET}")
    account = request.query_params.get("account") or None
    refused = bad_string(account, "account") if account else None
    if refused is not None:
        return _error(400, refused)
    sessions: async_sessionmaker[AsyncSession] = request.app.state.services.sessions
    async with sessions() as session:
        rows = await store.list_unmatched(session, account=account, limit=limit, offset=offset)
    return JSONResponse({"unmatched_payments": [unmatched_view(r) for r in rows]})


async def observer_check(services: JobServices) -> tuple[dict[str, Any], bool]:
    info = await observer_health(services)
    return info, bool(info["healthy"])


def routes() -> list[BaseRoute]:
    return [Route("/observer/unmatched", list_unmatched, methods=["GET"])]
