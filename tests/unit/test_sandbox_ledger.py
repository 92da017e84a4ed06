"""The sandbox ledger as a pure state machine: envelopes are really checked (signatures,
sequence numbers, time bounds, fees, balances, trustlines, operation limit), failures consume
what Stellar consumes, and a hash is never applied twice."""

from __future__ import annotations

from decimal import Decimal

import pytest
from stellar_sdk import Asset, ChangeTrust, CreateAccount, Keypair, Payment, TransactionEnvelope

from anchorpay.sandbox.state import Queued, Rejected, TxRecord
from support.sandbox_fixtures import (
    DIST,
    DIST_KP,
    PASSPHRASE,
    USDC,
    USDC_ISSUER,
    USDC_SDK,
    ManualClock,
    balance,
    envelope,
    make_sandbox,
    payment,
)


def applied(sandbox, xdr: str) -> TxRecord:  # type: ignore[no-untyped-def]
    queued = sandbox.ledger.submit(xdr)
    assert isinstance(queued, Queued), queued
    closed = sandbox.ledger.close()
    outcome = closed.outcomes[queued.hash]
    assert isinstance(outcome, TxRecord), outcome
    return outcome


def test_start_state_funds_distribution_and_creates_issuers() -> None:
    sandbox = make_sandbox()
    assert balance(sandbox, DIST) == Decimal("10000000")
    assert balance(sandbox, DIST, USDC) == Decimal("1000000")
    assert USDC_ISSUER in sandbox.ledger.accounts
    assert sandbox.ledger.latest.sequence == 1
    assert sandbox.ledger.accounts[DIST].sequence == 1 << 32


def test_payment_applies_at_close_and_charges_fee_and_sequence() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account(Decimal(100), (USDC,))
    xdr = payment(sandbox, DIST_KP, user.public_key, "12.5", USDC_SDK, memo_text="hi")
    queued = sandbox.ledger.submit(xdr)
    assert isinstance(queued, Queued)
    assert balance(sandbox, user.public_key, USDC) == 0  # nothing before the ledger closes
    closed = sandbox.ledger.close()
    record = closed.outcomes[queued.hash]
    assert isinstance(record, TxRecord) and record.successful and record.ledger == 2
    assert record.memo_type == "text" and record.memo == "hi"
    assert balance(sandbox, user.public_key, USDC) == Decimal("12.5")
    assert balance(sandbox, DIST, USDC) == Decimal("999987.5")
    assert balance(sandbox, DIST) == Decimal("10000000") - Decimal("0.00001")
    assert sandbox.ledger.accounts[DIST].sequence == (1 << 32) + 1
    (op,) = sandbox.ledger.records(account=user.public_key, payments_only=True)
    assert op.details["amount"] == "12.5000000" and op.details["to"] == user.public_key


def test_signature_by_another_key_is_bad_auth_and_consumes_nothing() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    xdr = payment(sandbox, DIST_KP, user.public_key, "1", signers=[Keypair.random()])
    outcome = sandbox.ledger.submit(xdr)
    assert isinstance(outcome, Rejected) and outcome.transaction_code == "tx_bad_auth"
    assert sandbox.ledger.accounts[DIST].sequence == 1 << 32
    unsigned = payment(sandbox, DIST_KP, user.public_key, "1", signers=[])
    assert sandbox.ledger.submit(unsigned).transaction_code == "tx_bad_auth"  # type: ignore[union-attr]


def test_signature_for_another_network_is_bad_auth() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    from stellar_sdk import Account, Network, TransactionBuilder

    seq = sandbox.ledger.accounts[DIST].sequence
    env = (
        TransactionBuilder(Account(DIST, seq), Network.TESTNET_NETWORK_PASSPHRASE, 100)
        .append_payment_op(user.public_key, Asset.native(), "1")
        .set_timeout(60)
        .build()
    )
    env.sign(DIST_KP)
    outcome = sandbox.ledger.submit(env.to_xdr())
    assert isinstance(outcome, Rejected) and outcome.transaction_code == "tx_bad_auth"


def test_extra_signature_is_bad_auth_extra() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    xdr = payment(sandbox, DIST_KP, user.public_key, "1", signers=[DIST_KP, Keypair.random()])
    assert sandbox.ledger.submit(xdr).transaction_code == "tx_bad_auth_extra"  # type: ignore[union-attr]


