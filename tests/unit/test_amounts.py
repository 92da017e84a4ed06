"""Amount parsing, formatting and validation (spec/rpc.md §2.9, §3.13), memos (§3.3) and
instants (§1.8, §5.2)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stellar_sdk.utils import to_xdr_amount

from anchorpay.adapters.stellar_signer import stellar_amount
from anchorpay.domain.amounts import (
    STELLAR_MAX_AMOUNT,
    STELLAR_MAX_STROOPS,
    DetailInput,
    FeeInput,
    format_total,
    ledger_amount,
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
from anchorpay.domain.params import AmountInput, RefundInput, decode, parse_instant
from anchorpay.domain.refunds import check_refund
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


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("5"), "5.0000000"),
        (Decimal("9.5"), "9.5000000"),
        (Decimal("10.0000000"), "10.0000000"),
        (Decimal("0.0000001"), "0.0000001"),
        (Decimal("1E+2"), "100.0000000"),
        (Decimal("922337203685.4775807"), "922337203685.4775807"),
        (Decimal("0.00000001"), "0.00000001"),  # not a Stellar amount: never rounded away
    ],
)
def test_ledger_amount_is_horizon_s_notation(value: Decimal, text: str) -> None:
    assert ledger_amount(value) == text


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


# Stellar's limits (issue 13 part 5): after the reference's checks, an amount in a Stellar
# asset must fit an int64 count of stroops: at most 922337203685.4775807, at most 7 decimals.
NATIVE = "stellar:native"  # no significant_decimals configured: only Stellar's own limit
USDC7 = "stellar:USDC7:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"
STELLAR_ASSETS = AssetList((*ASSETS.assets, Asset(id=USDC7, significant_decimals=7)))
TOO_LARGE = "amount_in.amount exceeds the largest amount Stellar can hold (922337203685.4775807)"
TOO_PRECISE = "amount_in.amount has more than 7 decimals, more than Stellar can hold"


def test_stellar_max_is_int64_stroops() -> None:
    assert STELLAR_MAX_STROOPS == 9223372036854775807
    assert STELLAR_MAX_AMOUNT == Decimal("922337203685.4775807")
    assert to_xdr_amount(plain(STELLAR_MAX_AMOUNT)) == STELLAR_MAX_STROOPS


@pytest.mark.parametrize(
    ("amount", "asset", "allow_zero", "message"),
    [
        ("922337203685.4775808", NATIVE, False, TOO_LARGE),
        ("922337203685.4775808", USDC7, False, TOO_LARGE),
        (
            "922337203685.47758071",
            USDC7,
            True,
            "'922337203685.47758071' has invalid significant decimals. Expected: '7'",
        ),  # the reference's check comes first
        ("922337203686", NATIVE, True, TOO_LARGE),
        ("9223372036854775807", NATIVE, False, TOO_LARGE),  # stroops sent as units
        ("1e400", NATIVE, False, TOO_LARGE),
        ("1E+12", USDC, False, TOO_LARGE),  # 2 decimals configured: an integer passes them
        ("922337203685.48", USDC, False, TOO_LARGE),
        ("0.00000001", NATIVE, False, TOO_PRECISE),
        ("0.000000010", NATIVE, True, TOO_PRECISE),
        ("1.00000001", NATIVE, False, TOO_PRECISE),
        ("1E-8", NATIVE, False, TOO_PRECISE),
        ("922337203685.47758065", NATIVE, False, TOO_PRECISE),  # below the max, 8 decimals
        (
            "0.00000001",
            USDC7,
            False,
            "'0.00000001' has invalid significant decimals. Expected: '7'",
        ),
        ("0.001", USDC, False, "'0.001' has invalid significant decimals. Expected: '2'"),
        # NaN and Infinity are not amounts (parse_decimal refuses them), Stellar or not.
        ("NaN", NATIVE, False, "amount_in.amount is invalid"),
        ("nan", NATIVE, True, "amount_in.amount is invalid"),
        ("sNaN", NATIVE, False, "amount_in.amount is invalid"),
        ("Infinity", NATIVE, False, "amount_in.amount is invalid"),
        ("-Infinity", NATIVE, True, "amount_in.amount is invalid"),
        ("inf", USD, False, "amount_in.amount is invalid"),
        ("1e5000", NATIVE, False, "amount_in.amount is invalid"),  # beyond parse_decimal's bounds
    ],
)
def test_stellar_amount_limits(amount: str, asset: str, allow_zero: bool, message: str) -> None:
    with pytest.raises(InvalidParams) as raised:
        validate_asset_amount("amount_in", amount, asset, allow_zero, STELLAR_ASSETS)
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("amount", "asset", "allow_zero"),
    [
        ("922337203685.4775807", NATIVE, False),  # exactly the maximum
        ("922337203685.4775807", USDC7, False),
        ("922337203685.47758070000", NATIVE, False),  # trailing zeros are not decimals
        ("922337203685.47", USDC, False),
        ("1.50000000", NATIVE, False),  # 1.5
        ("1.50000000000000000000", USDC7, False),  # 1.5: the reference compares values too
        ("0.0000001", USDC7, False),
        ("1E-7", NATIVE, False),
        ("100E-9", NATIVE, False),  # 0.0000001
        ("0", NATIVE, True),  # zero stays allowed where the method allows it
        ("0.000000000", NATIVE, True),
        ("1e400", USD, False),  # not a Stellar asset: the reference's checks only
    ],
)
def test_stellar_amount_limits_accept(amount: str, asset: str, allow_zero: bool) -> None:
    value = validate_asset_amount("amount_in", amount, asset, allow_zero, STELLAR_ASSETS)
    assert value == Decimal(amount)


def test_a_json_number_too_large_to_expand_stays_short() -> None:
    # parse_float=Decimal gives Decimal("1E+999999999"): never expanded to a billion digits.
    assert number_to_string(Decimal("1E+999999999")) == "1E+999999999"
    assert number_to_string(Decimal("1E-999999999")) == "1E-999999999"
    assert number_to_string(Decimal("NaN")) == "NaN"
    params = decode(
        "request_onchain_funds", {"amount_in": {"amount": Decimal("1E+999999999"), "asset": NATIVE}}
    )
    assert params.amount_in is not None and params.amount_in.amount is not None
    with pytest.raises(InvalidParams) as raised:
        validate_asset_amount("amount_in", params.amount_in.amount, NATIVE, False, STELLAR_ASSETS)
    assert raised.value.message == "amount_in.amount is invalid"
    big = decode("request_onchain_funds", {"amount_in": {"amount": Decimal("1E+400")}})
    assert big.amount_in is not None and big.amount_in.amount == "1" + "0" * 400
    with pytest.raises(InvalidParams) as raised:
        validate_asset_amount("amount_in", big.amount_in.amount, NATIVE, False, STELLAR_ASSETS)
    assert raised.value.message == TOO_LARGE


@pytest.mark.parametrize("field", ["fee_details", "amount_fee"])
def test_stellar_fees_have_stellar_limits(field: str) -> None:
    tx = _tx()
    too_large = FeeInput("922337203685.4775808", NATIVE, field=field)
    with pytest.raises(InvalidParams) as raised:
        validate_fee_details(too_large, tx, STELLAR_ASSETS)
    assert raised.value.message == (
        f"{field}.amount exceeds the largest amount Stellar can hold (922337203685.4775807)"
    )
    too_precise = FeeInput("0.00000001", NATIVE, (DetailInput("a", "0.00000001"),), field)
    with pytest.raises(InvalidParams) as raised:
        validate_fee_details(too_precise, tx, STELLAR_ASSETS)
    assert (
        raised.value.message
        == f"{field}.amount has more than 7 decimals, more than Stellar can hold"
    )
    validate_fee_details(FeeInput("0", NATIVE, field=field), tx, STELLAR_ASSETS)  # zero is a fee
    validate_fee_details(FeeInput("1e400", USD, field=field), tx, STELLAR_ASSETS)  # off-chain


@pytest.mark.parametrize(
    ("amount", "fee", "message"),
    [
        (
            "922337203685.4775808",
            "0",
            "refund.amount.amount exceeds the largest amount Stellar can hold "
            "(922337203685.4775807)",
        ),
        (
            "1.00000001",
            "0",
            "refund.amount.amount has more than 7 decimals, more than Stellar can hold",
        ),
        (
            "1",
            "1e400",
            "refund.amountFee.amount exceeds the largest amount Stellar can hold "
            "(922337203685.4775807)",
        ),
        (
            "1",
            "0.00000001",
            "refund.amountFee.amount has more than 7 decimals, more than Stellar can hold",
        ),
    ],
)
def test_refunds_in_a_stellar_asset_have_stellar_limits(
    amount: str, fee: str, message: str
) -> None:
    # A withdrawal's refund is in amount_in_asset, a Stellar asset.
    tx = Transaction(
        id="t",
        kind=Kind.WITHDRAWAL,
        status=Status.PENDING_ANCHOR,
        started_at=datetime(2024, 1, 1, tzinfo=UTC),
        amount_in="10",
        amount_in_asset=NATIVE,
        amount_fee_asset=NATIVE,
    )
    refund = RefundInput("r", AmountInput(amount, NATIVE), AmountInput(fee, NATIVE))
    with pytest.raises(InvalidParams) as raised:
        check_refund(refund, tx, STELLAR_ASSETS)
    assert raised.value.message == message
    check_refund(
        RefundInput("r", AmountInput("1.50000000", NATIVE), AmountInput("0", NATIVE)),
        tx,
        STELLAR_ASSETS,
    )


_AMOUNTS = st.one_of(
    # coefficient x 10^exponent: up to 20 digits (to_xdr_amount multiplies at 28 digits)
    st.builds(lambda c, e: Decimal(c).scaleb(e), st.integers(0, 10**20 - 1), st.integers(-14, 12)),
    st.integers(0, STELLAR_MAX_STROOPS + 10**6).map(lambda n: Decimal(n).scaleb(-7)),
    st.sampled_from([STELLAR_MAX_AMOUNT, STELLAR_MAX_AMOUNT + Decimal("1E-7"), Decimal("1E-8")]),
)


@given(_AMOUNTS, st.integers(0, 6), st.booleans())
def test_a_valid_stellar_amount_is_an_exact_int64_stroop_count(
    value: Decimal, trailing_zeros: int, scientific: bool
) -> None:
    """What validate_asset_amount accepts for a Stellar asset is exactly what the SDK encodes
    as int64 stroops, with no rounding; and the signer pays that very amount."""
    text = str(value) if scientific else plain(value)
    if trailing_zeros and "E" not in text:
        text += ("" if "." in text else ".") + "0" * trailing_zeros
    try:
        accepted = validate_asset_amount("a", text, NATIVE, True, STELLAR_ASSETS)
    except InvalidParams as exc:
        accepted = None
        assert exc.message in (
            "a.amount exceeds the largest amount Stellar can hold (922337203685.4775807)",
            "a.amount has more than 7 decimals, more than Stellar can hold",
        )
    try:
        stroops: int | None = to_xdr_amount(text)
    except ValueError:
        stroops = None
    assert (accepted is not None) == (stroops is not None)  # the same amounts, no more, no less
    if accepted is None or stroops is None:
        return
    assert 0 <= stroops <= STELLAR_MAX_STROOPS
    assert Decimal(stroops).scaleb(-7) == value  # exact
    if value > 0:
        assert to_xdr_amount(stellar_amount(text)) == stroops  # what the worker pays


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
