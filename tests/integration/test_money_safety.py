"""Money safety across business calls (issue 13), end to end on SQLite and PostgreSQL: the
app, its worker and the sandbox ledger over real HTTP. Every test counts the payments the
ledger holds, not only statuses.

The business may move a transaction while its payout is in flight; whatever it does, what the
ledger paid is what was owed, and every payment on the ledger is recorded on its transaction.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from stellar_sdk import Keypair

from support.payout_fixtures import (
    DIST,
    USDC,
    Env,
    create_withdrawal,
    funded_deposit,
    onchain_funds_params,
    running_app,
)

FULL = {"amount": {"amount": "9", "asset": USDC}, "amount_fee": {"amount": "1", "asset": USDC}}
ERROR = {"message": "compliance hold"}


async def payout_in(env: Env, tx_id: str, *states: str, timeout_s: float = 15) -> dict[str, Any]:
    """The transaction's newest payout once it is in one of `states` (no ledger is closed
    meanwhile: a submission waits for the next close)."""
    async with asyncio.timeout(timeout_s):
        while True:
            payouts = await env.payouts(tx_id)
            if payouts and payouts[-1]["state"] in states:
                return payouts[-1]
            await asyncio.sleep(0.02)


async def payout_final(env: Env, tx_id: str) -> dict[str, Any]:
    """Close ledgers until the newest payout of the transaction is final."""

    async def done() -> bool:
        payouts = await env.payouts(tx_id)
        return payouts[-1]["state"] in ("confirmed", "failed", "cancelled")

    await env.drive(done)
    return (await env.payouts(tx_id))[-1]


async def paid_by_anchor(env: Env, account: str, skip: set[str]) -> list[tuple[str, Decimal]]:
    """(hash, amount) of every ledger payment from the distribution account to `account`,
    except the hashes in `skip` (how the test funded the user)."""
    return [
        (p["transaction_hash"], Decimal(p["amount"]))
        for p in await env.payments_to(account)
        if p["from"] == DIST and p["transaction_hash"] not in skip
    ]


async def funded_withdrawal(env: Env) -> tuple[str, Keypair, str, str]:
    """A withdrawal whose user paid 10 USDC on the ledger (the anchor first paid the user 10
    through a deposit). Returns (transaction id, user, funding hash, incoming hash)."""
    user = await env.account(trust=(USDC,))
    deposit = await funded_deposit(env, user.public_key, amount_out="10")
    await env.ok("do_stellar_payment", {"transaction_id": deposit})
    assert await env.until_status(deposit, "completed") == "completed"
    funding = (await env.tx(deposit))["stellar_transactions"][0]["id"]
    tx_id: str = (await create_withdrawal(env.client, user.public_key))["id"]
    await env.ok("request_onchain_funds", onchain_funds_params(tx_id))
    incoming = await env.pay_distribution(user, "10")
    received = await env.ok(
        "notify_onchain_funds_received",
        {
            "transaction_id": tx_id,
            "stellar_transaction_id": incoming,
            "amount_in": {"amount": "10"},
        },
    )
    assert received["status"] == "pending_anchor"
    return tx_id, user, funding, incoming


async def refused(env: Env, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Call `method`, expect a JSON-RPC error, and check that nothing changed."""
    tx_id = params["transaction_id"]
    before = (await env.tx(tx_id), await env.payouts(tx_id))
    answer = await env.rpc(method, params)
    assert "error" in answer, answer
    assert (await env.tx(tx_id), await env.payouts(tx_id)) == before
    error: dict[str, Any] = answer["error"]
    return error


async def test_refund_confirmed_in_error_counts_and_cannot_be_paid_again(
    tmp_path: Path, db_url: str
) -> None:
    """The issue's scenario: the refund payout confirms while the business has the
    transaction in `error`; it is recorded all the same, so after recovery a second full
    refund is refused. The ledger holds exactly one refund."""
    async with running_app(tmp_path, database_url=db_url) as env:
        tx_id, user, funding, _ = await funded_withdrawal(env)
        await env.ok("do_stellar_refund", {"transaction_id": tx_id, "refund": FULL})
        await payout_in(env, tx_id, "submitting")  # on its way: waiting for the next ledger
        moved = await env.ok("notify_transaction_error", {"transaction_id": tx_id, **ERROR})
        assert moved["status"] == "error"

        payout = await payout_final(env, tx_id)
        assert payout["state"] == "confirmed"
        assert payout["last_error"] == (
            "transaction was in status error; recorded on it, status not changed"
        )
        tx = await env.tx(tx_id)
        assert tx["status"] == "error"
        assert tx["refunds"]["payments"] == [
            {
                "id": payout["tx_hash"],
                "id_type": "stellar",
                "amount": {"amount": "9", "asset": USDC},
                "fee": {"amount": "1", "asset": USDC},
            }
        ]
        assert tx["refunds"]["amount_refunded"]["amount"] == "10"

        recovered = await env.ok("notify_transaction_recovery", {"transaction_id": tx_id})
        assert recovered["status"] == "pending_anchor"
        error = await refused(env, "do_stellar_refund", {"transaction_id": tx_id, "refund": FULL})
        assert error == {"id": tx_id, "code": -32602, "message": "Refund amount exceeds amount_in"}
        # The business confirms the refund it now sees recorded (same id: it is updated).
        same = {"id": payout["tx_hash"], **FULL}
        done = await env.ok("notify_refund_sent", {"transaction_id": tx_id, "refund": same})
        assert [p["id"] for p in done["refunds"]["payments"]] == [payout["tx_hash"]]
        assert done["status"] == "refunded"

        await env.close_ledger()
        assert await paid_by_anchor(env, user.public_key, {funding}) == [
            (payout["tx_hash"], Decimal(9))
        ]


