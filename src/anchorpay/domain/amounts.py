"""Amount parsing, formatting and the reference's amount/asset checks (spec/rpc.md §2.9, §3.13).

Money is `Decimal` everywhere, never float. Amount strings sent by the business are stored
exactly as sent; only refund totals are reformatted.

Beyond the reference's checks, an amount in a Stellar asset must be one the worker can pay:
Stellar amounts are int64 counts of stroops (10^-7 of a unit), so at most
922337203685.4775807 and at most 7 decimals (trailing zeros do not count).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_DOWN, Context, Decimal
from typing import TYPE_CHECKING

from anchorpay.domain.errors import InvalidParams

if TYPE_CHECKING:
    from anchorpay.domain.assets import AssetList
    from anchorpay.domain.transaction import Transaction

# Java's BigDecimal(String) grammar: optional sign, digits with an optional point, optional
# exponent. No whitespace, no underscores, no NaN/Infinity (Python's Decimal accepts those).
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
# Bounds that keep quantize() cheap and exact; nobody sends an amount of 1e1000.
_MAX_EXPONENT = 1000
# Enough precision that quantizing any accepted value never rounds or raises.
_CTX = Context(prec=3 * _MAX_EXPONENT, Emax=4 * _MAX_EXPONENT, Emin=-4 * _MAX_EXPONENT)

# A Stellar amount is an int64 count of stroops: 1 unit = 10^7 stroops.
STELLAR_DECIMALS = 7
STELLAR_MAX_STROOPS = 2**63 - 1
STELLAR_MAX_AMOUNT = Decimal(STELLAR_MAX_STROOPS).scaleb(-STELLAR_DECIMALS)  # 922337203685.4775807


def parse_decimal(text: str) -> Decimal | None:
    """The value of a decimal string, or None when Java's BigDecimal would refuse it."""
    if not _DECIMAL.fullmatch(text):
        return None
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # the grammar admits finite values only
    if abs(exponent) > _MAX_EXPONENT or value.adjusted() > _MAX_EXPONENT:
        return None
    return value


def plain(value: Decimal) -> str:
    """Plain notation, never scientific: Decimal("1E-7") → "0.0000001", "1E+2" → "100"."""
    text = format(value, "f")
    return "0" if text in ("-0", "+0") else text


def ledger_amount(value: Decimal) -> str:
    """An amount anchorpay read from the network, in Horizon's notation (7 decimals:
    "10.0000000"), whichever road it came by (Horizon or a Fireblocks transfer), so the same
    payment reads the same everywhere. A value with more decimals than Stellar has is left
    as it is rather than rounded."""
    if rescale(value, STELLAR_DECIMALS) != value:
        return plain(value)
    return plain(rescale(value, STELLAR_DECIMALS))


def number_to_string(value: object) -> str | None:
    """A JSON amount as the exact string to store: strings verbatim, numbers in plain notation
    without float artefacts. None when the value is neither a string nor a number."""
    if isinstance(value, bool):  # bool is an int subclass: a boolean is not an amount
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        # Only values parse_decimal accepts are expanded: a JSON number such as 1e999999999
        # stays in scientific notation (and is then refused) instead of becoming a gigabyte.
        return plain(value) if parse_decimal(str(value)) is not None else str(value)
    if isinstance(value, float):
        # Only reached if a caller decoded JSON without parse_float=Decimal: repr is the
        # shortest string that round-trips, so 10.1 stays "10.1".
        return plain(Decimal(repr(value)))
    return None


def rescale(value: Decimal, decimals: int | None) -> Decimal:
    """`value.setScale(decimals, HALF_DOWN)`, or the value itself when no decimals apply."""
    if decimals is None:
        return value
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_DOWN, context=_CTX)


def total(*values: Decimal) -> Decimal:
    """An exact sum (the default context would round past 28 digits)."""
    result = Decimal(0)
    for value in values:
        result = _CTX.add(result, value)
    return result


def format_total(value: Decimal) -> str:
    """Refund totals: at most 4 fraction digits (HALF_DOWN), no trailing zeros, no grouping:
    1.10 → "1.1", 0 → "0" (spec §3.13)."""
    rounded = rescale(value, 4).normalize(context=_CTX)
    return plain(rounded)


