"""Whole SEP-24 flows through validate/apply: the eight typical paths of spec/rpc.md §3.0
(in both fee dialects), the custody paths, the end-to-end batches E1-E4 of §8.5 as domain
sequences, and the result object of §5.2."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from anchorpay.domain.assets import Asset, AssetList
from anchorpay.domain.errors import RpcError
from anchorpay.domain.machine import DepositInfo, Facts, MachineContext
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import StellarPayment, StellarTransaction, Transaction
from anchorpay.rpc.result import transaction_result
from support.domain_fixtures import run

ISSUER = "GDQOE23CFSUMSVQK4Y5JHPPYK73VYCNHZHA7ENKCV37P6SUEO6XQBKPP"
USDC = f"stellar:USDC:{ISSUER}"
USD = "iso4217:USD"
DIST = "GBN4NNCDGJO4XW4KQU3CBIESUJWFVBUZPOKUZHT7W7WRB7CWOA7BXVQF"
USER = "GDJLBYYKMCXNVVNABOE66NYXQGIA5AC5D223Z2KF6ZEYK4UBCA7FKLTG"
ASSETS = AssetList(
    (
        Asset(id=USDC, significant_decimals=2, distribution_account=DIST),
        Asset(id=USD, significant_decimals=2),
    )
)
T0 = datetime(2024, 6, 25, 20, 37, 50, 883071, tzinfo=UTC)
TX_ID = "f7b344be-f3ed-45f0-8e5b-ad4603364a6e"
FUTURE = "2099-01-01T00:00:00Z"

DIALECTS = ["3.x", "2.x"]


def fee(dialect: str, total: str, asset: str) -> dict[str, Any]:
    """The fee in the request's dialect: 3.x fee_details or 2.x amount_fee."""
    if dialect == "3.x":
        return {"fee_details": {"total": total, "asset": asset}}
    return {"amount_fee": {"amount": total, "asset": asset}}


def ctx(
    minutes: int = 0, custody: str = "none", generator: str = "none", assets: AssetList = ASSETS
) -> MachineContext:
    return MachineContext(
        assets=assets,
        custody_enabled=custody != "none",
        custody_type=custody,
        deposit_info_generator=generator,
        now=T0 + timedelta(minutes=minutes),
    )


def new_tx(kind: Kind) -> Transaction:
    return Transaction(
        id=TX_ID,
        kind=kind,
        status=Status.INCOMPLETE,
        started_at=T0,
        requested_asset=USDC,
        to_account=USER if kind is Kind.DEPOSIT else DIST,
        from_account=USER if kind is Kind.WITHDRAWAL else None,
        sep10_account=USER,
        client_name="referenceCustodial",
    )


def ledger_tx(tx_hash: str, source: str, destination: str, amount: str) -> StellarTransaction:
    return StellarTransaction(
        id=tx_hash,
        created_at=datetime(2024, 6, 25, 21, 0, tzinfo=UTC),
        envelope="AAAA",
        payments=[
            StellarPayment(
                id="1",
                amount=amount,
                asset=f"USDC:{ISSUER}",
                payment_type="payment",
                source_account=source,
                destination_account=destination,
            )
        ],
    )


class Flow:
    """A transaction walked through calls, each result checked against its status."""

    def __init__(self, kind: Kind, **context: Any) -> None:
        self.tx = new_tx(kind)
        self.context = context
        self.step = 0

    def call(self, method: str, params: dict[str, Any], facts: Facts | None = None) -> Any:
        self.step += 1
        c = ctx(self.step, **self.context)
        before = copy.deepcopy(self.tx)
        outcome = run(self.tx, method, {"transaction_id": TX_ID, **params}, c, facts)
        assert self.tx == before
        self.tx = outcome.transaction
        assert self.tx.updated_at == c.now
        return outcome

    def expect(self, method: str, params: dict[str, Any], status: Status, **kw: Any) -> Any:
        outcome = self.call(method, params, **kw)
        assert self.tx.status is status, (method, self.tx.status)
        return outcome

    def refused(self, method: str, params: dict[str, Any], code: int, message: str) -> None:
        self.step += 1
        before = copy.deepcopy(self.tx)
        with pytest.raises(RpcError) as raised:
            run(
                self.tx, method, {"transaction_id": TX_ID, **params}, ctx(self.step, **self.context)
            )
        assert (raised.value.code, raised.value.message) == (code, message)
        assert self.tx == before

    @property
    def result(self) -> dict[str, object]:
        return transaction_result(self.tx, ASSETS)


