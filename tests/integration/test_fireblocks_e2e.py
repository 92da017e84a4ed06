"""CUSTODY_TYPE=fireblocks end to end, over real HTTP: the app and its worker, the sandbox
Fireblocks (signed requests, statuses, real payments on the sandbox ledger, signed
webhooks back to the app). Each test asserts what the ledger shows: one payment per payout."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from stellar_sdk import Keypair

from support.fireblocks_flow import (
    VAULT,
    fb_fault,
    fb_transactions,
    fireblocks_app,
    give_usdc,
    vault_payments_to,
    webhooks,
)
from support.payout_fixtures import (
    USDC,
    Env,
    create_withdrawal,
    funded_deposit,
    onchain_funds_params,
)


async def pay_deposit(env: Env, **fault: Any) -> tuple[Keypair, str]:
    """A new user's funded deposit, with a sandbox Fireblocks fault injected first when
    given, and `do_stellar_payment` applied. Returns the user and the transaction id."""
    user = await env.account()
    tx_id = await funded_deposit(env, user.public_key)
    if fault:
        await fb_fault(env, **fault)
    await env.ok("do_stellar_payment", {"transaction_id": tx_id})
    return user, tx_id


async def completed_once(env: Env, tx_id: str, account: str) -> dict[str, object]:
    tx = await env.tx(tx_id)
    assert tx["status"] == "completed", tx
    (payout,) = await env.payouts(tx_id)
    assert (payout["state"], payout["adapter"]) == ("confirmed", "fireblocks")
    assert await vault_payments_to(env, account) == [(payout["tx_hash"], Decimal(9))]
    assert [s["id"] for s in tx["stellar_transactions"]] == [payout["tx_hash"]]
    (fb,) = await fb_transactions(env, payout["id"])  # one transfer per payout at Fireblocks
    assert (fb["status"], fb["txHash"]) == ("COMPLETED", payout["tx_hash"])
    return payout


async def test_deposit_pays_through_fireblocks_once_and_completes(
    tmp_path: Path, db_url: str
) -> None:
    async with fireblocks_app(tmp_path, database_url=db_url) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key, memo=("42", "id"))
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert await env.until_status(tx_id, "completed") == "completed"
        await completed_once(env, tx_id, user.public_key)
        (payment,) = [p for p in await env.payments_to(user.public_key) if p["from"] == VAULT]
        assert payment["transaction"]["memo"] == "42"
        tx = await env.tx(tx_id)
        assert tx["message"] == "Outgoing payment sent"


async def test_hash_memo_is_refused_at_do_stellar_payment(tmp_path: Path) -> None:
    async with fireblocks_app(tmp_path) as env:
        user = await env.account()
        memo = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
        tx_id = await funded_deposit(env, user.public_key, memo=(memo, "hash"))
        answer = await env.rpc("do_stellar_payment", {"transaction_id": tx_id})
        assert answer["error"] == {
            "id": tx_id,
            "code": -32602,
            "message": "Memo type[hash] is not supported for custody type[fireblocks]",
        }
        assert (await env.tx(tx_id))["status"] == "pending_anchor"
        assert await env.payouts(tx_id) == []


async def test_custody_withdrawal_is_credited_then_refunded_partly_and_fully(
    tmp_path: Path, db_url: str
) -> None:
    """On SQLite and PostgreSQL: the deposit address, the incoming transfer, two refunds."""
    async with fireblocks_app(
        tmp_path, deposit_info_generator="custody", database_url=db_url
    ) as env:
        user = await env.account()
        await give_usdc(env, user, "10")
        tx_id = (await create_withdrawal(env.client, user.public_key))["id"]
        asked = await env.ok("request_onchain_funds", onchain_funds_params(tx_id))
        assert asked["status"] == "pending_user_transfer_start"
        assert asked["destination_account"] == VAULT
        assert asked["memo_type"] == "id" and asked["memo"].isdigit()

        paid = await env.pay(user, VAULT, "10", memo_id=int(asked["memo"]))
        assert await env.until_status(tx_id, "pending_anchor") == "pending_anchor"
        tx = await env.tx(tx_id)
        assert tx["message"] == "Received an incoming payment"
        assert [s["id"] for s in tx["stellar_transactions"]] == [paid]
        # Horizon's notation, as the local observer records it (README, "Amounts")
        assert tx["amount_in"]["amount"] == "10.0000000"
        assert tx["transfer_received_at"] == tx["stellar_transactions"][0]["created_at"]

        first = {
            "amount": {"amount": "4", "asset": USDC},
            "amount_fee": {"amount": "0", "asset": USDC},
        }
        await env.ok("do_stellar_refund", {"transaction_id": tx_id, "refund": first})
        assert await env.until_status(tx_id, "pending_anchor") == "pending_anchor"
        (p1,) = await env.payouts(tx_id)
        assert (p1["state"], p1["amount"]) == ("confirmed", "4")

        rest = {
            "amount": {"amount": "5", "asset": USDC},
            "amount_fee": {"amount": "1", "asset": USDC},
        }
        await env.ok("do_stellar_refund", {"transaction_id": tx_id, "refund": rest})
        assert await env.until_status(tx_id, "refunded") == "refunded"
        p1, p2 = await env.payouts(tx_id)
        assert await vault_payments_to(env, user.public_key) == [
            (p1["tx_hash"], Decimal(4)),
            (p2["tx_hash"], Decimal(5)),
        ]
        tx = await env.tx(tx_id)
        assert [p["id"] for p in tx["refunds"]["payments"]] == [p1["tx_hash"], p2["tx_hash"]]
        # the refunds' ledger records follow the user's payment in stellar_transactions
        assert [s["id"] for s in tx["stellar_transactions"]] == [
            paid,
            p1["tx_hash"],
            p2["tx_hash"],
        ]
        assert [s["payments"][0]["source_account"] for s in tx["stellar_transactions"]] == [
            user.public_key,
            VAULT,
            VAULT,
        ]


@pytest.mark.parametrize(
    ("settings", "fault", "attempts"),
    [
        ({}, {"kind": "unavailable_after_create"}, 2),  # the create, then its lost answer
        ({"fireblocks_timeout_s": 0.3}, {"kind": "slow_answer", "delay_s": 1.5}, 2),
        ({}, {"kind": "rate_limited", "count": 2}, 3),  # two refused creates, then one
    ],
    ids=["503-after-create", "timeout", "429-twice"],
)
async def test_an_unknown_create_outcome_is_adopted_not_paid_again(
    tmp_path: Path, settings: dict[str, Any], fault: dict[str, Any], attempts: int
) -> None:
    async with fireblocks_app(tmp_path, **settings) as env:
        user, tx_id = await pay_deposit(env, **fault)
        assert await env.until_status(tx_id, "completed") == "completed"
        payout = await completed_once(env, tx_id, user.public_key)
        assert payout["attempts"] == attempts


async def test_lost_webhooks_are_made_up_for_by_polling(tmp_path: Path) -> None:
    async with fireblocks_app(tmp_path) as env:
        user, tx_id = await pay_deposit(env, kind="drop_webhooks", count=100)
        assert await env.until_status(tx_id, "completed") == "completed"
        await completed_once(env, tx_id, user.public_key)
        assert {e["delivery"] for e in await webhooks(env)} == {"dropped"}


async def test_rejected_and_failed_end_in_error_with_their_sub_status(tmp_path: Path) -> None:
    async with fireblocks_app(tmp_path) as env:
        user = await env.account()
        rejected = await funded_deposit(env, user.public_key)
        failed = await funded_deposit(env, user.public_key)
        await fb_fault(env, kind="reject_by_policy", count=1)
        await env.ok("do_stellar_payment", {"transaction_id": rejected})
        assert await env.until_status(rejected, "error") == "error"
        await fb_fault(env, kind="fail_on_chain", count=1)
        await env.ok("do_stellar_payment", {"transaction_id": failed})
        assert await env.until_status(failed, "error") == "error"
        for tx_id, status, sub in (
            (rejected, "REJECTED", "BLOCKED_BY_POLICY"),
            (failed, "FAILED", "REJECTED_BY_BLOCKCHAIN"),
        ):
            (payout,) = await env.payouts(tx_id)
            (fb,) = await fb_transactions(env, payout["id"])
            expected = f"Fireblocks transaction {fb['id']} ended {status} ({sub}); nothing was paid"
            assert (await env.tx(tx_id))["message"] == expected
            assert (payout["state"], payout["last_error"]) == ("failed", expected)
        assert await vault_payments_to(env, user.public_key) == []


async def replay(env: Env, events: list[dict[str, object]]) -> list[int]:
    codes = []
    for event in events:
        headers = {str(k): str(v) for k, v in dict(event["headers"]).items()}  # type: ignore[call-overload]
        body = str(event["body"]).encode()
        answer = await env.client.post("/webhooks/fireblocks", content=body, headers=headers)
        codes.append(answer.status_code)
    return codes


async def test_webhooks_replayed_and_out_of_order_change_nothing(
    tmp_path: Path, db_url: str
) -> None:
    async with fireblocks_app(tmp_path, database_url=db_url) as env:
        user, tx_id = await pay_deposit(env)
        assert await env.until_status(tx_id, "completed") == "completed"
        before = await completed_once(env, tx_id, user.public_key)
        events = [e for e in await webhooks(env) if e["delivery"] == "delivered"]
        statuses = [e["status"] for e in events]
        assert statuses[0] == "SUBMITTED" and statuses[-1] == "COMPLETED"

        completed = events[-1]
        assert await replay(env, [completed] * 3) == [200, 200, 200]
        assert await replay(env, list(reversed(events))) == [200] * len(events)
        answer = await env.client.post(
            "/webhooks/fireblocks",
            content=str(completed["body"]).encode(),
            headers=dict(completed["headers"]),  # type: ignore[call-overload]
        )
        assert answer.json() == {"status": "duplicate"}
        await completed_once(env, tx_id, user.public_key)
        after = (await env.payouts(tx_id))[0]
        assert (after["state"], after["tx_hash"], after["updated_at"]) == (
            "confirmed",
            before["tx_hash"],
            before["updated_at"],
        )


async def test_completed_before_submitted_completes_once(tmp_path: Path) -> None:
    """Webhooks lost, then delivered newest first. The worker's next poll is half a minute
    away, so it is the first replayed event (COMPLETED) that makes it look, and each event
    only nudges: the payout follows Fireblocks' state and completes once."""
    slow_polls = {"payout_retry_base_s": 30.0, "payout_poll_max_s": 60.0}
    async with fireblocks_app(tmp_path, **slow_polls) as env:
        user, tx_id = await pay_deposit(env, kind="drop_webhooks", count=100)

        async def accepted() -> bool:
            return [p["state"] for p in await env.payouts(tx_id)] == ["submitted"]

        await env.drive(accepted)
        (payout,) = await env.payouts(tx_id)
        (transfer,) = await fb_transactions(env, payout["id"])

        async def fb_completed() -> bool:
            return (await fb_transactions(env, payout["id"]))[0]["status"] == "COMPLETED"

        await env.drive(fb_completed)
        assert (await env.payouts(tx_id))[0]["state"] == "submitted"  # no poll came yet
        events = [e for e in await webhooks(env) if e["resourceId"] == transfer["id"]]
        assert [e["status"] for e in events][-1] == "COMPLETED"
        assert await replay(env, list(reversed(events))) == [200] * len(events)
        assert await env.until_status(tx_id, "completed", timeout_s=10) == "completed"
        await completed_once(env, tx_id, user.public_key)


