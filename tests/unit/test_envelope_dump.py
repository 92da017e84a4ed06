"""The envelope's JSON writer (`rpc.envelope.dump`): compact, UTF-8 as is, a Decimal written
as a number with its exact digits wherever it sits, a lone surrogate as its escape, and a
value JSON cannot hold refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anchorpay.rpc.envelope import dump


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1, "1"),
        ("é", '"é"'),
        (Decimal("1.50"), "1.50"),
        (Decimal("1E+2"), "1E+2"),
        (Decimal("-0.000"), "-0.000"),
        ({"a": [Decimal("3.14"), ("t", 1)], "b": None}, '{"a":[3.14,["t",1]],"b":null}'),
        (
            {"k": "abc:0", "big": 10**30, "f": 1.5},
            '{"k":"abc:0","big":1000000000000000000000000000000,"f":1.5}',
        ),
        (["\ud800x", "\udfff"], '["\\ud800x","\\udfff"]'),
        (['\x00\n"\\'], '["\\u0000\\n\\"\\\\"]'),
        ({1: True}, '{"1":true}'),
    ],
)
def test_exact_text(value: Any, text: str) -> None:
    assert dump(value) == text


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (Decimal("NaN"), ValueError),
        ({"x": [Decimal("-Infinity")]}, ValueError),
        (float("inf"), ValueError),
        (object(), TypeError),
    ],
)
def test_what_json_cannot_hold_is_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        dump(value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_reads_back_as_the_same_value_with_every_digit(value: Any) -> None:
    text = dump(value)
    # what json.loads reads back: a lone surrogate escaped is the same surrogate again
    assert json.loads(text, parse_float=Decimal, parse_int=Decimal) == _numbers(value)
    for number in _decimals(value):
        assert str(number) in text


def _numbers(value: Any) -> Any:
    """`value` with every number as the Decimal json.loads(parse_int=Decimal) reads."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return {k: _numbers(v) for k, v in value.items()}


def _decimals(value: Any) -> list[Decimal]:
    if isinstance(value, Decimal):
        return [value]
    if isinstance(value, list):
        return [d for v in value for d in _decimals(v)]
    if isinstance(value, dict):
        return [d for v in value.values() for d in _decimals(v)]
    return []