def test_sequence_number_must_be_next() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    seq = sandbox.ledger.accounts[DIST].sequence
    for wrong in (seq - 1, seq + 1):
        xdr = payment(sandbox, DIST_KP, user.public_key, "1", sequence=wrong)
        assert sandbox.ledger.submit(xdr).transaction_code == "tx_bad_seq"  # type: ignore[union-attr]
    # Two in a row from one account are accepted: the queue counts.
    first = payment(sandbox, DIST_KP, user.public_key, "1", sequence=seq)
    second = payment(sandbox, DIST_KP, user.public_key, "2", sequence=seq + 1)
    assert isinstance(sandbox.ledger.submit(first), Queued)
    assert isinstance(sandbox.ledger.submit(second), Queued)
    closed = sandbox.ledger.close()
    assert all(isinstance(o, TxRecord) and o.successful for o in closed.outcomes.values())
    assert sandbox.ledger.accounts[DIST].sequence == seq + 2
    assert balance(sandbox, user.public_key) == Decimal("103")


def test_time_bounds_against_the_sandbox_clock() -> None:
    clock = ManualClock()
    sandbox = make_sandbox(clock)
    user = sandbox.create_account()
    now = int(clock().timestamp())
    early = payment(sandbox, DIST_KP, user.public_key, "1", bounds=(now + 10, now + 60))
    assert sandbox.ledger.submit(early).transaction_code == "tx_too_early"  # type: ignore[union-attr]
    late = payment(sandbox, DIST_KP, user.public_key, "1", bounds=(0, now - 1))
    assert sandbox.ledger.submit(late).transaction_code == "tx_too_late"  # type: ignore[union-attr]
    # Valid when submitted, expired by the time its ledger closes: refused, not applied.
    soon = payment(sandbox, DIST_KP, user.public_key, "1", bounds=(0, now + 5))
    queued = sandbox.ledger.submit(soon)
    assert isinstance(queued, Queued)
    clock.advance(30)
    outcome = sandbox.ledger.close().outcomes[queued.hash]
    assert isinstance(outcome, Rejected) and outcome.transaction_code == "tx_too_late"
    assert queued.hash not in sandbox.ledger.transactions
    assert sandbox.ledger.accounts[DIST].sequence == 1 << 32


def test_min_fee_and_operation_limit() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    cheap = payment(sandbox, DIST_KP, user.public_key, "1", fee=99)
    assert sandbox.ledger.submit(cheap).transaction_code == "tx_insufficient_fee"  # type: ignore[union-attr]
    ops = [Payment(user.public_key, Asset.native(), "1") for _ in range(100)]
    hundred = envelope(sandbox, DIST_KP, ops)
    # The SDK refuses to build 101 operations: append one to the XDR by hand. Like Horizon,
    # the sandbox cannot decode it (the XDR type allows 100), so it is malformed.
    raw = TransactionEnvelope.from_xdr(hundred, PASSPHRASE).to_xdr_object()
    raw.v1.tx.operations.append(raw.v1.tx.operations[0])
    outcome = sandbox.ledger.submit(raw.to_xdr())
    assert isinstance(outcome, Rejected) and outcome.transaction_code == "tx_malformed"
    record = applied(sandbox, hundred)
    assert record.successful and record.fee_charged == 100 * 100
    assert balance(sandbox, user.public_key) == Decimal("200")


def test_no_trust_fails_the_transaction_and_consumes_fee_and_sequence() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    record = applied(sandbox, payment(sandbox, DIST_KP, user.public_key, "5", USDC_SDK))
    assert not record.successful
    assert (record.transaction_code, record.operation_codes) == ("tx_failed", ("op_no_trust",))
    assert sandbox.ledger.accounts[DIST].sequence == (1 << 32) + 1
    assert balance(sandbox, DIST) == Decimal("10000000") - Decimal("0.00001")
    assert balance(sandbox, DIST, USDC) == Decimal("1000000")
    # Horizon lists the failed transaction's payment only when asked to.
    assert sandbox.ledger.records(account=user.public_key, payments_only=True) == []
    assert len(sandbox.ledger.records(account=user.public_key, include_failed=True)) == 1


def test_unauthorized_trustline_is_op_not_authorized() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    sandbox.ledger.add_trustline(user.public_key, USDC, authorized=False)
    record = applied(sandbox, payment(sandbox, DIST_KP, user.public_key, "5", USDC_SDK))
    assert record.operation_codes == ("op_not_authorized",)


