"""The typed client's pure parts: the params each builder sends, amounts and instants on
the wire, reading batch answers, the retry rule, and the blocking client kept in step with
the async one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import jwt
import pytest

from anchorpay.client import _unasync, _wire, calls
from anchorpay.client.auth import ApiKey, Jwt
from anchorpay.client.calls import AssetAmount, Fee, FeeItem, Refund
from anchorpay.client.errors import HttpError, RpcError, TransportError

USDC = "stellar:USDC:GISSUER"


def test_builders_send_exactly_the_reference_params() -> None:
    call = calls.request_offchain_funds(
        "t1",
        amount_in=AssetAmount(Decimal("10.50"), "iso4217:USD"),
        amount_out=AssetAmount(Decimal("1E+1"), USDC),
        fee=Fee("0.5", "iso4217:USD"),
        user_action_required_by=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1))),
        message="go",
    )
    assert (call.method, call.idempotent) == ("request_offchain_funds", False)
    assert call.params == {
        "transaction_id": "t1",
        "message": "go",
        "amount_in": {"amount": "10.50", "asset": "iso4217:USD"},
        "amount_out": {"amount": "10", "asset": USDC},
        "amount_fee": {"amount": "0.5", "asset": "iso4217:USD"},
        "user_action_required_by": "2026-01-02T02:04:05Z",
    }
    detailed = calls.notify_amounts_updated(
        "t1", amount_out=9, fee=Fee("1", USDC, (FeeItem("service", "1", "ours"),))
    )
    assert detailed.params == {
        "transaction_id": "t1",
        "amount_out": {"amount": "9"},
        "fee_details": {
            "total": "1",
            "asset": USDC,
            "details": [{"name": "service", "amount": "1", "description": "ours"}],
        },
    }
    refund = calls.notify_refund_sent("t1", refund=Refund("9", "1", USDC, id="h1"))
    assert refund.params["refund"] == {
        "amount": {"amount": "9", "asset": USDC},
        "amount_fee": {"amount": "1", "asset": USDC},
        "id": "h1",
    }
    assert calls.notify_trust_set("t1").params == {"transaction_id": "t1", "success": True}
    listing = calls.get_transactions(statuses=["completed"])
    assert (listing.idempotent, listing.params) == (
        True,
        {
            "sep": "24",
            "order_by": "CREATED_AT",
            "order": "ASC",
            "page_number": 0,
            "page_size": 20,
            "statuses": ["completed"],
        },
    )


def test_bad_values_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="the ledger hash becomes it"):
        calls.do_stellar_refund("t1", refund=Refund("1", "0", USDC, id="x"))
    with pytest.raises(ValueError, match="timezone-aware"):
        calls.request_trust("t1", user_action_required_by=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="finite"):
        calls.money(Decimal("NaN"))
    with pytest.raises(TypeError, match="an amount must be"):
        calls.money(1.5)  # type: ignore[arg-type]  # a float is not money


def test_answers_are_matched_by_id_and_errors_kept_per_call() -> None:
    queued = [calls.get_transaction("a"), calls.do_stellar_payment("b"), calls.get_quote("q")]
    answer = [
        {
            "jsonrpc": "2.0",
            "result": {"id": "a", "sep": "24", "kind": "deposit", "status": "completed"},
            "id": 7,
        },
        {"jsonrpc": "2.0", "error": {"id": "b", "code": -32600, "message": "no"}, "id": 8},
    ]
    first, second, third = _wire.outcomes(queued, 7, answer)
    assert first.get().status == "completed"
    assert isinstance(second.error, RpcError)
    assert (second.error.code, second.error.message, second.error.transaction_id) == (
        -32600,
        "no",
        "b",
    )
    assert isinstance(third.error, TransportError)
    # A refused batch (the size limit) answers one element without an id: every call has it.
    limit = [
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "RPC batch size limit[40] exceeded"},
        }
    ]
    both = _wire.outcomes(queued[:2], 1, limit)
    assert [str(o.error) for o in both] == ["-32600: RPC batch size limit[40] exceeded"] * 2


def test_http_refusals_keep_the_server_sentence() -> None:
    response = httpx.Response(
        503, json={"error": "temporarily unavailable, retry"}, headers={"Retry-After": "2"}
    )
    error = _wire.refusal(response)
    assert (error.status, error.message, error.retry_after) == (
        503,
        "temporarily unavailable, retry",
        "2",
    )
    assert _wire.delay(error, 0, 0.1) == 2.0
    assert _wire.delay(HttpError(503, "x", "3600"), 0, 0.1) == _wire.RETRY_AFTER_CAP_S
    assert _wire.delay(TransportError("x"), 3, 0.1) == pytest.approx(0.8)


def test_the_retry_rule() -> None:
    request = httpx.Request("POST", "http://x/")
    refused = httpx.ConnectError("refused", request=request)
    lost = httpx.ReadTimeout("lost", request=request)
    assert _wire.retryable(refused, idempotent=False)  # nothing was sent
    assert not _wire.retryable(lost, idempotent=False)  # it may have been applied
    assert _wire.retryable(lost, idempotent=True)
    assert _wire.retryable(HttpError(503, "busy"), idempotent=True)
    assert not _wire.retryable(HttpError(503, "busy"), idempotent=False)
    assert not _wire.retryable(HttpError(400, "bad"), idempotent=True)


def test_jwt_tokens_are_short_lived_and_signed_with_the_secret() -> None:
    secret = "s" * 32
    header = Jwt(secret).headers()["Authorization"]
    scheme, token = header.split(" ")
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    assert scheme == "Bearer" and claims["exp"] - claims["iat"] == 30
    assert abs(claims["iat"] - datetime.now(UTC).timestamp()) < 5
    assert ApiKey(secret, header="X-Key").headers() == {"X-Key": secret}
    assert secret not in repr(ApiKey(secret)) + repr(Jwt(secret))


def test_the_blocking_client_is_written_from_the_async_one() -> None:
    here = Path(_unasync.__file__).parent
    expected = _unasync.unasync((here / "_async.py").read_text())
    assert (here / "_sync.py").read_text() == expected, (
        "run `python -m anchorpay.client._unasync` after editing _async.py"
    )


def test_methods_sharing_params_send_their_own_name() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    trust = calls.request_trust("t1", user_action_required_by=moment)
    assert (trust.method, trust.params) == (
        "request_trust",
        {"transaction_id": "t1", "user_action_required_by": "2026-01-01T00:00:00Z"},
    )
    for build, name in (
        (calls.notify_transaction_expired, "notify_transaction_expired"),
        (calls.notify_transaction_recovery, "notify_transaction_recovery"),
        (calls.notify_customer_info_updated, "notify_customer_info_updated"),
    ):
        call = build("t1", message="m")
        assert (call.method, call.params) == (name, {"transaction_id": "t1", "message": "m"})
    asked = calls.request_offchain_funds("t1", amount_expected=5)
    assert (asked.method, asked.params["amount_expected"]) == (
        "request_offchain_funds",
        {"amount": "5"},
    )
    assert calls.notify_offchain_funds_available("t1").method == "notify_offchain_funds_available"
