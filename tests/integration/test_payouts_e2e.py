"""Payouts end to end over HTTP: the app with its sandbox network, SQLite and the worker, the
signer talking to the sandbox's Horizon surface over a real socket. Deposits complete by
themselves, withdrawal refunds (partial, then full) too; permanent failures end in `error`
with a sentence and no retry loop; transient ones retry with backoff and succeed."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

from support.payout_fixtures import (
    DIST,
    USDC,
    XLM,
    Env,
    create_accounts,
    create_withdrawal,
    funded_deposit,
    onchain_funds_params,
    running_app,
)


async def assert_one_payment(
    env: Env, account: str, tx_hash: str, amount: str, asset: str
) -> dict[str, object]:
    received = await env.payments_to(account)
    assert len(received) == 1, received
    (payment,) = received
    assert payment["transaction_hash"] == tx_hash
    assert payment["from"] == DIST
    assert Decimal(str(payment["amount"])) == Decimal(amount)
    if asset == XLM:
        assert payment["asset_type"] == "native"
    else:
        code, issuer = asset.split(":")[1:]
        assert (payment["asset_code"], payment["asset_issuer"]) == (code, issuer)
    return payment


async def test_deposit_pays_once_and_completes_by_itself(tmp_path: Path) -> None:
    async with running_app(tmp_path) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key, amount_out="9.5", memo=("4242", "id"))
        answer = await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert answer["status"] == "pending_stellar"

        assert await env.until_status(tx_id, "completed") == "completed"
        tx = await env.tx(tx_id)
        (payout,) = await env.payouts(tx_id)
        assert (payout["state"], payout["attempts"], payout["last_error"]) == ("confirmed", 1, None)
        assert tx["message"] == "Outgoing payment sent"
        assert [s["id"] for s in tx["stellar_transactions"]] == [payout["tx_hash"]]
        payment = await assert_one_payment(env, user.public_key, payout["tx_hash"], "9.5", USDC)
        memo = payment["transaction"]
        assert isinstance(memo, dict) and (memo["memo_type"], memo["memo"]) == ("id", "4242")

        single = await env.client.get(f"/payouts/{payout['id']}")
        assert single.json() == payout and "envelope_xdr" not in payout
        assert (await env.client.get("/payouts/nope")).status_code == 404

        # The same RPC again: refused by the state machine, nothing new is paid.
        again = await env.rpc("do_stellar_payment", {"transaction_id": tx_id})
        assert again["error"]["code"] == -32600
        await env.close_ledger()
        assert len(await env.payments_to(user.public_key)) == 1


async def withdrawal_with_funds(env: Env, user_secret_kp: object) -> str:
    from stellar_sdk import Keypair

    assert isinstance(user_secret_kp, Keypair)
    tx_id: str = (await create_withdrawal(env.client, user_secret_kp.public_key))["id"]
    await env.ok("request_onchain_funds", onchain_funds_params(tx_id))
    paid = await env.pay_distribution(user_secret_kp, "10")
    result = await env.ok(
        "notify_onchain_funds_received",
        {"transaction_id": tx_id, "stellar_transaction_id": paid, "amount_in": {"amount": "10"}},
    )
    assert result["status"] == "pending_anchor"
    return tx_id


async def test_withdrawal_refunds_partial_then_full(tmp_path: Path) -> None:
    async with running_app(tmp_path) as env:
        user = await env.account(trust=(USDC,))
        await funded_user(env, user)  # the user's 10 USDC come from the anchor first
        tx_id = await withdrawal_with_funds(env, user)
        (incoming,) = (await env.tx(tx_id))["stellar_transactions"]

        first = {
            "amount": {"amount": "4", "asset": USDC},
            "amount_fee": {"amount": "0", "asset": USDC},
        }
        answer = await env.ok("do_stellar_refund", {"transaction_id": tx_id, "refund": first})
        assert answer["status"] == "pending_stellar"
        assert await env.until_status(tx_id, "pending_anchor") == "pending_anchor"
        tx = await env.tx(tx_id)
        assert tx["message"] == "Refund sent"
        (p1,) = await env.payouts(tx_id)
        assert (p1["purpose"], p1["state"], p1["amount"]) == ("refund", "confirmed", "4")
        assert [p["id"] for p in tx["refunds"]["payments"]] == [p1["tx_hash"]]
        # the refund's ledger record joins stellar_transactions after the user's payment
        assert [s["id"] for s in tx["stellar_transactions"]] == [incoming["id"], p1["tx_hash"]]
        (refund_payment,) = tx["stellar_transactions"][1]["payments"]
        assert refund_payment["source_account"] == DIST
        assert refund_payment["destination_account"] == user.public_key
        assert Decimal(refund_payment["amount"]["amount"]) == Decimal(4)
        assert tx["transfer_received_at"] == incoming["created_at"]

        rest = {
            "amount": {"amount": "5", "asset": USDC},
            "amount_fee": {"amount": "1", "asset": USDC},
        }
        await env.ok("do_stellar_refund", {"transaction_id": tx_id, "refund": rest})
        assert await env.until_status(tx_id, "refunded") == "refunded"
        tx = await env.tx(tx_id)
        p1, p2 = await env.payouts(tx_id)
        assert (p2["state"], p2["amount"], p2["refund_fee"]) == ("confirmed", "5", "1")
        assert tx["refunds"]["amount_refunded"]["amount"] == "10"
        assert [p["id"] for p in tx["refunds"]["payments"]] == [p1["tx_hash"], p2["tx_hash"]]
        assert [s["id"] for s in tx["stellar_transactions"]] == [
            incoming["id"],
            p1["tx_hash"],
            p2["tx_hash"],
        ]

        refunds = [p for p in await env.payments_to(user.public_key) if p["from"] == DIST][
            1:
        ]  # the first one funded the user
        assert [(p["transaction_hash"], Decimal(p["amount"])) for p in refunds] == [
            (p1["tx_hash"], Decimal(4)),
            (p2["tx_hash"], Decimal(5)),
        ]


async def funded_user(env: Env, user: object) -> object:
    """Give the sandbox user 10 USDC to withdraw, paid by the anchor through a deposit."""
    from stellar_sdk import Keypair

    assert isinstance(user, Keypair)
    tx_id = await funded_deposit(env, user.public_key, amount_out="10")
    await env.ok("do_stellar_payment", {"transaction_id": tx_id})
    assert await env.until_status(tx_id, "completed") == "completed"
    return user


async def test_permanent_failures_end_in_error_without_retry(tmp_path: Path) -> None:
    from stellar_sdk import Keypair

    async with running_app(tmp_path) as env:
        nobody = Keypair.random().public_key  # not on the ledger: XLM can only fail there
        tx_id = await funded_deposit(env, nobody, asset=XLM, amount_out="5")
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert await env.until_status(tx_id, "error") == "error"
        tx = await env.tx(tx_id)
        expected = (
            f"The destination account {nobody} does not exist on the ledger (op_no_destination)"
        )
        assert tx["message"] == expected
        (payout,) = await env.payouts(tx_id)
        assert (payout["state"], payout["attempts"], payout["last_error"]) == (
            "failed",
            1,
            expected,
        )

        rich = await env.account(trust=(USDC,))
        tx2 = await funded_deposit(env, rich.public_key, amount_out="5000000")  # > 1,000,000 held
        await env.ok("do_stellar_payment", {"transaction_id": tx2})
        assert await env.until_status(tx2, "error") == "error"
        message = (await env.tx(tx2))["message"]
        assert message.startswith(f"The distribution account {DIST} has not enough USDC")
        assert message.endswith("(op_underfunded)")
        for _ in range(5):  # no retry loop: nothing more is attempted
            await env.close_ledger()
        assert [p["attempts"] for p in await env.payouts(tx2)] == [1]
        assert await env.payments_to(nobody) == []


async def test_transient_errors_retry_with_backoff_then_succeed(tmp_path: Path) -> None:
    async with running_app(tmp_path) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key)
        await env.fault(kind="fail_next", count=2, status=503, route="POST /transactions")
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert await env.until_status(tx_id, "completed") == "completed"
        (payout,) = await env.payouts(tx_id)
        assert (payout["state"], payout["attempts"]) == ("confirmed", 3)
        await assert_one_payment(env, user.public_key, payout["tx_hash"], "9", USDC)


async def test_channel_accounts_carry_several_payouts_at_once(tmp_path: Path) -> None:
    """Three channel accounts: six deposits are paid three per ledger instead of one, each
    once, all from the distribution account; each envelope's source is a channel."""
    from stellar_sdk import Keypair

    channels = [Keypair.random() for _ in range(3)]
    secrets = ",".join(c.secret for c in channels)
    async with running_app(tmp_path, stellar_channel_secrets=secrets) as env:
        await create_accounts(env.ledger, [c.public_key for c in channels], env.close_ledger)
        users = [await env.account() for _ in range(6)]
        tx_ids = [await funded_deposit(env, u.public_key) for u in users]
        for tx_id in tx_ids:
            await env.ok("do_stellar_payment", {"transaction_id": tx_id})

        async def all_completed() -> bool:
            statuses = [(await env.tx(t))["status"] for t in tx_ids]
            return statuses == ["completed"] * len(tx_ids)

        await env.drive(all_completed, timeout_s=30)
        payouts = [(await env.payouts(t))[0] for t in tx_ids]
        for user, payout in zip(users, payouts, strict=True):
            (payment,) = await env.payments_to(user.public_key)
            assert (payment["from"], payment["transaction_hash"]) == (DIST, payout["tx_hash"])
        lanes = {c.public_key for c in channels}
        envelopes = [
            (await env.ledger.get(f"/horizon/transactions/{p['tx_hash']}")).json() for p in payouts
        ]
        assert {e["source_account"] for e in envelopes} <= lanes
        per_ledger = Counter(p["ledger"] for p in payouts)
        assert max(per_ledger.values()) >= 2, per_ledger  # several in one ledger