async def test_offchain_refund_cannot_cover_a_refund_in_flight(tmp_path: Path, db_url: str) -> None:
    """The rule: a refund the business records (notify_refund_sent / notify_refund_pending)
    is refused when, with the refund payouts still in flight, it would refund more than
    amount_in; the refusal names the payout. Once the payout confirms, it is recorded."""
    async with running_app(tmp_path, database_url=db_url) as env:
        tx_id, user, funding, _ = await funded_withdrawal(env)
        half = {
            "amount": {"amount": "5", "asset": USDC},
            "amount_fee": {"amount": "0", "asset": USDC},
        }
        await env.ok("do_stellar_refund", {"transaction_id": tx_id, "refund": half})
        payout = await payout_in(env, tx_id, "submitting")
        offchain = {"id": "bank-77", **FULL}
        error = await refused(
            env, "notify_refund_sent", {"transaction_id": tx_id, "refund": offchain}
        )
        assert error["code"] == -32602
        assert error["message"] == (
            f"Refund amount exceeds amount_in: refund payout {payout['id']} of 5 (submitting) "
            "already counts against it (recorded 10, in flight 5, amount_in 10)"
        )
        # What fits beside the payout is accepted: 5 in flight + 4 + fee 1 = 10.
        fits = {
            "id": "bank-78",
            "amount": {"amount": "4", "asset": USDC},
            "amount_fee": {"amount": "1", "asset": USDC},
        }
        partial = await env.ok("notify_refund_sent", {"transaction_id": tx_id, "refund": fits})
        assert partial["status"] == "pending_anchor"

        payout = await payout_final(env, tx_id)
        assert payout["state"] == "confirmed"
        tx = await env.tx(tx_id)
        assert [p["id"] for p in tx["refunds"]["payments"]] == ["bank-78", payout["tx_hash"]]
        assert tx["refunds"]["amount_refunded"]["amount"] == "10"
        assert tx["status"] == "refunded"
        assert await paid_by_anchor(env, user.public_key, {funding}) == [
            (payout["tx_hash"], Decimal(5))
        ]


async def test_deposit_paid_while_in_error_is_recorded_and_never_paid_twice(
    tmp_path: Path, db_url: str
) -> None:
    async with running_app(tmp_path, database_url=db_url) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key)
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        payout = await payout_in(env, tx_id, "submitting")
        await env.ok("notify_transaction_error", {"transaction_id": tx_id, **ERROR})
        await env.ok("notify_transaction_recovery", {"transaction_id": tx_id})
        # Recovered while the payment is still in flight: a second one is refused.
        error = await refused(env, "do_stellar_payment", {"transaction_id": tx_id})
        assert error == {
            "id": tx_id,
            "code": -32602,
            "message": f"Transaction[{tx_id}] already has a payment payout in flight: "
            f"payout {payout['id']} is submitting",
        }
        await env.ok("notify_transaction_error", {"transaction_id": tx_id, **ERROR})

        payout = await payout_final(env, tx_id)
        tx = await env.tx(tx_id)
        assert (tx["status"], payout["state"]) == ("error", "confirmed")
        assert [s["id"] for s in tx["stellar_transactions"]] == [payout["tx_hash"]]

        await env.ok("notify_transaction_recovery", {"transaction_id": tx_id})
        error = await refused(env, "do_stellar_payment", {"transaction_id": tx_id})
        assert error["message"] == (
            f"Transaction[{tx_id}] was already paid on-chain by payout {payout['id']} "
            f"(hash {payout['tx_hash']})"
        )
        refund = {
            "id": "bank-1",
            "amount": {"amount": "9", "asset": "iso4217:USD"},
            "amount_fee": {"amount": "1", "asset": "iso4217:USD"},
        }
        error = await refused(
            env, "notify_refund_pending", {"transaction_id": tx_id, "refund": refund}
        )
        assert error["message"] == (
            f"Transaction[{tx_id}] is paid on-chain by payout {payout['id']} (confirmed); "
            "a refund would pay the user twice"
        )
        # The business confirms the payment it now sees recorded: the deposit completes.
        done = await env.ok(
            "notify_onchain_funds_sent",
            {"transaction_id": tx_id, "stellar_transaction_id": payout["tx_hash"]},
        )
        assert done["status"] == "completed"
        await env.close_ledger()
        assert await paid_by_anchor(env, user.public_key, set()) == [
            (payout["tx_hash"], Decimal(9))
        ]


