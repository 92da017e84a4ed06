"""Amount parsing, formatting and validation (spec/rpc.md §2.9, §3.13), memos (§3.3) and
instants (§1.8, §5.2)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anchorpay.domain.amounts import (
    DetailInput,
    FeeInput,
    format_total,
    number_to_string,
    parse_decimal,
    plain,
    rescale,
    validate_asset_amount,
    validate_fee_details,
)
from anchorpay.domain.assets import Asset, AssetList
from anchorpay.domain.errors import InvalidParams
from anchorpay.domain.memo import decode_hash, parse_memo, self_memo
from anchorpay.domain.params import decode, parse_instant
from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.rpc.result import instant

USDC = "stellar:USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"
USD = "iso4217:USD"
ASSETS = AssetList(
    (
        Asset(id=USDC, significant_decimals=2),
        Asset(id=USD, significant_decimals=2),
        Asset(id="stellar:native"),  # no decimals configured: no decimals check
    )
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("10.10", "10.10"),
        (Decimal("10.10"), "10.10"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("1E+2"), "100"),
        (Decimal("-0"), "0"),
        (95, "95"),
        (0, "0"),
        (10.1, "10.1"),  # a float only if a caller skipped parse_float=Decimal
        (1e-7, "0.0000001"),
        ("1e2", "1e2"),  # strings are kept exactly as sent
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_number_to_string(value: object, text: str | None) -> None:
    assert number_to_string(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("-1.50", Decimal("-1.50")),
        ("+2", Decimal(2)),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("1e2", Decimal(100)),
        ("1E-7", Decimal("1E-7")),
        ("abc", None),
        ("", None),
        (" 1", None),  # Java's BigDecimal refuses whitespace
        ("1_000", None),
        ("NaN", None),
        ("Infinity", None),
        ("1e5000", None),
        ("0x10", None),
    ],
)
def test_parse_decimal(text: str, value: Decimal | None) -> None:
    assert parse_decimal(text) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1.1"), "1.1"),
        (Decimal("2.20"), "2.2"),
        (Decimal("0"), "0"),
        (Decimal("0.00"), "0"),
        (Decimal("100"), "100"),
        (Decimal("1E+3"), "1000"),
        (Decimal("990.11"), "990.11"),
        (Decimal("1.23456"), "1.2346"),
        (Decimal("1.00005"), "1"),  # HALF_DOWN: a tie goes down
        (Decimal("1.000051"), "1.0001"),
        (Decimal("0.00001"), "0"),
    ],
)
def test_format_total(value: Decimal, text: str) -> None:
    assert format_total(value) == text


def test_rescale_half_down() -> None:
    assert rescale(Decimal("1.005"), 2) == Decimal("1.00")
    assert rescale(Decimal("1.0051"), 2) == Decimal("1.01")
    assert rescale(Decimal("7"), None) == Decimal("7")
    assert plain(rescale(Decimal("1"), 7)) == "1.0000000"


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=7, min_value=-(10**12), max_value=10**12
    )
)
def test_plain_round_trips(value: Decimal) -> None:
    text = plain(value)
    assert "E" not in text and "e" not in text
    assert parse_decimal(text) == value


@pytest.mark.parametrize(
    ("amount", "asset", "allow_zero", "message"),
    [
        (None, USD, False, "amount_in.amount cannot be empty"),
        ("", USD, False, "amount_in.amount cannot be empty"),
        ("abc", USD, False, "amount_in.amount is invalid"),
        ("0", USD, False, "amount_in.amount should be positive"),
        ("-1", USD, False, "amount_in.amount should be positive"),
        ("-0.01", USD, True, "amount_in.amount should be non-negative"),
        ("1", None, False, "amount_in.asset cannot be empty"),
        ("1", "", False, "amount_in.asset cannot be empty"),
        ("1", "iso111:III", False, "'iso111:III' is not a supported asset."),
        ("1.001", USD, False, "'1.001' has invalid significant decimals. Expected: '2'"),
        ("1.005", USD, False, "'1.005' has invalid significant decimals. Expected: '2'"),
    ],
)
def test_validate_asset_amount_errors(
    amount: str | None, asset: str | None, allow_zero: bool, message: str
) -> None:
    with pytest.raises(InvalidParams) as raised:
        validate_asset_amount("amount_in", amount, asset, allow_zero, ASSETS)
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("amount", "asset", "allow_zero"),
    [
        ("0", USD, True),
        ("1.000", USD, False),  # the value does not change at 2 decimals
        ("1e2", USD, False),
        ("0.0000001", "stellar:native", False),
    ],
)
def test_validate_asset_amount_accepts(amount: str, asset: str, allow_zero: bool) -> None:
    assert validate_asset_amount("f", amount, asset, allow_zero, ASSETS) == Decimal(amount)


def _tx(fee_asset: str | None = None) -> Transaction:
    return Transaction(
        id="t",
        kind=Kind.DEPOSIT,
        status=Status.INCOMPLETE,
        started_at=datetime(2024, 1, 1, tzinfo=UTC),
        amount_fee_asset=fee_asset,
    )


@pytest.mark.parametrize(
    ("fee", "stored", "message"),
    [
        (FeeInput(None, USD), None, "fee_details.amount cannot be empty"),
        (FeeInput("-1", USD), None, "fee_details.amount should be non-negative"),
        (FeeInput("-1", USD, field="amount_fee"), None, "amount_fee.amount should be non-negative"),
        (
            FeeInput("1", USDC),
            USD,
            "fee_details.asset is different from expected database asset (iso4217:USD)",
        ),
        (
            FeeInput("1", USD, (DetailInput("a", "0.5"),)),
            None,
            "fee_details.total is not equal to the sum of (fee_details.details.amount)",
        ),
        (
            FeeInput("1", USD, (DetailInput("a", None),)),
            None,
            "fee_details.details[0].amount is required",
        ),
        (
            FeeInput("1", USD, (DetailInput("a", "1"), DetailInput("b", "x"))),
            None,
            "fee_details.details[1].amount is invalid",
        ),
        (
            FeeInput("1", USD, (DetailInput(None, "1"),)),
            None,
            "fee_details.details[0].name is required",
        ),
    ],
)
def test_validate_fee_details_errors(fee: FeeInput, stored: str | None, message: str) -> None:
    with pytest.raises(InvalidParams) as raised:
        validate_fee_details(fee, _tx(stored), ASSETS)
    assert raised.value.message == message


def test_validate_fee_details_accepts_details_that_add_up() -> None:
    fee = FeeInput("1.00", USD, (DetailInput("a", "0.25"), DetailInput("b", "0.75", "desc")))
    validate_fee_details(fee, _tx(USD), ASSETS)
    validate_fee_details(FeeInput("0", USD, ()), _tx(), ASSETS)  # no details: sum 0


@pytest.mark.parametrize(
    ("memo", "memo_type", "result"),
    [
        (None, "text", None),
        ("", "hash", None),
        ("testMemo", "text", "text"),
        ("x" * 28, "text", "text"),
        ("é" * 14, "text", "text"),  # 28 bytes
        ("18446744073709551615", "id", "id"),
        ("0", "id", "id"),
        ("YWYwOTk2M2QtNzU3Mi00NGQ4LWE5MDktMmY2YzMzNTY=", "hash", "hash"),
        ("YWYwOTk2M2QtNzU3Mi00NGQ4LWE5MDktMmY2YzMzNTY", "hash", "hash"),  # padding optional
    ],
)
def test_parse_memo_accepts(memo: str | None, memo_type: str, result: str | None) -> None:
    assert parse_memo(memo, memo_type) == result


@pytest.mark.parametrize(
    ("memo", "memo_type", "reason"),
    [
        ("m", None, "memo_type is required if memo is specified"),
        ("m", "bogus", "Invalid memo type: bogus"),
        ("m", "TEXT", "Invalid memo type: TEXT"),
        ("m", "return", "Unsupported value: return"),
        ("m", "none", "memo must be empty when memoType is none"),
        ("abc", "id", "Invalid memo abc of type:MEMO_ID"),
        ("-1", "id", "Invalid memo -1 of type:MEMO_ID"),
        ("18446744073709551616", "id", "Invalid memo 18446744073709551616 of type:MEMO_ID"),
        ("x" * 29, "text", "text memo must be at most 28 bytes of UTF-8, got 29"),
        ("é" * 15, "text", "text memo must be at most 28 bytes of UTF-8, got 30"),
        ("not base64!", "hash", "hash memo must be the base64 encoding of exactly 32 bytes"),
        ("YWJj", "hash", "hash memo must be the base64 encoding of exactly 32 bytes"),
    ],
)
def test_parse_memo_refuses(memo: str, memo_type: str | None, reason: str) -> None:
    with pytest.raises(InvalidParams) as raised:
        parse_memo(memo, memo_type)
    assert raised.value.message == "Invalid memo or memo_type: " + reason


def test_self_memo_is_the_reference_hash() -> None:
    memo = self_memo("f7b344be-f3ed-45f0-8e5b-ad4603364a6e")
    assert memo == "ZjdiMzQ0YmUtZjNlZC00NWYwLThlNWItYWQ0NjAzMzY="
    assert decode_hash(self_memo("short")) == b"0" * 27 + b"short"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2023-07-04T12:34:56Z", datetime(2023, 7, 4, 12, 34, 56, tzinfo=UTC)),
        ("2023-07-04T12:34:56.123456789Z", datetime(2023, 7, 4, 12, 34, 56, 123456, tzinfo=UTC)),
        ("2023-07-04T12:34:56+01:00", datetime(2023, 7, 4, 11, 34, 56, tzinfo=UTC)),
        ("2023-07-04T12:34Z", datetime(2023, 7, 4, 12, 34, tzinfo=UTC)),
        ("2024-01-01", None),
        ("2024-02-30T00:00:00Z", None),
        ("2024-01-01T00:00:00", None),
        ("yesterday", None),
    ],
)
def test_parse_instant(text: str, value: datetime | None) -> None:
    assert parse_instant(text) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2024, 6, 25, 20, 18, 34, 205694, tzinfo=UTC), "2024-06-25T20:18:34.205694Z"),
        (datetime(2024, 6, 25, 20, 18, 34, 200000, tzinfo=UTC), "2024-06-25T20:18:34.200Z"),
        (datetime(2024, 6, 25, 20, 18, 34, tzinfo=UTC), "2024-06-25T20:18:34Z"),
        (datetime(2024, 6, 25, 20, 18, 34), "2024-06-25T20:18:34Z"),  # naive = UTC
    ],
)
def test_instant_format(value: datetime, text: str) -> None:
    assert instant(value) == text


def test_decode_reads_numbers_without_float_artefacts() -> None:
    params = decode(
        "request_offchain_funds",
        {
            "amount_in": {"amount": Decimal("10.10"), "asset": USD},
            "amount_out": {"amount": 95, "asset": USDC},
            "fee_details": {
                "total": Decimal("1E-7"),
                "asset": USD,
                "details": [{"name": "n", "amount": Decimal("1E-7")}],
            },
            "unknown_key": {"ignored": True},
        },
    )
    assert params.amount_in is not None and params.amount_in.amount == "10.10"
    assert params.amount_out is not None and params.amount_out.amount == "95"
    assert params.fee is not None and params.fee.total == "0.0000001"
    assert params.fee.details == (DetailInput("n", "0.0000001", None),)


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("notify_trust_set", [], "params must be an object"),
        ("notify_trust_set", None, "params must be an object"),
        ("notify_trust_set", {"success": 1}, "success must be a boolean"),
        ("notify_refund_sent", {"refund": []}, "refund must be an object"),
        ("notify_refund_sent", {"refund": {"id": {}}}, "refund.id must be a string"),
        (
            "notify_refund_sent",
            {"refund": {"amount": {"amount": False}}},
            "refund.amount.amount must be a string or a number",
        ),
        (
            "request_offchain_funds",
            {"fee_details": {"details": {}}},
            "fee_details.details must be a list",
        ),
        (
            "request_offchain_funds",
            {"fee_details": {"details": [1]}},
            "fee_details.details[0] must be an object",
        ),
        (
            "request_offchain_funds",
            {"fee_details": {"asset": 1}},
            "fee_details.asset must be a string",
        ),
        ("request_onchain_funds", {"memo_type": 1}, "memo_type must be a string"),
        (
            "notify_offchain_funds_sent",
            {"funds_sent_at": 5},
            "funds_sent_at must be an ISO-8601 instant such as 2024-01-01T00:00:00Z",
        ),
    ],
)
def test_decode_names_the_field(method: str, params: object, message: str) -> None:
    with pytest.raises(InvalidParams) as raised:
        decode(method, params)
    assert raised.value.message == message


def test_decode_ignores_keys_the_method_does_not_read() -> None:
    # notify_offchain_funds_received has no user_action_required_by: a bad one is ignored.
    params = decode("notify_offchain_funds_received", {"user_action_required_by": "bad", "memo": 1})
    assert params.user_action_required_by is None and params.memo is None
    assert decode("notify_trust_set", {}).success is False
    assert decode("notify_refund_sent", {"refund": {"id": 7}}).refund.id == "7"  # type: ignore[union-attr]
