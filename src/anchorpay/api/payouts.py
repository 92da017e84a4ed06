"""Read-only payout views: `GET /payouts?transaction_id=…` and `GET /payouts/{id}`, and the
payouts' member of `GET /health`.

They show what an operator needs to follow a payout (state, attempts, last error, hash) and
never the signed envelope: it is not secret, but it is not the operator's business either and
it keeps responses small.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from anchorpay.domain.payout_states import OPEN_STATES, PayoutState
from anchorpay.rpc.envelope import bad_string
from anchorpay.store import fireblocks as fireblocks_store
from anchorpay.store import payouts as store
from anchorpay.store.tables import PayoutRow
from anchorpay.workflow import Services

MAX_LIMIT = 200
_INT = re.compile(r"-?[0-9]+")


def _ts(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def payout_view(row: PayoutRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "transaction_id": row.transaction_id,
        "purpose": row.purpose,
        "seq": row.seq,
        "state": row.state,
        "destination": row.destination,
        "asset": row.asset,
        "amount": row.amount,
        "memo": row.memo,
        "memo_type": row.memo_type,
        "refund_fee": row.refund_fee,
        "attempts": row.attempts,
        "polls": row.polls,
        "last_error": row.last_error,
        "next_attempt_at": _ts(row.next_attempt_at),
        "adapter": row.adapter,
        "tx_hash": row.tx_hash,
        "op_index": row.op_index,  # its operation in an envelope shared with other payouts
        "ledger": row.ledger,
        "valid_until": _ts(row.valid_until),
        "created_at": _ts(row.created_at),
        "updated_at": _ts(row.updated_at),
    }


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    services = request.app.state.services
    factory: async_sessionmaker[AsyncSession] = services.sessions
    return factory


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def list_payouts(request: Request) -> JSONResponse:
    transaction_id = request.query_params.get("transaction_id") or None
    refused = bad_string(transaction_id, "transaction_id") if transaction_id else None
    if refused is not None:
        return _error(400, refused)
    asked = [s for s in request.query_params.get("state", "").split(",") if s]
    unknown = set(asked) - set(PayoutState)
    if unknown:
        return _error(400, f"unknown payout state {sorted(unknown)[0]!r}")
    states = [PayoutState(s) for s in asked]
    raw_limit = request.query_params.get("limit", "100").strip()
    if not _INT.fullmatch(raw_limit):
        return _error(400, "limit must be an integer")
    limit = int(raw_limit) if len(raw_limit) <= 18 else MAX_LIMIT + 1
    if not 1 <= limit <= MAX_LIMIT:
        return _error(400, f"limit must be between 1 and {MAX_LIMIT}")
    async with _sessions(request)() as session:
        rows = await store.list_payouts(
            session, transaction_id=transaction_id, states=states or None, limit=limit
        )
    return JSONResponse({"payouts": [payout_view(r) for r in rows]})


async def get_payout(request: Request) -> JSONResponse:
    payout_id = request.path_params["payout_id"]
    refused = bad_string(payout_id, "payout_id")
    if refused is not None:
        return _error(400, refused)
    async with _sessions(request)() as session:
        row = await store.get(session, payout_id)
    if row is None:
        return _error(404, f"payout {payout_id} is not found")
    return JSONResponse(payout_view(row))


def routes() -> list[BaseRoute]:
    return [
        Route("/payouts", list_payouts, methods=["GET"]),
        Route("/payouts/{payout_id}", get_payout, methods=["GET"]),
    ]


# --- GET /health ---------------------------------------------------------------------------


async def payouts_check(services: Services) -> tuple[dict[str, Any], bool]:
    """How many payouts are in each open state and how long the oldest one in flight has
    waited; with Fireblocks, when the last webhook came (silent webhooks mean completion
    runs on the poll alone). Informational: a slow custodian is not an outage of anchorpay,
    but it is what an operator looks at first."""
    custody = services.settings.effective_custody_type
    now = services.clock.now()
    async with services.sessions() as session:
        counts = await store.count_by_state(session)
        oldest = await store.oldest_in_flight(session)
        last_webhook = (
            await fireblocks_store.last_event_at(session) if custody == "fireblocks" else None
        )
    info: dict[str, Any] = {
        "custody": custody,
        "open": {state: counts.get(state, 0) for state in OPEN_STATES},
        "oldest_in_flight_s": round((now - oldest).total_seconds(), 3) if oldest else None,
    }
    if custody == "fireblocks":
        info["last_fireblocks_webhook_at"] = _ts(last_webhook)
    return info, True