def stellar_amount_problem(field: str, value: Decimal) -> str | None:
    """Why a Stellar payment cannot carry the finite, non-negative `value` of `<field>.amount`,
    or None when it can: above the int64 stroop maximum, or more than 7 decimals once
    trailing zeros are dropped ("1.50000000" is 1.5 and fine, "0.00000001" is not)."""
    if value > STELLAR_MAX_AMOUNT:
        return (
            f"{field}.amount exceeds the largest amount Stellar can hold "
            f"({plain(STELLAR_MAX_AMOUNT)})"
        )
    # Exact: the value has at most 12 integer digits here and _CTX quantizes without rounding.
    if rescale(value, STELLAR_DECIMALS) != value:
        return (
            f"{field}.amount has more than {STELLAR_DECIMALS} decimals, more than Stellar can hold"
        )
    return None


def validate_asset_amount(
    field: str, amount: str | None, asset: str | None, allow_zero: bool, assets: AssetList
) -> Decimal:
    """`AssetValidationUtils.validateAssetAmount` (spec §2.9), checks in the reference's order,
    then anchorpay's own: an amount in a Stellar asset must fit a Stellar payment (int64
    stroops). NaN and Infinity never get here: parse_decimal refuses them. Returns the parsed
    amount."""
    if amount is None or amount == "":
        raise InvalidParams(f"{field}.amount cannot be empty")
    value = parse_decimal(amount)
    if value is None:
        raise InvalidParams(f"{field}.amount is invalid")
    if allow_zero and value < 0:
        raise InvalidParams(f"{field}.amount should be non-negative")
    if not allow_zero and value <= 0:
        raise InvalidParams(f"{field}.amount should be positive")
    if asset is None or asset == "":
        raise InvalidParams(f"{field}.asset cannot be empty")
    configured = assets.get(asset)
    if configured is None:
        raise InvalidParams(f"'{asset}' is not a supported asset.")
    decimals = configured.significant_decimals
    if decimals is not None and rescale(value, decimals) != value:
        raise InvalidParams(f"'{amount}' has invalid significant decimals. Expected: '{decimals}'")
    if configured.is_stellar:
        problem = stellar_amount_problem(field, value)
        if problem is not None:
            raise InvalidParams(problem)
    return value


@dataclass(frozen=True, slots=True)
class DetailInput:
    """One `fee_details.details[]` entry as sent (`amount` checked by validate_fee_details)."""

    name: str | None
    amount: str | None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class FeeInput:
    """A decoded fee: 3.x `fee_details {total, asset, details}` or 2.x `amount_fee {amount,
    asset}`. `field` is the key the client used, so messages name what it sent."""

    total: str | None
    asset: str | None
    details: tuple[DetailInput, ...] | None = None
    field: str = "fee_details"


def validate_fee_details(fee: FeeInput, tx: Transaction, assets: AssetList) -> None:
    """`AssetValidationUtils.validateFeeDetails` (spec §2.9)."""
    fee_total = validate_asset_amount(fee.field, fee.total, fee.asset, True, assets)
    if tx.amount_fee_asset is not None and fee.asset != tx.amount_fee_asset:
        raise InvalidParams(
            f"{fee.field}.asset is different from expected database asset ({tx.amount_fee_asset})"
        )
    if fee.details is not None:
        # The reference throws NPE/NumberFormatException (-32603) here; we name the field.
        parsed: list[Decimal] = []
        for index, detail in enumerate(fee.details):
            where = f"{fee.field}.details[{index}]"
            if not detail.name:
                raise InvalidParams(f"{where}.name is required")
            if detail.amount is None or detail.amount == "":
                raise InvalidParams(f"{where}.amount is required")
            value = parse_decimal(detail.amount)
            if value is None:
                raise InvalidParams(f"{where}.amount is invalid")
            parsed.append(value)
        if total(*parsed) != fee_total:
            raise InvalidParams(
                f"{fee.field}.total is not equal to the sum of ({fee.field}.details.amount)"
            )