async def test_a_forged_webhook_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async with fireblocks_app(tmp_path) as env:
        user, tx_id = await pay_deposit(env, kind="drop_webhooks", count=100)
        assert await env.until_status(tx_id, "completed") == "completed"
        event = (await webhooks(env))[-1]
        body = json.loads(str(event["body"]))
        body["id"] = "forged-event"
        body["data"]["status"] = "FAILED"
        forged = json.dumps(body).encode()
        headers = dict(event["headers"])  # type: ignore[call-overload]
        for sent_headers in (headers, {}, {"Fireblocks-Signature": "bm90IGEgc2lnbmF0dXJl"}):
            answer = await env.client.post(
                "/webhooks/fireblocks", content=forged, headers=sent_headers
            )
            assert answer.status_code == 401
            assert answer.json() == {"error": "Invalid or missing Fireblocks signature"}
        await completed_once(env, tx_id, user.public_key)


async def test_webhook_needs_no_platform_auth_but_a_signature(tmp_path: Path) -> None:
    async with fireblocks_app(
        tmp_path,
        platform_server_auth_type="api_key",
        secret_platform_api_auth_secret="webhook-test-api-key-0123456789abcdef",
    ) as env:
        answer = await env.client.post("/webhooks/fireblocks", content=b"{}")
        assert answer.status_code == 401
        assert answer.json() == {"error": "Invalid or missing Fireblocks signature"}
        assert (await env.client.post("/", json={})).status_code == 403
        async with httpx.AsyncClient(base_url=str(env.client.base_url)) as plain:
            assert (await plain.get("/health")).status_code == 200


async def test_incoming_transfer_without_webhooks_is_found_by_the_poll(tmp_path: Path) -> None:
    async with fireblocks_app(
        tmp_path, deposit_info_generator="custody", observer_interval_s=0.1
    ) as env:
        await fb_fault(env, kind="drop_webhooks", count=1000)
        user = await env.account()
        await give_usdc(env, user, "10")
        tx_id = (await create_withdrawal(env.client))["id"]
        asked = await env.ok("request_onchain_funds", onchain_funds_params(tx_id))
        paid = await env.pay(user, VAULT, "9.5", memo_id=int(asked["memo"]))
        assert await env.until_status(tx_id, "pending_anchor") == "pending_anchor"
        tx = await env.tx(tx_id)
        assert tx["message"] == (
            "Received an incoming payment. Amount mismatch: received 9.5 but 10 was expected"
        )
        assert [s["id"] for s in tx["stellar_transactions"]] == [paid]
        assert {e["delivery"] for e in await webhooks(env)} == {"dropped"}
