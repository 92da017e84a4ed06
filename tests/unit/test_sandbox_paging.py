"""Horizon's paging over records ordered by token, and the result XDR of refusals."""

from __future__ import annotations

import pytest
from stellar_sdk.xdr import TransactionResult, TransactionResultCode

from anchorpay.sandbox.paging import pick
from anchorpay.sandbox.results import result_xdr

ITEMS = [10, 20, 30, 40]


def page(cursor: str | None, order: str, limit: int = 2, now: int = 50) -> list[int]:
    return pick(
        ITEMS, lambda x: x, cursor=cursor, order=order, limit=limit, now=now,
        keep=lambda x: x != 30,
    )  # fmt: skip


def test_cursor_order_limit_and_now() -> None:
    assert page(None, "asc") == [10, 20]
    assert page("20", "asc") == [40]
    assert page(None, "desc") == [40, 20]
    assert page("40", "desc", limit=5) == [20, 10]
    assert page("now", "asc") == []
    assert page("now", "desc", limit=1) == [40]
    with pytest.raises(ValueError):
        page("yesterday", "asc")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("tx_bad_seq", TransactionResultCode.txBAD_SEQ),
        ("tx_no_source_account", TransactionResultCode.txNO_ACCOUNT),
        ("tx_too_late", TransactionResultCode.txTOO_LATE),
        ("tx_failed", TransactionResultCode.txFAILED),
        ("tx_unheard_of", TransactionResultCode.txINTERNAL_ERROR),
    ],
)
def test_result_xdr_carries_the_code_and_fee(code: str, expected: TransactionResultCode) -> None:
    result = TransactionResult.from_xdr(result_xdr(code, 300))
    assert (result.result.code, result.fee_charged.int64) == (expected, 300)