def test_underfunded_rolls_back_every_operation() -> None:
    sandbox = make_sandbox()
    payer = sandbox.create_account(Decimal(10), (USDC,))
    user = sandbox.create_account(Decimal(10), (USDC,))
    ops = [
        Payment(user.public_key, Asset.native(), "1"),
        Payment(user.public_key, USDC_SDK, "1"),  # payer holds no USDC
        Payment(user.public_key, Asset.native(), "1"),
    ]
    record = applied(sandbox, envelope(sandbox, payer, ops))
    assert record.operation_codes == ("op_success", "op_underfunded", "op_success")
    assert balance(sandbox, user.public_key) == Decimal(10)
    assert balance(sandbox, payer.public_key) == Decimal(10) - Decimal("0.00003")
    # The reserve (1.5 XLM with one trustline) cannot be paid away either.
    spend_all = payment(sandbox, payer, user.public_key, "9")
    assert applied(sandbox, spend_all).operation_codes == ("op_underfunded",)


def test_no_destination_and_create_account() -> None:
    sandbox = make_sandbox()
    new = Keypair.random()
    record = applied(sandbox, payment(sandbox, DIST_KP, new.public_key, "5"))
    assert record.operation_codes == ("op_no_destination",)
    created = applied(sandbox, envelope(sandbox, DIST_KP, [CreateAccount(new.public_key, "20")]))
    assert created.successful and balance(sandbox, new.public_key) == Decimal(20)
    assert sandbox.ledger.accounts[new.public_key].sequence == created.ledger << 32
    # The new account signs a trustline of its own, then receives USDC.
    applied(sandbox, envelope(sandbox, new, [ChangeTrust(USDC_SDK)]))
    assert applied(sandbox, payment(sandbox, DIST_KP, new.public_key, "3", USDC_SDK)).successful
    assert balance(sandbox, new.public_key, USDC) == Decimal(3)
    types = [r.type for r in sandbox.ledger.records(account=new.public_key)]
    assert types == ["create_account", "change_trust", "payment"]


def test_duplicate_submission_is_idempotent_by_hash() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    xdr = payment(sandbox, DIST_KP, user.public_key, "7")
    first = sandbox.ledger.submit(xdr)
    assert sandbox.ledger.submit(xdr) == first  # queued once, joined
    assert len(sandbox.ledger.queue) == 1
    record = sandbox.ledger.close().outcomes[first.hash]  # type: ignore[union-attr]
    assert sandbox.ledger.submit(xdr) is record  # the stored result, not a bad_seq
    sandbox.ledger.close()
    assert balance(sandbox, user.public_key) == Decimal("107")
    assert len(sandbox.ledger.records(account=user.public_key)) == 1


def test_malformed_and_fee_bump_envelopes() -> None:
    sandbox = make_sandbox()
    bad = sandbox.ledger.submit("not an envelope")
    assert isinstance(bad, Rejected) and bad.malformed and bad.hash is None
    with pytest.raises(ValueError):
        sandbox.ledger.create_account("GNOTANACCOUNT", Decimal(1))


def test_paging_tokens_grow_and_cursor_pages() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    for amount in ("1", "2", "3"):
        applied(sandbox, payment(sandbox, DIST_KP, user.public_key, amount))
    records = sandbox.ledger.records(account=user.public_key, limit=2)
    assert [r.details["amount"] for r in records] == ["1.0000000", "2.0000000"]
    assert int(records[0].paging_token) < int(records[1].paging_token)
    rest = sandbox.ledger.records(account=user.public_key, cursor=records[1].paging_token)
    assert [r.details["amount"] for r in rest] == ["3.0000000"]
    desc = sandbox.ledger.records(account=user.public_key, order="desc", limit=1)
    assert desc[0].details["amount"] == "3.0000000"
    assert sandbox.ledger.records(account=user.public_key, cursor="now") == []


def test_held_transaction_waits_and_blocks_later_ones_of_its_source() -> None:
    sandbox = make_sandbox()
    user = sandbox.create_account()
    seq = sandbox.ledger.accounts[DIST].sequence
    first = sandbox.ledger.submit(payment(sandbox, DIST_KP, user.public_key, "1", sequence=seq))
    second = sandbox.ledger.submit(
        payment(sandbox, DIST_KP, user.public_key, "1", sequence=seq + 1)
    )
    sandbox.ledger.hold(first.hash, 2)  # type: ignore[union-attr]
    assert sandbox.ledger.close().outcomes == {}
    assert sandbox.ledger.close().outcomes == {}
    outcomes = sandbox.ledger.close().outcomes
    assert set(outcomes) == {first.hash, second.hash}  # type: ignore[union-attr]
