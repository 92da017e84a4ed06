"""`GET /metrics`: this process's Prometheus metrics (anchorpay.metrics), with the gauges
that come from the database refreshed at most every SNAPSHOT_S seconds. Behind the API's
authentication like every other route but /health (README, "Monitoring")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from anchorpay.domain.payout_states import PayoutState
from anchorpay.domain.statuses import Status
from anchorpay.metrics import CONTENT_TYPE
from anchorpay.store import event_delivery as event_store
from anchorpay.store import payouts as payout_store
from anchorpay.store import transactions as tx_store
from anchorpay.workflow import Services

SNAPSHOT_S = 5.0
STATUSES = tuple(s.value for s in Status)
STATES = tuple(s.value for s in PayoutState)
EVENT_STATES = ("pending", "delivered", "failed")


async def refresh(services: Services) -> None:
    """Read the database gauges: two grouped queries and one min()."""
    metrics = services.metrics
    async with services.sessions() as session:
        by_status = await tx_store.count_by_status(session)
        by_state = await payout_store.count_by_state(session)
        oldest = await payout_store.oldest_in_flight(session)
        by_delivery = await event_store.count_by_state(session)
    metrics.set_counts(metrics.transactions, by_status, STATUSES)
    metrics.set_counts(metrics.payouts, by_state, STATES)
    metrics.set_counts(metrics.events, by_delivery, EVENT_STATES)
    waited = (services.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
    metrics.oldest_unconfirmed_s.set(max(0.0, waited))


async def metrics_endpoint(request: Request) -> Response:
    services: Services = request.app.state.services
    if services.metrics.snapshot_due(SNAPSHOT_S, services.clock.monotonic()):
        await refresh(services)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)


def routes() -> list[BaseRoute]:
    return [Route("/metrics", metrics_endpoint, methods=["GET"])]
