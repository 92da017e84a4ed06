"""Properties of the state machine over random sequences of calls with random (often valid,
often broken) params against random transactions and configurations."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anchorpay.domain import transitions
from anchorpay.domain.amounts import parse_decimal, rescale
from anchorpay.domain.assets import Asset, AssetList
from anchorpay.domain.errors import RpcError
from anchorpay.domain.machine import METHODS, DepositInfo, Facts, MachineContext, apply, validate
from anchorpay.domain.refunds import decimals_for, refunded
from anchorpay.domain.statuses import FINAL_STATUSES, Kind, Status
from anchorpay.domain.transaction import (
    RefundPayment,
    Refunds,
    StellarPayment,
    StellarTransaction,
    Transaction,
)
from anchorpay.rpc.result import transaction_result

USDC = "stellar:USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"
USD = "iso4217:USD"
NATIVE = "stellar:native"
ASSETS = AssetList(
    (
        Asset(id=USDC, significant_decimals=2, distribution_account="GDIST"),
        Asset(id=USD, significant_decimals=2),
        Asset(id=NATIVE, significant_decimals=7),
    )
)
T0 = datetime(2024, 6, 25, 20, 0, tzinfo=UTC)
FORBIDDEN = ("Traceback", "Exception", "NoneType", "object has no attribute", "Error(")

amounts = st.sampled_from(
    ["1", "0", "-1", "0.9", "0.1", "2.5", "100", "abc", "", "1.001", "1e2", "0.10"]
) | st.sampled_from([5, 0, -3, Decimal("0.1"), Decimal("1E-7"), None, True, [1], {"a": 1}])
assets = st.sampled_from([USDC, USD, NATIVE, "iso111:III", "", None, 7, ["x"]])
texts = st.sampled_from(["testMemo", "", "x" * 40, "12345", None, 5, True, {"a": 1}])
instants = st.sampled_from(
    [
        "2099-01-01T00:00:00Z",
        "2000-01-01T00:00:00Z",
        "2024-01-01",
        "2030-05-05T10:00:00+02:00",
        None,
        17,
        "garbage",
    ]
)


def amount_obj(valid_asset: str | None) -> st.SearchStrategy[object]:
    good = st.builds(
        lambda a: {"amount": a, "asset": valid_asset}, st.sampled_from(["1", "0.5", "2"])
    )
    bad = st.fixed_dictionaries({}, optional={"amount": amounts, "asset": assets})
    return st.one_of(good, bad, st.none(), st.sampled_from(["1", 3, []]))


def fee_obj(valid_asset: str | None) -> st.SearchStrategy[object]:
    good = st.builds(
        lambda t: {"total": t, "asset": valid_asset}, st.sampled_from(["0", "0.1", "1"])
    )
    detail = st.fixed_dictionaries({}, optional={"name": texts, "amount": amounts})
    bad = st.fixed_dictionaries(
        {},
        optional={
            "total": amounts,
            "asset": assets,
            "details": st.lists(detail, max_size=2) | texts,
        },
    )
    return st.one_of(good, bad, st.none())


def refund_obj(tx: Transaction) -> st.SearchStrategy[object]:
    fee_asset = tx.amount_fee_asset or tx.amount_in_asset
    good = st.builds(
        lambda i, a, f: {
            "id": i,
            "amount": {"amount": a, "asset": tx.amount_in_asset},
            "amount_fee": {"amount": f, "asset": fee_asset},
        },
        st.sampled_from(["r1", "r2", "r3"]),
        st.sampled_from(["0.5", "1", "2", "10", "0.01"]),
        st.sampled_from(["0", "0.1", "0.5"]),
    )
    bad = st.fixed_dictionaries(
        {},
        optional={
            "id": texts,
            "amount": amount_obj(tx.amount_in_asset),
            "amount_fee": amount_obj(fee_asset),
        },
    )
    return st.one_of(good, good, bad, st.none())


def noise_fields(tx: Transaction) -> dict[str, st.SearchStrategy[object]]:
    """Per key, values a client might send: right, wrong type, out of range, missing."""
    deposit = tx.kind is Kind.DEPOSIT
    in_asset, out_asset = (USD, USDC) if deposit else (USDC, USD)
    return {
        "message": st.sampled_from(["m", "", None, 4]),
        "amount_in": amount_obj(in_asset),
        "amount_out": amount_obj(out_asset),
        "amount_expected": amount_obj(None),
        "fee_details": fee_obj(in_asset),
        "amount_fee": st.one_of(amount_obj(in_asset), st.none()),
        "user_action_required_by": instants,
        "funds_received_at": instants,
        "funds_sent_at": instants,
        "external_transaction_id": texts,
        "stellar_transaction_id": st.sampled_from(["hash1", "", "  ", None, 9]),
        "refund": refund_obj(tx),
        "success": st.sampled_from([True, False, None, "yes"]),
        "memo": st.sampled_from(
            ["testMemo", "123", "YWYwOTk2M2QtNzU3Mi00NGQ4LWE5MDktMmY2YzMzNTY=", "", None]
        ),
        "memo_type": st.sampled_from(["text", "id", "hash", "none", "return", "bogus", None]),
        "destination_account": st.sampled_from(["GDEST", "", None]),
    }


def template(
    method: str, tx: Transaction, ctx: MachineContext, data: st.DataObject
) -> dict[str, object]:
    """Params that a well-behaved business would send for `method` on `tx`."""
    deposit = tx.kind is Kind.DEPOSIT
    in_asset, out_asset = (USD, USDC) if deposit else (USDC, USD)
    fee_asset = tx.amount_fee_asset or in_asset
    pick = lambda *values: data.draw(st.sampled_from(values))  # noqa: E731
    fee = {"total": pick("0", "0.1", "1"), "asset": fee_asset}
    if method in (
        "notify_interactive_flow_completed",
        "request_offchain_funds",
        "request_onchain_funds",
    ):
        params: dict[str, object] = {
            "amount_in": {"amount": pick("1", "2.2", "100"), "asset": in_asset},
            "amount_out": {"amount": pick("0.9", "95"), "asset": out_asset},
            "fee_details": fee,
        }
        if method == "request_onchain_funds" and ctx.deposit_info_generator == "none":
            params |= {"memo": "123", "memo_type": "id", "destination_account": "GDEST"}
        return params
    if method in ("notify_offchain_funds_received", "notify_onchain_funds_received"):
        params = {"amount_in": {"amount": pick("1", "2.2", "100")}} if pick(True, False) else {}
        return params | {"stellar_transaction_id": "hash1"}
    if method == "notify_onchain_funds_sent":
        return {"stellar_transaction_id": "hash1"}
    if method == "notify_amounts_updated":
        return {"amount_out": {"amount": pick("0", "0.5")}, "fee_details": fee}
    if method in ("notify_refund_pending", "notify_refund_sent", "do_stellar_refund"):
        return {"refund": data.draw(refund_obj(tx))}
    if method in ("notify_transaction_error", "notify_transaction_expired"):
        return {"message": "failed"}
    if method == "notify_trust_set":
        return {"success": pick(True, False)}
    return {}


def draw_params(method: str, tx: Transaction, ctx: MachineContext, data: st.DataObject) -> object:
    if data.draw(st.sampled_from([False] * 19 + [True])):  # rarely not an object
        return data.draw(st.sampled_from([None, "x", [1], 3]))
    params = template(method, tx, ctx, data)
    noise = noise_fields(tx)
    for _ in range(data.draw(st.integers(0, 2))):
        key = data.draw(st.sampled_from(sorted(noise)))
        if data.draw(st.booleans()):
            params.pop(key, None)
        else:
            params[key] = data.draw(noise[key])
    return {"transaction_id": tx.id, **params}


def draw_method(tx: Transaction, data: st.DataObject) -> str:
    """Mostly a method the table allows here, so that sequences go deep."""
    allowed = sorted(
        m for m in METHODS if transitions.find(m, tx.kind, tx.status, tx.funds_received)
    )
    if allowed and data.draw(st.sampled_from([True, True, True, False])):
        return data.draw(st.sampled_from(allowed))
    return data.draw(st.sampled_from(sorted(METHODS)))


def stellar_tx(with_payments: bool) -> StellarTransaction:
    payments = [StellarPayment("1", "1.0000000", "native", "payment", "GFROM", "GTO")]
    return StellarTransaction("hash1", T0, "AAAA", payments if with_payments else [])


facts_strategy = st.builds(
    Facts,
    stellar_transaction=st.sampled_from([None, stellar_tx(True), stellar_tx(False)]),
    trustline=st.sampled_from([None, True, False]),
    deposit_info=st.sampled_from(
        [None, DepositInfo("GDIST", "42", "id"), DepositInfo("GDIST", "YWJj", "hash")]
    ),
)


@st.composite
def transactions(draw: st.DrawFn) -> Transaction:
    kind = draw(st.sampled_from(Kind))
    # Weighted towards the statuses most methods start from.
    status = draw(st.sampled_from([Status.INCOMPLETE, Status.PENDING_ANCHOR] * 3 + list(Status)))
    deposit = kind is Kind.DEPOSIT
    amount_in = draw(st.sampled_from([None, "1", "2.2", "10", "100"]))
    tx = Transaction(
        id=draw(st.sampled_from(["f7b344be-f3ed-45f0-8e5b-ad4603364a6e", "short", ""])),
        kind=kind,
        status=status,
        started_at=T0 - timedelta(days=1),
        requested_asset=draw(st.sampled_from([USDC, USD, None])),
        amount_in=amount_in,
        amount_in_asset=(USD if deposit else USDC)
        if amount_in
        else draw(st.sampled_from([None, USDC])),
        amount_out=draw(st.sampled_from([None, "0.9", "95"])),
        amount_out_asset=draw(st.sampled_from([None, USDC, USD, NATIVE])),
        amount_fee=draw(st.sampled_from([None, "0.1"])),
        amount_fee_asset=draw(st.sampled_from([None, USD, USDC])),
        quote_id=draw(st.sampled_from([None, "q"])),
        transfer_received_at=draw(st.sampled_from([None, T0 - timedelta(hours=1)])),
        user_action_required_by=draw(st.sampled_from([None, T0 + timedelta(days=1)])),
        completed_at=T0 - timedelta(hours=2) if status in FINAL_STATUSES else None,
        message=draw(st.sampled_from([None, "old message"])),
        to_account=draw(st.sampled_from([None, "GUSER"])),
        from_account=draw(st.sampled_from([None, "GUSER"])),
        memo=draw(st.sampled_from([None, "123"])),
        memo_type=draw(st.sampled_from([None, "id", "hash"])),
    )
    if amount_in and draw(st.booleans()):
        tx.refunds = Refunds("0.5", "0", [RefundPayment("r1", "external", "0.5", "0")])
    return tx


contexts = st.builds(
    lambda custody, generator, minutes: MachineContext(
        assets=ASSETS,
        custody_enabled=custody != "none",
        custody_type=custody,
        deposit_info_generator=generator,
        now=T0 + timedelta(minutes=minutes),
    ),
    st.sampled_from(["none", "stellar", "fireblocks"]),
    st.sampled_from(["none", "self", "custody"]),
    st.integers(0, 60),
)


def refund_total_within_amount_in(tx: Transaction) -> bool:
    if tx.refunds is None or not tx.refunds.payments:
        return True
    decimals = decimals_for(tx, ASSETS)
    amount_in = parse_decimal(tx.amount_in or "0") or Decimal(0)
    return refunded(tx.refunds.payments, decimals) <= rescale(amount_in, decimals)


def check_error(error: RpcError) -> None:
    assert error.code in (-32600, -32601, -32602, -32603)
    assert error.message
    for word in FORBIDDEN:
        assert word not in error.message, error.message


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(tx=transactions(), data=st.data())
def test_random_sequences_follow_the_table(tx: Transaction, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 8))):
        method = draw_method(tx, data)
        ctx = data.draw(contexts, label="context")
        params = draw_params(method, tx, ctx, data)
        found = data.draw(facts_strategy, label="facts")
        before = copy.deepcopy(tx)
        try:
            outcome = apply(validate(tx, method, params, ctx), found, ctx)
        except RpcError as error:
            check_error(error)
            assert tx == before, "a refused call changed the transaction"
            continue
        assert tx == before, "apply() changed its input"
        new = outcome.transaction
        # Only along the table: the row allowed the source, and the target is one of its own.
        assert transitions.find(method, tx.kind, tx.status, tx.funds_received) is not None
        assert new.status in transitions.possible_targets(method, tx.kind)
        assert new.updated_at == ctx.now
        assert (new.completed_at is not None) == (new.status in FINAL_STATUSES)
        if new.status in FINAL_STATUSES and tx.status not in FINAL_STATUSES:
            assert new.completed_at == ctx.now
        if method in ("notify_refund_pending", "notify_refund_sent"):
            assert refund_total_within_amount_in(new)
        if tx.funds_received:
            assert new.funds_received, "nothing clears transfer_received_at"
        transaction_result(new, ASSETS)  # always serializable
        tx = new


@settings(max_examples=300, deadline=None)
@given(tx=transactions(), method=st.sampled_from(sorted(METHODS)), ctx=contexts, data=st.data())
def test_state_check_comes_first(
    tx: Transaction, method: str, ctx: MachineContext, data: st.DataObject
) -> None:
    """Whatever the (object) params, a status the table refuses gives the state error."""
    params = draw_params(method, tx, ctx, data)
    if not isinstance(params, dict):
        return
    allowed = transitions.find(method, tx.kind, tx.status, tx.funds_received) is not None
    try:
        validate(tx, method, params, ctx)
    except RpcError as error:
        check_error(error)
        if not allowed:
            assert (error.code == -32600 and "is not supported. Status[" in error.message) or (
                error.code == -32602 and " must be " in error.message  # a JSON type error
            )
        return
    assert allowed


def test_every_method_has_rows_and_targets() -> None:
    assert len(METHODS) == 21
    for method in METHODS - {"notify_customer_info_updated"}:
        assert any(transitions.possible_targets(method, kind) for kind in Kind), method
