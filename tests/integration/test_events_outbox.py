"""The outbox on SQLite and PostgreSQL: every committed change of a transaction writes one
event in the same database transaction (a refused or rolled-back change writes none), with
the transaction as get_transaction answers it; the pull feed pages through them once each,
long-polls, and refuses bad queries."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from anchorpay import workflow
from support.app import USDC, AppClient, create_tx

USD = "iso4217:USD"


def call(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}


async def events_of(client: AppClient, tx_id: str, count: int) -> list[dict[str, Any]]:
    """The feed's events of `tx_id` once it serves `count` of them. On PostgreSQL the feed
    waits for every transaction older than the event's to end, on the whole server (shared
    with other tests): hence the wait."""
    async with asyncio.timeout(20):
        while True:
            answer = await client.get("/events", params={"limit": 500})
            assert answer.status_code == 200, answer.text
            events = [e for e in answer.json()["events"] if e["transaction_id"] == tx_id]
            if len(events) >= count:
                return events
            await asyncio.sleep(0.05)


async def test_each_committed_change_writes_one_event(app_client: AppClient) -> None:
    created = await create_tx(app_client)
    tx_id = created["id"]
    (first,) = await events_of(app_client, tx_id, 1)
    assert (first["type"], first["sequence"], first["sep"]) == ("transaction_created", 1, "24")
    assert first["transaction"] == created
    assert first["delivery"] == {"state": "pending", "attempts": 0}

    params = {
        "transaction_id": tx_id,
        "amount_in": {"amount": "100", "asset": USD},
        "amount_out": {"amount": "95", "asset": USDC},
        "fee_details": {"total": "5", "asset": USD},
    }
    answer = (await app_client.rpc(call("request_offchain_funds", params))).json()
    after_request = answer["result"]
    # Refused by the state machine: nothing changed, no event.
    refused = (await app_client.rpc(call("notify_refund_sent", {"transaction_id": tx_id}))).json()
    assert "error" in refused
    answer = (
        await app_client.rpc(
            call("notify_transaction_error", {"transaction_id": tx_id, "message": "stop"})
        )
    ).json()
    after_error = answer["result"]

    events = await events_of(app_client, tx_id, 3)
    assert [(e["type"], e["sequence"]) for e in events] == [
        ("transaction_created", 1),
        ("transaction_status_changed", 2),
        ("transaction_error", 3),
    ]
    assert events[1]["transaction"] == after_request
    assert events[2]["transaction"] == after_error
    assert events[2]["transaction"] == (await app_client.get(f"/transactions/{tx_id}")).json()
    assert len({e["id"] for e in events}) == 3
    single = (await app_client.get(f"/events/{events[2]['id']}")).json()
    assert single == events[2]


async def test_a_rolled_back_change_writes_no_event(app_client: AppClient) -> None:
    services = app_client.services
    tx_id = (await create_tx(app_client))["id"]

    async def fails(session: Any) -> None:
        raise RuntimeError("crash after the write")

    params = {"transaction_id": tx_id, "message": "m"}
    with pytest.raises(RuntimeError):
        await workflow.run_method(
            services, "notify_transaction_error", params, in_same_transaction=fails
        )
    await workflow.run_method(services, "notify_transaction_error", params)
    events = await events_of(app_client, tx_id, 2)
    assert [(e["type"], e["sequence"]) for e in events] == [
        ("transaction_created", 1),
        ("transaction_error", 2),
    ]


async def test_the_feed_pages_every_event_once_in_order(app_client: AppClient) -> None:
    ids = [(await create_tx(app_client))["id"] for _ in range(7)]
    await events_of(app_client, ids[-1], 1)  # every one is served (PostgreSQL: see above)
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["after"] = cursor
        page = (await app_client.get("/events", params=params)).json()
        pages += 1
        if not page["events"]:
            assert page["next"] == cursor
            break
        seen += page["events"]
        cursor = page["next"]
    assert pages == 5  # 2+2+2+1, then the empty page
    assert [e["transaction_id"] for e in seen] == ids
    assert len({e["id"] for e in seen}) == 7


async def test_long_poll_answers_when_an_event_arrives(app_client: AppClient) -> None:
    await events_of(app_client, (await create_tx(app_client))["id"], 1)
    head = (await app_client.get("/events")).json()["next"]
    empty_start = time.monotonic()
    empty = (await app_client.get("/events", params={"after": head, "wait": 0.3})).json()
    assert empty == {"events": [], "next": head}
    assert time.monotonic() - empty_start >= 0.3

    started = time.monotonic()
    waiting = asyncio.create_task(app_client.get("/events", params={"after": head, "wait": 10}))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    created = await create_tx(app_client)
    answer = (await waiting).json()
    assert time.monotonic() - started < 5
    assert [e["transaction_id"] for e in answer["events"]] == [created["id"]]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"after": "nope"}, "after must be a cursor this feed returned, not 'nope'"),
        ({"limit": "0"}, "limit must be a number between 1 and 500"),
        ({"limit": "1.5"}, "limit must be an integer between 1 and 500"),
        ({"wait": "31"}, "wait must be a number between 0 and 30"),
        ({"wait": "nan"}, "wait must be a number between 0 and 30"),
        ({"state": "lost"}, "state must be one of pending, delivered, failed"),
    ],
)
async def test_bad_feed_queries_are_400(
    app_client: AppClient, query: dict[str, str], error: str
) -> None:
    answer = await app_client.get("/events", params=query)
    assert (answer.status_code, answer.json()) == (400, {"error": error})


async def test_unknown_event_is_404(app_client: AppClient) -> None:
    answer = await app_client.get("/events/nope")
    assert (answer.status_code, answer.json()) == (404, {"error": "event nope not found"})


async def test_the_event_routes_take_the_api_auth(
    client_factory: Any, settings_factory: Any
) -> None:
    key = "my-api-key-for-the-business-server"
    settings = settings_factory(
        platform_server_auth_type="api_key", secret_platform_api_auth_secret=key
    )
    async with client_factory(settings) as client:
        for response in (
            await client.get("/events"),
            await client.get("/events/x"),
            await client.post("/events/x/redeliver"),
        ):
            assert (response.status_code, response.text) == (403, '{\n  "error": "forbidden"\n}')
        allowed = await client.get("/events", headers={"X-Api-Key": key})
        assert (allowed.status_code, allowed.json()) == (200, {"events": [], "next": "0-0"})