def _offchain_deposit(flow: Flow, dialect: str) -> None:
    flow.expect(
        "request_offchain_funds",
        {
            "amount_in": {"amount": "100", "asset": USD},
            "amount_out": {"amount": "95", "asset": USDC},
            **fee(dialect, "5", USD),
            "amount_expected": {"amount": "100"},
        },
        Status.PENDING_USER_TRANSFER_START,
    )
    flow.expect(
        "notify_offchain_funds_received",
        {"external_transaction_id": "ext-1", "funds_received_at": "2024-06-25T20:40:00Z"},
        Status.PENDING_ANCHOR,
    )
    assert flow.tx.funds_received


def _sent(flow: Flow) -> None:
    found = Facts(stellar_transaction=ledger_tx("hash-out", DIST, USER, "95.0000000"))
    flow.expect(
        "notify_onchain_funds_sent",
        {"stellar_transaction_id": "hash-out"},
        Status.COMPLETED,
        facts=found,
    )
    assert flow.tx.completed_at is not None
    assert flow.result["stellar_transactions"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_deposit_short(dialect: str) -> None:
    flow = Flow(Kind.DEPOSIT)
    _offchain_deposit(flow, dialect)
    _sent(flow)
    result = flow.result
    assert result["fee_details"] == {"total": "5", "asset": USD}
    assert result["amount_fee"] == {"amount": "5", "asset": USD}
    assert result["amount_expected"] == {"amount": "100", "asset": USDC}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_deposit_full_with_trust(dialect: str) -> None:
    flow = Flow(Kind.DEPOSIT)
    flow.expect(
        "notify_interactive_flow_completed",
        {
            "amount_in": {"amount": "100", "asset": USD},
            "amount_out": {"amount": "95", "asset": USDC},
            **fee(dialect, "5", USD),
        },
        Status.PENDING_ANCHOR,
    )
    _offchain_deposit(flow, dialect)
    flow.expect("request_trust", {"user_action_required_by": FUTURE}, Status.PENDING_TRUST)
    assert flow.result["user_action_required_by"] == FUTURE
    flow.expect("notify_trust_set", {"success": True}, Status.PENDING_ANCHOR)
    assert "user_action_required_by" not in flow.result
    _sent(flow)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_deposit_with_recovery(dialect: str) -> None:
    flow = Flow(Kind.DEPOSIT)
    _offchain_deposit(flow, dialect)
    flow.refused("notify_transaction_error", {}, -32602, "message is required")
    flow.expect("notify_transaction_error", {"message": "bank down"}, Status.ERROR)
    assert flow.tx.message == "bank down"
    flow.expect("notify_transaction_recovery", {}, Status.PENDING_ANCHOR)
    assert flow.tx.message is None
    _sent(flow)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_deposit_with_partial_refund(dialect: str) -> None:
    flow = Flow(Kind.DEPOSIT)
    _offchain_deposit(flow, dialect)
    refund = {
        "id": "r1",
        "amount": {"amount": "10", "asset": USD},
        "amount_fee": {"amount": "1", "asset": USD},
    }
    flow.expect("notify_refund_pending", {"refund": refund}, Status.PENDING_EXTERNAL)
    flow.expect("notify_refund_sent", {"refund": refund}, Status.PENDING_ANCHOR)
    refunds = flow.result["refunds"]
    assert isinstance(refunds, dict)
    assert refunds["amount_refunded"] == {"amount": "11", "asset": USD}
    assert [p["id"] for p in refunds["payments"]] == ["r1"]
    _sent(flow)
    assert flow.result["refunds"] == refunds


def _onchain_withdrawal(flow: Flow, dialect: str) -> None:
    flow.expect(
        "request_onchain_funds",
        {
            "amount_in": {"amount": "100", "asset": USDC},
            "amount_out": {"amount": "95", "asset": USD},
            **fee(dialect, "5", USDC),
            "memo": "12345",
            "memo_type": "id",
            "destination_account": DIST,
        },
        Status.PENDING_USER_TRANSFER_START,
    )
    found = Facts(stellar_transaction=ledger_tx("hash-in", USER, DIST, "100.0000000"))
    flow.expect(
        "notify_onchain_funds_received",
        {"stellar_transaction_id": "hash-in"},
        Status.PENDING_ANCHOR,
        facts=found,
    )
    assert flow.tx.funds_received
    entries = flow.result["stellar_transactions"]
    assert isinstance(entries, list) and entries[0]["memo"] == "12345"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_withdrawal_short(dialect: str) -> None:
    flow = Flow(Kind.WITHDRAWAL)
    _onchain_withdrawal(flow, dialect)
    flow.expect("notify_offchain_funds_sent", {"external_transaction_id": "x"}, Status.COMPLETED)
    assert flow.result["completed_at"] == "2024-06-25T20:40:50.883071Z"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_withdrawal_through_pending_external(dialect: str) -> None:
    flow = Flow(Kind.WITHDRAWAL)
    _onchain_withdrawal(flow, dialect)
    flow.expect("notify_offchain_funds_pending", {}, Status.PENDING_EXTERNAL)
    flow.expect("notify_offchain_funds_sent", {}, Status.COMPLETED)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_withdrawal_through_the_user(dialect: str) -> None:
    flow = Flow(Kind.WITHDRAWAL)
    _onchain_withdrawal(flow, dialect)
    flow.expect(
        "notify_amounts_updated",
        {"amount_out": {"amount": "94"}, **fee(dialect, "6", USDC)},
        Status.PENDING_ANCHOR,
    )
    flow.expect("notify_offchain_funds_available", {}, Status.PENDING_USER_TRANSFER_COMPLETE)
    flow.expect("notify_offchain_funds_sent", {}, Status.COMPLETED)
    assert flow.result["amount_out"] == {"amount": "94", "asset": USD}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_withdrawal_full_refund(dialect: str) -> None:
    flow = Flow(Kind.WITHDRAWAL)
    _onchain_withdrawal(flow, dialect)
    refund = {
        "id": "hash-r",
        "amount": {"amount": Decimal("95"), "asset": USDC},
        "amount_fee": {"amount": 5, "asset": USDC},
    }
    flow.expect("notify_refund_sent", {"refund": refund}, Status.REFUNDED)
    assert flow.tx.completed_at is not None


def test_custody_deposit_waits_for_trust_then_pays() -> None:
    flow = Flow(Kind.DEPOSIT, custody="stellar")
    _offchain_deposit(flow, "3.x")
    flow.refused(
        "request_trust",
        {},
        -32600,
        "RPC method[request_trust] requires disabled custody integration",
    )
    outcome = flow.expect(
        "do_stellar_payment", {}, Status.PENDING_TRUST, facts=Facts(trustline=False)
    )
    payout = outcome.payout
    assert payout is not None and payout.wait_for_trust
    assert (payout.purpose, payout.destination, payout.asset, payout.amount) == (
        "payment",
        USER,
        USDC,
        "95",
    )
    outcome = flow.expect("notify_trust_set", {"success": True}, Status.PENDING_STELLAR)
    assert outcome.resume_waiting_payout and not outcome.cancel_waiting_payout
    _sent(flow)


def test_custody_trust_timeout_returns_to_the_anchor() -> None:
    flow = Flow(Kind.DEPOSIT, custody="fireblocks")
    _offchain_deposit(flow, "3.x")
    flow.expect("do_stellar_payment", {}, Status.PENDING_TRUST, facts=Facts(trustline=None))
    outcome = flow.expect(
        "notify_trust_set", {"success": False, "message": "no trustline"}, Status.PENDING_ANCHOR
    )
    assert outcome.cancel_waiting_payout
    outcome = flow.expect(
        "do_stellar_payment", {}, Status.PENDING_STELLAR, facts=Facts(trustline=True)
    )
    assert outcome.payout is not None and not outcome.payout.wait_for_trust


def test_custody_withdrawal_refunds_in_two_payouts() -> None:
    """do_stellar_refund records nothing; the worker's notify_refund_sent does, and a second
    refund after a partial one works (the reference would refuse its new hash)."""
    flow = Flow(Kind.WITHDRAWAL, custody="stellar")
    _onchain_withdrawal(flow, "3.x")
    for n, (amount, status) in enumerate((("40", Status.PENDING_ANCHOR), ("55", Status.REFUNDED))):
        outcome = flow.expect(
            "do_stellar_refund",
            {
                "refund": {
                    "amount": {"amount": amount, "asset": USDC},
                    "amount_fee": {"amount": "2.5", "asset": USDC},
                }
            },
            Status.PENDING_STELLAR,
        )
        payout = outcome.payout
        assert payout is not None and payout.purpose == "refund"
        assert (payout.destination, payout.amount, payout.refund_fee) == (USER, amount, "2.5")
        assert flow.tx.refunds is None or len(flow.tx.refunds.payments) == n
        # What the worker sends once the refund is on the ledger (scheduler/completion.py).
        worker_refund = {
            "id": f"hash-refund-{n}",
            "amount": {"amount": payout.amount, "asset": flow.tx.amount_in_asset},
            "amount_fee": {
                "amount": payout.refund_fee,
                "asset": flow.tx.amount_fee_asset or flow.tx.amount_in_asset,
            },
        }
        flow.expect("notify_refund_sent", {"refund": worker_refund}, status)
    refunds = flow.result["refunds"]
    assert isinstance(refunds, dict)
    assert refunds["amount_refunded"] == {"amount": "100", "asset": USDC}
    assert refunds["amount_fee"] == {"amount": "5", "asset": USDC}


def test_refund_exceeding_amount_in_is_refused_before_paying() -> None:
    flow = Flow(Kind.WITHDRAWAL, custody="stellar")
    _onchain_withdrawal(flow, "3.x")
    flow.refused(
        "do_stellar_refund",
        {
            "refund": {
                "amount": {"amount": "100", "asset": USDC},
                "amount_fee": {"amount": "0.01", "asset": USDC},
            }
        },
        -32602,
        "Refund amount exceeds amount_in",
    )


# ---- §8.5 end-to-end batches as domain sequences -----------------------------------------

BAD_ASSET = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5iso4217:USD"


def state_error(method: str, status: str, kind: str, funds: bool) -> str:
    return (
        f"RPC method[{method}] is not supported. Status[{status}], kind[{kind}], protocol[24], "
        f"funds received[{str(funds).lower()}]"
    )


def test_e1_validations_and_errors() -> None:
    """Elements 5-20 (1-4 are envelope errors, the RPC layer's). Each element sees what the
    earlier ones stored, and a refused one changes nothing."""
    flow = Flow(Kind.DEPOSIT)
    offchain = {
        "amount_in": {"amount": "10.11", "asset": USD},
        "amount_out": {"amount": "9", "asset": USDC},
        "fee_details": {"total": "1.11", "asset": USD},
        "amount_expected": {"amount": "10.11"},
    }
    flow.refused(
        "request_onchain_funds",
        {},
        -32600,
        state_error("request_onchain_funds", "incomplete", "deposit", False),
    )
    flow.refused(
        "request_offchain_funds",
        {**offchain, "amount_in": {"amount": "1", "asset": USDC}},
        -32602,
        "amount_in.asset should be non-stellar asset",
    )
    unsupported = f"'{BAD_ASSET}' is not a supported asset."
    flow.refused(
        "request_offchain_funds",
        {
            **offchain,
            "amount_in": {"amount": "0", "asset": USD},
            "amount_out": {"amount": "9", "asset": BAD_ASSET},
        },
        -32602,
        unsupported,
    )
    flow.refused(
        "request_offchain_funds",
        {**offchain, "amount_out": {"amount": "0", "asset": BAD_ASSET}},
        -32602,
        unsupported,
    )
    flow.refused(
        "request_offchain_funds",
        {**offchain, "fee_details": {"total": "1.11", "asset": "iso111:III"}},
        -32602,
        "'iso111:III' is not a supported asset.",
    )
    interactive = {
        "amount_in": {"amount": "100", "asset": USD},
        "amount_out": {"amount": "95", "asset": USDC},
        "fee_details": {"total": "5", "asset": USD},
        "amount_expected": {"amount": "3"},
        "message": "test message 10",
    }
    flow.expect("notify_interactive_flow_completed", interactive, Status.PENDING_ANCHOR)
    result = flow.result
    assert result["amount_expected"] == {"amount": "3", "asset": USDC}
    assert result["amount_in"] == {"amount": "100", "asset": USD}
    assert result["amount_out"] == {"amount": "95", "asset": USDC}
    assert result["fee_details"] == {"total": "5", "asset": USD}
    assert result["message"] == "test message 10"
    flow.refused(
        "notify_interactive_flow_completed",
        interactive,
        -32600,
        state_error("notify_interactive_flow_completed", "pending_anchor", "deposit", False),
    )
    flow.expect("request_offchain_funds", offchain, Status.PENDING_USER_TRANSFER_START)
    assert flow.result["amount_expected"] == {"amount": "10.11", "asset": USDC}
    assert flow.result["message"] == "test message 10"  # carried over
    flow.refused(
        "request_offchain_funds",
        offchain,
        -32600,
        state_error("request_offchain_funds", "pending_user_transfer_start", "deposit", False),
    )
    flow.refused(
        "notify_onchain_funds_sent",
        {"stellar_transaction_id": "h"},
        -32600,
        state_error("notify_onchain_funds_sent", "pending_user_transfer_start", "deposit", False),
    )
    flow.expect(
        "notify_offchain_funds_received",
        {"external_transaction_id": "ext-123456"},
        Status.PENDING_ANCHOR,
    )
    assert flow.result["external_transaction_id"] == "ext-123456"
    flow.refused(
        "notify_offchain_funds_received",
        {},
        -32600,
        state_error("notify_offchain_funds_received", "pending_anchor", "deposit", True),
    )
    refund = {
        "id": "123456",
        "amount": {"amount": "989.11", "asset": USD},
        "amount_fee": {"amount": "1", "asset": USD},
    }
    flow.refused(
        "notify_refund_sent", {"refund": refund}, -32602, "Refund amount exceeds amount_in"
    )
    usdc_refund = {
        **refund,
        "amount": {"amount": "989.11", "asset": USDC},
        "amount_fee": {"amount": "1", "asset": USDC},
    }
    flow.refused(
        "notify_refund_sent",
        {"refund": usdc_refund},
        -32602,
        "refund.amount.asset does not match transaction amount_in_asset",
    )
    _sent(flow)
    assert len(flow.tx.stellar_transactions) == 1
    flow.refused(
        "notify_onchain_funds_sent",
        {"stellar_transaction_id": "h"},
        -32600,
        state_error("notify_onchain_funds_sent", "completed", "deposit", True),
    )


def test_e2_deposit_short_flow_carries_each_message() -> None:
    flow = Flow(Kind.DEPOSIT)
    flow.expect(
        "request_offchain_funds",
        {
            "amount_in": {"amount": "100", "asset": USD},
            "amount_out": {"amount": "95", "asset": USDC},
            "fee_details": {"total": "5", "asset": USD},
            "amount_expected": {"amount": "100"},
            "message": "m1",
        },
        Status.PENDING_USER_TRANSFER_START,
    )
    assert "completed_at" not in flow.result and flow.result["message"] == "m1"
    flow.expect(
        "notify_offchain_funds_received",
        {
            "funds_received_at": "2024-06-25T20:38:00Z",
            "external_transaction_id": "1",
            "amount_in": {"amount": "100"},
            "message": "m2",
        },
        Status.PENDING_ANCHOR,
    )
    assert flow.tx.transfer_received_at == datetime(2024, 6, 25, 20, 38, tzinfo=UTC)
    assert "completed_at" not in flow.result and flow.result["message"] == "m2"
    found = Facts(stellar_transaction=ledger_tx("h", DIST, USER, "95.0000000"))
    flow.expect(
        "notify_onchain_funds_sent",
        {"stellar_transaction_id": "h", "message": "m3"},
        Status.COMPLETED,
        facts=found,
    )
    assert flow.result["message"] == "m3" and "completed_at" in flow.result


def test_e3_partial_refund_flow() -> None:
    flow = Flow(Kind.DEPOSIT)
    flow.expect(
        "request_offchain_funds",
        {
            "amount_in": {"amount": "1000.11", "asset": USD},
            "amount_out": {"amount": "995", "asset": USDC},
            "fee_details": {"total": "5.11", "asset": USD},
        },
        Status.PENDING_USER_TRANSFER_START,
    )
    flow.expect(
        "notify_offchain_funds_received",
        {"external_transaction_id": "1", "amount_in": {"amount": "1000.11"}},
        Status.PENDING_ANCHOR,
    )
    refund = {
        "id": "123456",
        "amount": {"amount": "989.11", "asset": USD},
        "amount_fee": {"amount": "1", "asset": USD},
    }
    flow.expect("notify_refund_pending", {"refund": refund}, Status.PENDING_EXTERNAL)
    expected = {
        "amount_refunded": {"amount": "990.11", "asset": USD},
        "amount_fee": {"amount": "1", "asset": USD},
        "payments": [
            {
                "id": "123456",
                "id_type": "stellar",
                "amount": {"amount": "989.11", "asset": USD},
                "fee": {"amount": "1", "asset": USD},
            }
        ],
    }
    assert flow.result["refunds"] == expected
    flow.expect("notify_refund_sent", {"refund": refund}, Status.PENDING_ANCHOR)
    assert flow.result["refunds"] == expected
    _sent(flow)
    assert flow.result["refunds"] == expected


def test_e4_withdrawal_full_refund_with_generated_memo() -> None:
    flow = Flow(Kind.WITHDRAWAL, generator="self")
    flow.expect(
        "request_onchain_funds",
        {
            "amount_in": {"amount": "100", "asset": USDC},
            "amount_out": {"amount": "95", "asset": USD},
            "fee_details": {"total": "5", "asset": USDC},
            "amount_expected": {"amount": "100"},
        },
        Status.PENDING_USER_TRANSFER_START,
    )
    result = flow.result
    assert result["memo_type"] == "hash"
    assert result["memo"] == "ZjdiMzQ0YmUtZjNlZC00NWYwLThlNWItYWQ0NjAzMzY="
    assert result["destination_account"] == DIST and flow.tx.withdraw_anchor_account == DIST
    found = Facts(stellar_transaction=ledger_tx("h", USER, DIST, "100.0000000"))
    flow.expect(
        "notify_onchain_funds_received",
        {"stellar_transaction_id": "h"},
        Status.PENDING_ANCHOR,
        facts=found,
    )
    entries = flow.result["stellar_transactions"]
    assert isinstance(entries, list) and entries[0]["memo"] == result["memo"]
    assert entries[0]["memo_type"] == "hash"
    refund = {
        "id": "123456",
        "amount": {"amount": 95, "asset": USDC},
        "amount_fee": {"amount": 5, "asset": USDC},
    }
    flow.expect("notify_refund_sent", {"refund": refund}, Status.REFUNDED)
    assert flow.result["refunds"] == {
        "amount_refunded": {"amount": "100", "asset": USDC},
        "amount_fee": {"amount": "5", "asset": USDC},
        "payments": [
            {
                "id": "123456",
                "id_type": "stellar",
                "amount": {"amount": "95", "asset": USDC},
                "fee": {"amount": "5", "asset": USDC},
            }
        ],
    }


def test_self_generator_uses_the_callers_instructions() -> None:
    flow = Flow(Kind.WITHDRAWAL, generator="self")
    info = DepositInfo(destination_account=DIST, memo="4242", memo_type="id")
    plan_params = {
        "amount_in": {"amount": "10", "asset": USDC},
        "amount_out": {"amount": "9", "asset": USD},
        "fee_details": {"total": "1", "asset": USDC},
    }
    flow.expect(
        "request_onchain_funds",
        plan_params,
        Status.PENDING_USER_TRANSFER_START,
        facts=Facts(deposit_info=info),
    )
    assert (flow.tx.memo, flow.tx.memo_type, flow.tx.to_account) == ("4242", "id", DIST)


# ---- §5.2 result object ------------------------------------------------------------------


def test_result_of_the_spec_example() -> None:
    """EXPECTED_RPC_BATCH_RESPONSE[1] of §5.2, from a stored transaction, plus the
    `transfer_received_at` the reference's SEP-24 mapper leaves out."""
    gbbd = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
    assets = AssetList(
        (Asset(id=gbbd, significant_decimals=7), Asset(id=USD, significant_decimals=2))
    )
    tx = Transaction(
        id="T",
        kind=Kind.DEPOSIT,
        status=Status.PENDING_ANCHOR,
        started_at=datetime(2024, 6, 25, 20, 37, 50, 883071, tzinfo=UTC),
        updated_at=datetime(2024, 6, 25, 20, 37, 52, 922103, tzinfo=UTC),
        requested_asset=gbbd,
        amount_expected="1",
        amount_in="1",
        amount_in_asset=USD,
        amount_out="0.9",
        amount_out_asset=gbbd,
        amount_fee="0.1",
        amount_fee_asset=USD,
        message="test message",
        to_account=USER,
        external_transaction_id="1",
        client_name="referenceCustodial",
        sep10_account=USER,
        transfer_received_at=datetime(2024, 6, 25, 20, 37, 52, tzinfo=UTC),
        withdraw_anchor_account="never shown",
    )
    assert transaction_result(tx, assets) == {
        "id": "T",
        "sep": "24",
        "kind": "deposit",
        "status": "pending_anchor",
        "amount_expected": {"amount": "1", "asset": gbbd},
        "amount_in": {"amount": "1", "asset": USD},
        "amount_out": {"amount": "0.9", "asset": gbbd},
        "fee_details": {"total": "0.1", "asset": USD},
        "amount_fee": {"amount": "0.1", "asset": USD},
        "started_at": "2024-06-25T20:37:50.883071Z",
        "updated_at": "2024-06-25T20:37:52.922103Z",
        # anchorpay's one addition to the reference's example (issue 16, cases X51-X55)
        "transfer_received_at": "2024-06-25T20:37:52Z",
        "message": "test message",
        "destination_account": USER,
        "external_transaction_id": "1",
        "client_name": "referenceCustodial",
        "customers": {"sender": {"account": USER}, "receiver": {"account": USER}},
        "creator": {"account": USER},
    }


def test_result_of_a_fresh_transaction_and_instants() -> None:
    tx = replace(
        new_tx(Kind.DEPOSIT),
        sep10_account=None,
        client_name=None,
        to_account=None,
        started_at=datetime(2024, 6, 25, 20, 18, 34, 200000, tzinfo=UTC),
    )
    assert transaction_result(tx, ASSETS) == {
        "id": TX_ID,
        "sep": "24",
        "kind": "deposit",
        "status": "incomplete",
        "amount_expected": {"asset": USDC},
        "started_at": "2024-06-25T20:18:34.200Z",
        "customers": {"sender": {}, "receiver": {}},
        "creator": {},
    }
    tx.started_at = datetime(2024, 6, 25, 20, 18, 34, tzinfo=UTC)
    tx.requested_asset = "stellar:XYZ:GNOPE"  # not configured: amount_expected is omitted
    tx.amount_in = "5"
    result = transaction_result(tx, ASSETS)
    assert result["started_at"] == "2024-06-25T20:18:34Z"
    assert "amount_expected" not in result
    assert result["amount_in"] == {"amount": "5"}  # the fallback asset is the resolved one