async def test_completion_uses_the_submission_answer_without_a_second_ledger_read(
    tmp_path: Path,
) -> None:
    """The step that learns the payout is confirmed (the submission's answer) hands its
    ledger record to the completion: `stellar_transactions` is exactly what reading the
    ledger would give, and the ledger's transaction route is never asked."""
    from anchorpay.adapters.horizon import HorizonLedgerClient

    async with running_app(tmp_path) as env:
        user = await env.account()
        tx_id = await funded_deposit(env, user.public_key, amount_out="9.5")
        await env.ok("do_stellar_payment", {"transaction_id": tx_id})
        assert await env.until_status(tx_id, "completed") == "completed"
        counters = (await env.ledger.get("/stats")).json()["counters"]
        assert "GET /transactions/{hash}" not in counters
        assert "GET /transactions/{hash}/payments" not in counters

        (recorded,) = (await env.tx(tx_id))["stellar_transactions"]
        horizon = HorizonLedgerClient(f"{env.ledger.base_url}horizon")
        try:
            found = (await horizon.get_transaction(recorded["id"])).record
        finally:
            await horizon.aclose()
        (payment,) = found.payments
        assert recorded["payments"] == [
            {
                "id": payment.id,
                "amount": {"amount": payment.amount, "asset": USDC.removeprefix("stellar:")},
                "payment_type": "payment",
                "source_account": DIST,
                "destination_account": user.public_key,
            }
        ]
        assert recorded["envelope"] == found.envelope
        assert recorded["created_at"] == found.created_at.isoformat().replace("+00:00", "Z")
