"""The business events over HTTP (behind the platform API auth, like /transactions):

- `GET /events?after=<cursor>&limit=100&wait=0&state=`: events in feed order after `after`
  (absent: from the start), with `next`, the cursor to pass next time (unchanged when
  nothing came). `wait` (seconds, at most 30): long-poll, answer as soon as an event is
  there, or empty when the wait is over. `state=failed` (or pending, delivered): only the
  events whose delivery to BUSINESS_CALLBACK_URL is in that state, e.g. to redeliver the
  failed ones. The cursor never skips an event a concurrent writer commits late
  (`store/events.py` says how on PostgreSQL).
- `GET /events/{id}`: one event and how its delivery stands.
- `POST /events/{id}/redeliver`: send a delivered or failed event to the business server
  again (202); 404 unknown; 409 when it is still on its way.
"""

from __future__ import annotations

import asyncio
import math

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from anchorpay.rpc.envelope import bad_string
from anchorpay.rpc.events import feed_entry
from anchorpay.store import event_delivery
from anchorpay.store import events as store
from anchorpay.workflow import Services

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_WAIT_S = 30.0
POLL_S = 0.1  # a long-poll looks again this often (any API process may see the commit)
STATES = (event_delivery.PENDING, event_delivery.DELIVERED, event_delivery.FAILED)


class _BadQuery(ValueError):
    pass


def _number(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _BadQuery(f"{name} must be a number between {low:g} and {high:g}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise _BadQuery(f"{name} must be a number between {low:g} and {high:g}")
    return value


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def list_events(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    try:
        after = store.Cursor.parse(request.query_params.get("after"))
        limit_value = _number(request, "limit", float(DEFAULT_LIMIT), 1, MAX_LIMIT)
        if not limit_value.is_integer():
            raise _BadQuery(f"limit must be an integer between 1 and {MAX_LIMIT}")
        wait = _number(request, "wait", 0.0, 0.0, MAX_WAIT_S)
        state = request.query_params.get("state") or None
        if state is not None and state not in STATES:
            raise _BadQuery("state must be one of pending, delivered, failed")
    except ValueError as exc:
        return _error(400, str(exc))
    limit = int(limit_value)
    loop = asyncio.get_running_loop()  # a long poll waits in real time, as asyncio.sleep does
    deadline = loop.time() + wait
    while True:
        async with services.sessions() as session, session.begin():
            rows = await store.feed(session, after, limit, state)
        if rows or loop.time() >= deadline:
            break
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))
    next_cursor = store.Cursor(rows[-1].txid, rows[-1].position or 0) if rows else after
    return JSONResponse(
        {
            "events": [feed_entry(r, services.assets) for r in rows],
            "next": str(next_cursor),
        }
    )


async def get_event(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    event_id = request.path_params["event_id"]
    refused = bad_string(event_id, "event_id")
    if refused is not None:
        return _error(400, refused)
    async with services.sessions() as session:
        row = await store.get(session, event_id)
    if row is None:
        return _error(404, f"event {event_id} not found")
    return JSONResponse(feed_entry(row, services.assets))


async def redeliver(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    event_id = request.path_params["event_id"]
    refused = bad_string(event_id, "event_id")
    if refused is not None:
        return _error(400, refused)
    async with services.sessions() as session, session.begin():
        before = await store.get(session, event_id)
        if before is None:
            return _error(404, f"event {event_id} not found")
        if before.state == event_delivery.PENDING:
            return _error(409, f"event {event_id} is still being delivered")
        row = await event_delivery.redeliver(session, event_id, services.clock.now())
    assert row is not None
    services.wake_worker()
    return JSONResponse(feed_entry(row, services.assets), status_code=202)


def routes() -> list[BaseRoute]:
    return [
        Route("/events", list_events, methods=["GET"]),
        Route("/events/{event_id}", get_event, methods=["GET"]),
        Route("/events/{event_id}/redeliver", redeliver, methods=["POST"]),
    ]
