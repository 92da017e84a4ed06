"""`GET /metrics` after a payout, over HTTP against a started server: the exact series that
must have moved, the database gauges, and the auth it sits behind."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support.payout_fixtures import funded_deposit, running_app

SECRET = "metrics-scrape-" + "k3y" * 10  # strong: long, not one repeated character


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


async def test_a_completed_payout_moves_exactly_its_series(tmp_path: Path, db_url: str) -> None:
    async with running_app(tmp_path, database_url=db_url) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key)
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert await env.until_status(tx_id, "completed") == "completed"
        refused = await env.rpc("do_stellar_payment", {"transaction_id": tx_id})
        assert refused["error"]["code"] == -32600
        await env.rpc("no_such_method", {})
        seen = await scrape(env.client)

        rpc = "anchorpay_rpc_requests_total"
        assert seen[key(rpc, method="request_offchain_funds", code="0")] == 1
        assert seen[key(rpc, method="notify_offchain_funds_received", code="0")] == 1
        assert seen[key(rpc, method="do_stellar_payment", code="0")] == 1
        assert seen[key(rpc, method="do_stellar_payment", code="-32600")] == 1
        assert seen[key(rpc, method="unknown", code="-32601")] == 1
        timed = key("anchorpay_rpc_request_seconds_count", method="do_stellar_payment")
        assert seen[timed] == 2

        changes = "anchorpay_payout_state_changes_total"
        assert seen[key(changes, purpose="payment", state="confirmed")] == 1
        assert seen[key(changes, purpose="payment", state="submitting")] == 1
        assert seen[key("anchorpay_payout_submit_to_confirm_seconds_count")] == 1
        assert seen[key("anchorpay_transactions", status="completed")] == 1
        assert seen[key("anchorpay_transactions", status="pending_stellar")] == 0
        assert seen[key("anchorpay_payouts", state="confirmed")] == 1
        assert seen[key("anchorpay_payouts", state="queued")] == 0
        assert seen[key("anchorpay_payout_oldest_in_flight_seconds")] == 0
        assert not any(name == "anchorpay_payout_retries_total" for name, _ in seen)

        # The ledger agrees: one payment of amount_out.
        paid = await env.payments_to(user.public_key)
        assert [Decimal(p["amount"]) for p in paid] == [Decimal(9)]


async def test_metrics_sit_behind_the_api_auth(tmp_path: Path) -> None:
    async with running_app(
        tmp_path,
        run_worker=False,
        platform_server_auth_type="api_key",
        secret_platform_api_auth_secret=SECRET,
    ) as env:
        assert (await env.client.get("/metrics")).status_code == 403
        answer = await env.client.get("/metrics", headers={"X-Api-Key": SECRET})
        assert answer.status_code == 200
        assert "anchorpay_rpc_requests_total" in answer.text
        assert SECRET not in answer.text