async def test_error_cancels_a_payout_nothing_was_sent_for(tmp_path: Path, db_url: str) -> None:
    """A payout still queued when the business puts the transaction in error is cancelled in
    the same database transaction: after recovery the deposit can be paid, once."""
    async with running_app(tmp_path, database_url=db_url, run_worker=False) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key)
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        await env.ok("notify_transaction_error", {"transaction_id": tx_id, **ERROR})
        (payout,) = await env.payouts(tx_id)
        assert (payout["state"], payout["last_error"]) == ("cancelled", "compliance hold")
        await env.ok("notify_transaction_recovery", {"transaction_id": tx_id})
        again = await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert again["status"] == "pending_stellar"
        first, second = await env.payouts(tx_id)
        assert (first["state"], second["state"], second["seq"]) == ("cancelled", "queued", 2)


async def test_a_hash_has_one_purpose(tmp_path: Path, db_url: str) -> None:
    async with running_app(tmp_path, database_url=db_url) as env:
        tx_id, user, funding, incoming = await funded_withdrawal(env)
        # The user's incoming payment given as a refund of the same transaction.
        as_refund = {"id": incoming, **FULL}
        error = await refused(
            env, "notify_refund_sent", {"transaction_id": tx_id, "refund": as_refund}
        )
        assert error == {
            "id": tx_id,
            "code": -32602,
            "message": f"Stellar transaction[{incoming}] is already recorded on this "
            "transaction as an incoming payment; one on-chain transaction has one purpose",
        }
        # The same payment credited to another withdrawal.
        other: str = (await create_withdrawal(env.client, user.public_key))["id"]
        await env.ok("request_onchain_funds", onchain_funds_params(other))
        params = {"transaction_id": other, "stellar_transaction_id": incoming}
        error = await refused(env, "notify_onchain_funds_received", params)
        assert error["message"] == (
            f"Stellar transaction[{incoming}] is already recorded on transaction[{tx_id}] "
            "as an incoming payment; one on-chain transaction has one purpose"
        )
        # A deposit's payment claimed as another deposit's payment.
        deposit = await funded_deposit(env, user.public_key)
        params = {"transaction_id": deposit, "stellar_transaction_id": funding}
        error = await refused(env, "notify_onchain_funds_sent", params)
        assert error["message"].startswith(
            f"Stellar transaction[{funding}] is already recorded on transaction["
        )
        assert error["message"].endswith(" as a payment; one on-chain transaction has one purpose")


async def test_a_payout_the_worker_gives_up_on_fails_and_errors_its_transaction(
    tmp_path: Path, db_url: str
) -> None:
    """The worker failing a queued payout puts its transaction in error, which cancels the
    payouts nothing was sent for: not the one being failed, in the same database transaction
    (else that write finds its version moved, rolls back, and the payout is stuck)."""
    async with running_app(
        tmp_path, database_url=db_url, payout_max_attempts=1, payout_retry_base_s=0.05
    ) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key)
        # The distribution account cannot be read: preparing the envelope fails (transient),
        # and with one attempt allowed the worker gives up before anything is sent.
        await env.fault(kind="account_error", account=DIST, status=500)
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        payout = await payout_final(env, tx_id)
        assert payout["state"] == "failed"
        assert payout["last_error"].startswith("Gave up after 1 attempts; last error: ")
        tx = await env.tx(tx_id)
        assert (tx["status"], tx["message"]) == ("error", payout["last_error"])
        await env.close_ledger()
        assert await paid_by_anchor(env, user.public_key, set()) == []


async def test_a_deposit_refunded_off_chain_is_not_paid_on_chain(
    tmp_path: Path, db_url: str
) -> None:
    async with running_app(tmp_path, database_url=db_url) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key)
        refund = {
            "id": "bank-1",
            "amount": {"amount": "2", "asset": "iso4217:USD"},
            "amount_fee": {"amount": "0", "asset": "iso4217:USD"},
        }
        partial = await env.ok("notify_refund_sent", {"transaction_id": tx_id, "refund": refund})
        assert partial["status"] == "pending_anchor"
        error = await refused(env, "do_stellar_payment", {"transaction_id": tx_id})
        assert error == {
            "id": tx_id,
            "code": -32602,
            "message": f"Transaction[{tx_id}] was refunded 2: an on-chain payment of "
            "amount_out would pay the user twice",
        }
        assert await env.payouts(tx_id) == []
        assert (await env.tx(tx_id))["status"] == "pending_anchor"
        await env.close_ledger()
        assert await paid_by_anchor(env, user.public_key, set()) == []
