"""The local Stellar signer: envelopes, memos, result codes, and the "proven dead" rule, over a
scripted ledger client, then against the sandbox network over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from stellar_sdk import Keypair, TransactionEnvelope

from anchorpay.adapters.custody import (
    Confirmed,
    Failed,
    NotFound,
    PayoutOrder,
    PermanentCustodyError,
    TransientCustodyError,
)
from anchorpay.adapters.horizon import HorizonLedgerClient
from anchorpay.adapters.ledger import (
    Account,
    Balance,
    LatestLedger,
    LedgerNotFound,
    LedgerTransaction,
    LedgerUnavailable,
    PaymentsPage,
    SubmitResult,
)
from anchorpay.adapters.stellar_signer import StellarSigner, stellar_amount, stellar_memo
from anchorpay.domain.transaction import StellarPayment, StellarTransaction
from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET, SANDBOX_NETWORK_PASSPHRASE
from anchorpay.sandbox.app import Sandbox
from anchorpay.settings import ConfigError
from support.sandbox_fixtures import USDC as SANDBOX_USDC
from support.sandbox_fixtures import ManualClock, make_sandbox, served_sandbox

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = Keypair.random()
DEST = Keypair.random().public_key
ISSUER = Keypair.random().public_key
USDC = f"stellar:USDC:{ISSUER}"
PASSPHRASE = "anchorpay sandbox ; 2026"


@dataclass
class ScriptedLedger:
    sequence: int = 100
    submits: list[SubmitResult | Exception] = field(default_factory=list)
    on_ledger: dict[str, bool] = field(default_factory=dict)  # hash -> successful
    closed_at: datetime = T0
    accounts: dict[str, Account] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)

    async def get_account(self, account_id: str) -> Account:
        if account_id == SOURCE.public_key:
            return Account(account_id, self.sequence, ())
        if account_id in self.accounts:
            return self.accounts[account_id]
        raise LedgerNotFound(account_id)

    async def get_transaction(self, tx_hash: str) -> LedgerTransaction:
        if tx_hash not in self.on_ledger:
            raise LedgerNotFound(tx_hash)
        record = StellarTransaction(id=tx_hash, created_at=T0, envelope=None)
        return LedgerTransaction(
            tx_hash, 9, self.on_ledger[tx_hash], T0, "", None, "none", SOURCE.public_key, record
        )

    async def submit(self, envelope_xdr: str) -> SubmitResult:
        self.sent.append(envelope_xdr)
        step = self.submits.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    async def payments(self, account_id: str, cursor: str | None, limit: int = 200) -> PaymentsPage:
        return PaymentsPage()

    async def latest_ledger(self) -> LatestLedger:
        return LatestLedger(10, self.closed_at)

    async def aclose(self) -> None:
        return None


def signer(ledger: ScriptedLedger) -> StellarSigner:
    return StellarSigner(
        SOURCE.secret,
        ledger,
        network_passphrase=PASSPHRASE,
        tx_timeout_s=60,
        base_fee=200,
        clock=lambda: T0,
    )


def order(**kw: object) -> PayoutOrder:
    values: dict[str, object] = {
        "id": "p1",
        "transaction_id": "t1",
        "purpose": "payment",
        "destination": DEST,
        "asset": USDC,
        "amount": "12.5",
    }
    values.update(kw)
    return PayoutOrder(**values)  # type: ignore[arg-type]


async def prepared(ledger: ScriptedLedger, **kw: object) -> PayoutOrder:
    o = order(**kw)
    u = await signer(ledger).prepare(o)
    return PayoutOrder(
        **{
            **{f: getattr(o, f) for f in o.__dataclass_fields__},
            "envelope_xdr": u.envelope_xdr,
            "tx_hash": u.tx_hash,
            "source_sequence": u.source_sequence,
            "valid_until": u.valid_until,
        }
    )


async def test_prepare_signs_the_payment_with_memo_bound_fee_and_next_sequence() -> None:
    o = await prepared(ScriptedLedger(), memo="hello", memo_type="text")
    assert o.source_sequence == 101 and o.valid_until == T0 + timedelta(seconds=60)
    env = TransactionEnvelope.from_xdr(o.envelope_xdr or "", PASSPHRASE)
    tx = env.transaction
    assert env.hash_hex() == o.tx_hash
    assert tx.sequence == 101 and tx.fee == 200
    assert tx.preconditions.time_bounds.max_time == int((T0 + timedelta(seconds=60)).timestamp())
    (op,) = tx.operations
    assert (op.destination.account_id, op.asset.code, op.asset.issuer, str(op.amount)) == (
        DEST,
        "USDC",
        ISSUER,
        "12.5",
    )
    assert tx.memo.memo_text == b"hello"
    SOURCE.verify(env.hash(), env.signatures[0].signature)


def test_repr_and_errors_never_show_the_secret() -> None:
    s = signer(ScriptedLedger())
    assert SOURCE.secret not in repr(s) and SOURCE.public_key in repr(s)
    with pytest.raises(ConfigError) as err:
        StellarSigner("SBADSECRET", ScriptedLedger(), network_passphrase=PASSPHRASE)
    assert "SBADSECRET" not in str(err.value)


def test_memo_amount_conversions() -> None:
    raw = bytes(range(32))
    assert stellar_memo(base64.b64encode(raw).decode(), "hash").memo_hash == raw
    assert stellar_memo(raw.hex(), "hash").memo_hash == raw
    assert stellar_memo("42", "id").memo_id == 42
    assert stellar_memo(None, None).to_xdr_object().type.value == 0
    assert stellar_amount("1.50000000") == "1.5000000"
    for bad_memo, kind in (("x" * 29, "text"), ("abc", "hash"), ("-1", "id"), ("1", "weird")):
        with pytest.raises(PermanentCustodyError):
            stellar_memo(bad_memo, kind)
    for bad in ("0", "-1", "1.00000001", "abc", "NaN"):
        with pytest.raises(PermanentCustodyError):
            stellar_amount(bad)


async def test_bad_destination_is_permanent() -> None:
    with pytest.raises(PermanentCustodyError, match="not a valid Stellar account"):
        await signer(ScriptedLedger()).prepare(order(destination="GNOPE"))


async def test_submit_success_and_permanent_codes_with_actionable_messages() -> None:
    ledger = ScriptedLedger()
    o = await prepared(ledger)
    s = signer(ledger)
    ledger.submits = [SubmitResult(o.tx_hash or "", True, ledger=5)]
    assert await s.submit(o) == Confirmed(o.tx_hash or "", 5)
    cases = {
        "op_no_destination": f"The destination account {DEST} does not exist on the ledger "
        "(op_no_destination)",
        "op_underfunded": f"The distribution account {SOURCE.public_key} has not enough "
        f"USDC:{ISSUER} to pay 12.5; fund it (op_underfunded)",
        "op_no_trust": f"The destination account {DEST} has no trustline for USDC:{ISSUER} "
        "(op_no_trust)",
    }
    for code, text in cases.items():
        ledger.submits = [SubmitResult(o.tx_hash or "", False, None, "tx_failed", (code,))]
        assert await s.submit(o) == Failed(text, code)
    ledger.submits = [SubmitResult(o.tx_hash or "", False, None, "tx_bad_auth")]
    failed = await s.submit(o)
    assert isinstance(failed, Failed) and failed.code == "tx_bad_auth"
    assert "STELLAR_DISTRIBUTION_SECRET" in failed.reason


async def test_transient_submissions_and_a_refusal_of_an_already_applied_envelope() -> None:
    ledger = ScriptedLedger()
    o = await prepared(ledger)
    s = signer(ledger)
    ledger.submits = [LedgerUnavailable("504", 504)]
    with pytest.raises(TransientCustodyError, match="looked up and the same envelope resubmitted"):
        await s.submit(o)
    ledger.submits = [SubmitResult(o.tx_hash or "", False, None, "tx_bad_seq")]
    with pytest.raises(TransientCustodyError, match="tx_bad_seq"):
        await s.submit(o)
    # the 504 had in fact applied it: resubmitting gets tx_bad_seq, the lookup finds it
    ledger.on_ledger[o.tx_hash or ""] = True
    ledger.submits = [SubmitResult(o.tx_hash or "", False, None, "tx_bad_seq")]
    assert isinstance(await s.submit(o), Confirmed)
    assert len({*ledger.sent}) == 1  # one envelope, however often sent


async def test_lookup_proves_death_only_after_a_ledger_closed_past_the_bound() -> None:
    ledger = ScriptedLedger()
    o = await prepared(ledger)
    s = signer(ledger)
    assert await s.lookup(o) == NotFound(False, "not on the ledger yet; its time bound is open")
    ledger.closed_at = T0 + timedelta(seconds=61)  # within the margin
    assert (await s.lookup(o)).dead is False  # type: ignore[union-attr]
    ledger.closed_at = T0 + timedelta(seconds=62)
    assert (await s.lookup(o)).dead is True  # type: ignore[union-attr]
    ledger.on_ledger[o.tx_hash or ""] = False
    failed = await s.lookup(o)
    assert isinstance(failed, Failed) and "failed on the ledger" in failed.reason


async def test_trustline_check() -> None:
    ledger = ScriptedLedger()
    s = signer(ledger)
    assert await s.check_trustline(DEST, "stellar:native") is True
    assert await s.check_trustline(DEST, USDC) is False  # no account: no trustline
    ledger.accounts[DEST] = Account(DEST, 1, (Balance(USDC, 0),))
    assert await s.check_trustline(DEST, USDC) is True


# --- against the sandbox network over real HTTP ------------------------------------------------


@contextlib.asynccontextmanager
async def sandbox_signer() -> AsyncIterator[tuple[StellarSigner, Sandbox, ManualClock]]:
    clock = ManualClock()
    sandbox = make_sandbox(clock)
    async with served_sandbox(sandbox) as horizon:
        ledger = HorizonLedgerClient(horizon, timeout_s=5)
        try:
            yield (
                StellarSigner(
                    SANDBOX_DISTRIBUTION_SECRET,
                    ledger,
                    network_passphrase=SANDBOX_NETWORK_PASSPHRASE,
                    tx_timeout_s=60,
                    clock=clock,
                ),
                sandbox,
                clock,
            )
        finally:
            await ledger.aclose()


async def with_material(s: StellarSigner, o: PayoutOrder) -> PayoutOrder:
    u = await s.prepare(o)
    return dataclasses.replace(
        o,
        envelope_xdr=u.envelope_xdr,
        tx_hash=u.tx_hash,
        source_sequence=u.source_sequence,
        valid_until=u.valid_until,
    )


async def submitted(s: StellarSigner, sandbox: Sandbox, o: PayoutOrder) -> object:
    task = asyncio.create_task(s.submit(o))
    await sandbox.wait_queued()
    await sandbox.close_ledger()
    return await task


async def test_sandbox_pays_once_and_resubmission_is_harmless() -> None:
    async with sandbox_signer() as (s, sandbox, _clock):
        user = sandbox.create_account(trust=(SANDBOX_USDC,))
        assert await s.check_trustline(user.public_key, SANDBOX_USDC) is True
        assert await s.check_trustline(Keypair.random().public_key, SANDBOX_USDC) is False
        o = await with_material(
            s, order(destination=user.public_key, asset=SANDBOX_USDC, memo="hi", memo_type="text")
        )
        done = await submitted(s, sandbox, o)
        assert isinstance(done, Confirmed) and done.hash == o.tx_hash
        assert sandbox.ledger.balance(user.public_key, SANDBOX_USDC) == Decimal("12.5")
        found = await s.lookup(o)
        assert isinstance(found, Confirmed) and found.record is not None
        assert found.record.memo == "hi" and found.record.payments[0].amount == "12.5000000"
        # Sending the same envelope again (a retry after a lost answer) pays nothing more.
        again = await s.submit(o)
        assert isinstance(again, Confirmed) and again.hash == o.tx_hash
        assert sandbox.ledger.balance(user.public_key, SANDBOX_USDC) == Decimal("12.5")


async def test_sandbox_dead_envelope_is_proven_only_after_its_bound() -> None:
    async with sandbox_signer() as (s, sandbox, clock):
        user = sandbox.create_account()
        o = await with_material(s, order(destination=user.public_key, asset="stellar:native"))
        sandbox.faults.add({"kind": "drop_next_submission"})
        with pytest.raises(TransientCustodyError):
            await s.submit(o)
        await sandbox.close_ledger()
        assert await s.lookup(o) == NotFound(False, "not on the ledger yet; its time bound is open")
        clock.advance(65)
        await sandbox.close_ledger()  # a ledger closed after the bound: it can never land
        dead = await s.lookup(o)
        assert isinstance(dead, NotFound) and dead.dead
        fresh = await with_material(s, order(destination=user.public_key, asset="stellar:native"))
        assert fresh.source_sequence == o.source_sequence  # the old one never used it
        assert isinstance(await submitted(s, sandbox, fresh), Confirmed)


async def test_sandbox_permanent_failure_codes() -> None:
    async with sandbox_signer() as (s, sandbox, _clock):
        nobody = Keypair.random().public_key
        o = await with_material(s, order(destination=nobody, asset="stellar:native"))
        failed = await submitted(s, sandbox, o)
        assert failed == Failed(
            f"The destination account {nobody} does not exist on the ledger (op_no_destination)",
            "op_no_destination",
        )
        untrusting = sandbox.create_account()
        o = await with_material(s, order(destination=untrusting.public_key, asset=SANDBOX_USDC))
        failed = await submitted(s, sandbox, o)
        assert isinstance(failed, Failed) and failed.code == "op_no_trust"


# --- channel accounts ---------------------------------------------------------------------------


async def test_a_channel_is_the_envelope_source_and_the_distribution_account_pays() -> None:
    channels = [Keypair.random(), Keypair.random()]
    ledger = ScriptedLedger()
    for n, channel in enumerate(channels):
        ledger.accounts[channel.public_key] = Account(channel.public_key, 500 + n, ())
    s = StellarSigner(
        SOURCE.secret,
        ledger,
        network_passphrase=PASSPHRASE,
        channel_secrets=[c.secret for c in channels],
        clock=lambda: T0,
    )
    assert s.source_accounts == (channels[0].public_key, channels[1].public_key)
    assert repr(s) == f"StellarSigner(source={SOURCE.public_key}, channels=2)"
    update = await s.prepare(order(source_account=channels[1].public_key))
    env = TransactionEnvelope.from_xdr(update.envelope_xdr or "", PASSPHRASE)
    tx = env.transaction
    assert tx.source.account_id == channels[1].public_key
    assert tx.sequence == update.source_sequence == 502
    (op,) = tx.operations
    assert op.source is not None and op.source.account_id == SOURCE.public_key
    signers = {sig.signature_hint for sig in env.signatures}
    assert signers == {SOURCE.signature_hint(), channels[1].signature_hint()}
    # A lane no longer configured falls back to the first one.
    update = await s.prepare(order(source_account=Keypair.random().public_key))
    env = TransactionEnvelope.from_xdr(update.envelope_xdr or "", PASSPHRASE)
    assert env.transaction.source.account_id == channels[0].public_key


async def test_without_channels_the_distribution_account_is_the_only_lane() -> None:
    s = signer(ScriptedLedger())
    assert s.source_accounts == (SOURCE.public_key,)
    update = await s.prepare(order(source_account=SOURCE.public_key))
    env = TransactionEnvelope.from_xdr(update.envelope_xdr or "", PASSPHRASE)
    assert env.transaction.source.account_id == SOURCE.public_key
    assert env.transaction.operations[0].source is None


def test_bad_channel_secrets_are_config_errors() -> None:
    channel = Keypair.random()
    with pytest.raises(ConfigError) as err:
        StellarSigner(
            SOURCE.secret,
            ScriptedLedger(),
            network_passphrase=PASSPHRASE,
            channel_secrets=[channel.secret, "SNOTASEED"],
        )
    assert str(err.value) == "STELLAR_CHANNEL_SECRETS (entry 2) is not a valid Stellar secret seed"
    for repeated in ([channel.secret, channel.secret], [SOURCE.secret]):
        with pytest.raises(ConfigError) as err:
            StellarSigner(
                SOURCE.secret,
                ScriptedLedger(),
                network_passphrase=PASSPHRASE,
                channel_secrets=repeated,
            )
        assert "repeats an account already used" in str(err.value)


async def test_a_missing_channel_account_is_named() -> None:
    channel = Keypair.random()
    s = StellarSigner(
        SOURCE.secret,
        ScriptedLedger(),
        network_passphrase=PASSPHRASE,
        channel_secrets=[channel.secret],
    )
    with pytest.raises(PermanentCustodyError) as err:
        await s.prepare(order(source_account=channel.public_key))
    assert str(err.value) == (
        f"The channel account {channel.public_key} does not exist on the ledger; "
        "create and fund it (tx_no_source_account)"
    )


@pytest.mark.parametrize("amount", ["922337203685.4775808", "1e400", "-1", "0.00000001"])
def test_amounts_stellar_cannot_carry_are_permanent_with_a_sentence(amount: str) -> None:
    with pytest.raises(PermanentCustodyError) as caught:
        stellar_amount(amount)
    assert str(caught.value) == (
        f"Amount {amount} cannot be paid on Stellar (positive, at most 7 decimals, at most "
        "922337203685.4775807)"
    )
    assert stellar_amount("922337203685.4775807") == "922337203685.4775807"


# --- operation batching ------------------------------------------------------------------------


def batch_signer(ledger: ScriptedLedger) -> StellarSigner:
    return StellarSigner(
        SOURCE.secret,
        ledger,
        network_passphrase=PASSPHRASE,
        base_fee=100,
        max_ops_per_tx=3,
        clock=lambda: T0,
    )


async def test_prepare_batch_pays_each_buildable_order_in_one_envelope() -> None:
    """Up to `max_ops_per_tx` orders, one payment operation each, in order; an order that can
    never be built is refused with why and left out."""
    others = [Keypair.random().public_key for _ in range(3)]
    orders = [
        order(id="a", destination=others[0], amount="1"),
        order(id="bad", destination=others[1], amount="0.00000001"),
        order(id="b", destination=others[2], amount="2"),
        order(id="over", destination=DEST, amount="3"),  # beyond the limit: not even looked at
    ]
    batch = await batch_signer(ScriptedLedger()).prepare_batch(orders)
    assert batch.accepted == ("a", "b")
    assert list(batch.refused) == ["bad"] and batch.refused["bad"].code == "bad_amount"
    assert batch.update is not None
    env = TransactionEnvelope.from_xdr(batch.update.envelope_xdr or "", PASSPHRASE)
    payments = [(op.destination.account_id, op.amount) for op in env.transaction.operations]
    assert payments == [(others[0], "1"), (others[2], "2")]
    assert env.transaction.fee == 200  # the base fee per operation
    assert batch.update.tx_hash == env.hash_hex() and batch.update.source_sequence == 101


async def batched(ledger: ScriptedLedger, n: int) -> list[PayoutOrder]:
    dests = [Keypair.random().public_key for _ in range(n)]
    orders = [order(id=f"p{i}", destination=d, amount=str(i + 1)) for i, d in enumerate(dests)]
    batch = await batch_signer(ledger).prepare_batch(orders)
    assert batch.update is not None
    return [
        dataclasses.replace(
            o,
            envelope_xdr=batch.update.envelope_xdr,
            tx_hash=batch.update.tx_hash,
            valid_until=batch.update.valid_until,
            op_index=i,
        )
        for i, o in enumerate(orders)
    ]


async def test_a_failing_operation_fails_its_own_payout_and_proves_the_others_dead() -> None:
    ledger = ScriptedLedger()
    orders = await batched(ledger, 3)
    codes = ("op_success", "op_no_trust", "op_success")
    ledger.submits = [SubmitResult(orders[0].tx_hash or "", False, None, "tx_failed", codes)]
    outcomes = await batch_signer(ledger).submit_batch(orders)
    assert len(ledger.sent) == 1  # sent once for the three
    failed = outcomes["p1"]
    assert isinstance(failed, Failed) and failed.code == "op_no_trust"
    assert failed.reason == (
        f"The destination account {orders[1].destination} has no trustline for "
        f"{USDC.removeprefix('stellar:')} (op_no_trust)"
    )
    for pid in ("p0", "p2"):
        dead = outcomes[pid]
        assert isinstance(dead, NotFound) and dead.dead
        assert dead.detail == (
            f"{orders[0].tx_hash} failed because of another payment in it (op_no_trust); "
            "nothing was paid"
        )


async def test_a_confirmed_batch_gives_each_payout_its_own_payment_record() -> None:
    ledger = ScriptedLedger()
    orders = await batched(ledger, 3)
    payments = [
        StellarPayment(
            str(100 + i), o.amount, "USDC:X", "payment", SOURCE.public_key, o.destination
        )
        for i, o in enumerate(orders)
    ]
    record = StellarTransaction(id="h", created_at=T0, envelope=None, payments=payments)
    ledger.submits = [SubmitResult("h", True, 9, record=record)]
    outcomes = await batch_signer(ledger).submit_batch(orders)
    for i, o in enumerate(orders):
        mine = outcomes[o.id]
        assert isinstance(mine, Confirmed) and mine.record is not None
        assert (mine.hash, mine.ledger) == ("h", 9)
        assert mine.record.payments == [payments[i]]


async def test_concurrent_reads_of_one_hash_or_trustline_share_one_request() -> None:
    class Counting(ScriptedLedger):
        reads: int = 0

        async def get_account(self, account_id: str) -> Account:
            self.reads += 1
            await asyncio.sleep(0.01)
            return await super().get_account(account_id)

    ledger = Counting(accounts={DEST: Account(DEST, 1, (Balance(USDC, Decimal(0)),))})
    s = batch_signer(ledger)
    answers = await asyncio.gather(*(s.check_trustline(DEST, USDC) for _ in range(5)))
    assert answers == [True] * 5 and ledger.reads == 1
    assert await s.check_trustline(DEST, USDC) and ledger.reads == 2  # shared, not cached
