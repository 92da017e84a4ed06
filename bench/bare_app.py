"""The floor the RPC is measured against: bare Starlette endpoints doing the same durable work
with SQLAlchemy Core on the same engine (so the same SQLite file, pragmas, journal mode,
synchronous and busy timeout as anchorpay's store/db.py), and nothing else: no envelope, no
middleware, no state machine, no event row.

- `POST /change/{id}?status=…`: load the transaction row, UPDATE it with the optimistic
  version check, commit (409 when the version moved).
- `GET /get/{id}`: select the row, answer it as JSON.
- `POST /insert/{id}`: INSERT a payout row (the intent `do_stellar_payment` records), commit.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from anchorpay.store.tables import PayoutRow, TransactionRow

TX = TransactionRow.__table__  # type: ignore[attr-defined]
PAYOUTS = PayoutRow.__table__  # type: ignore[attr-defined]


# Built once (SQLAlchemy compiles each once), as anchorpay's store does: an honest floor.
_GET = select(TX).where(TX.c.id == bindparam("tx_id"))
_CHANGE = (
    TX.update()
    .where(TX.c.id == bindparam("tx_id"), TX.c.version == bindparam("read"))
    .values(status=bindparam("s"), updated_at=bindparam("at"), version=bindparam("v"))
)
_INSERT = PAYOUTS.insert()


def _json(value: Any) -> Response:
    return Response(json.dumps(value, default=str), media_type="application/json")


def bare_app(engine: AsyncEngine) -> Starlette:
    async def change(request: Request) -> Response:
        tx_id = request.path_params["id"]
        async with engine.begin() as conn:
            row = (await conn.execute(_GET, {"tx_id": tx_id})).mappings().one()
            values = {
                "tx_id": tx_id,
                "read": row["version"],
                "s": request.query_params["status"],
                "at": datetime.now(UTC),
                "v": row["version"] + 1,
            }
            written = await conn.execute(_CHANGE, values)
            if written.rowcount != 1:
                return _json({"error": "modified concurrently"})
        return _json({"id": tx_id, "version": row["version"] + 1})

    async def get(request: Request) -> Response:
        async with engine.connect() as conn:
            found = await conn.execute(_GET, {"tx_id": request.path_params["id"]})
            row = found.mappings().one()
        return _json(dict(row))

    async def insert_payout(request: Request) -> Response:
        now = datetime.now(UTC)
        values = {
            "id": request.path_params["id"],
            "transaction_id": request.path_params["id"],
            "purpose": "payment",
            "seq": 1,
            "state": "queued",
            "destination": request.query_params["destination"],
            "asset": request.query_params["asset"],
            "amount": "95",
            "attempts": 0,
            "polls": 0,
            "next_attempt_at": now,
            "adapter": "stellar",
            "created_at": now,
            "updated_at": now,
            "version": 0,
        }
        async with engine.begin() as conn:
            await conn.execute(_INSERT, values)
        return _json({"id": values["id"]})

    return Starlette(
        routes=[
            Route("/change/{id}", change, methods=["POST"]),
            Route("/get/{id}", get, methods=["GET"]),
            Route("/insert/{id}", insert_payout, methods=["POST"]),
        ]
    )
