"""Stellar memos for withdrawal deposit instructions (spec/rpc.md §3.3).

`parse_memo` follows the reference's MemoHelper for the texts it gives; the values its SDK
rejects with an unchecked exception (-32603 there) are -32602 here, with the same prefix.
"""

from __future__ import annotations

import base64
import binascii
import re

from anchorpay.domain.errors import InvalidParams

PREFIX = "Invalid memo or memo_type: "
_UINT64_MAX = 2**64 - 1
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _invalid(reason: str) -> InvalidParams:
    return InvalidParams(PREFIX + reason)


def parse_memo(memo: str | None, memo_type: str | None) -> str | None:
    """The canonical memo type (`text`, `id` or `hash`) of a memo given by the business, or
    None when there is no memo. Raises the reference's "Invalid memo or memo_type" errors."""
    if memo is None or memo == "":
        return None
    if memo_type is None or memo_type == "":
        raise _invalid("memo_type is required if memo is specified")
    if memo_type == "none":
        raise _invalid("memo must be empty when memoType is none")
    if memo_type == "return":
        raise _invalid("Unsupported value: return")
    if memo_type == "id":
        if not memo.isascii() or not memo.isdigit() or int(memo) > _UINT64_MAX:
            raise _invalid(f"Invalid memo {memo} of type:MEMO_ID")
        return "id"
    if memo_type == "text":
        size = len(memo.encode("utf-8"))
        if size > 28:
            raise _invalid(f"text memo must be at most 28 bytes of UTF-8, got {size}")
        return "text"
    if memo_type == "hash":
        if decode_hash(memo) is None:
            raise _invalid("hash memo must be the base64 encoding of exactly 32 bytes")
        return "hash"
    raise _invalid(f"Invalid memo type: {memo_type}")


def decode_hash(memo: str) -> bytes | None:
    """The 32 bytes of a base64 hash memo (padding optional, like Java's decoder)."""
    if not _BASE64.fullmatch(memo):
        return None
    try:
        raw = base64.b64decode(memo + "=" * (-len(memo) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def self_memo(transaction_id: str) -> str:
    """The reference's `self` generator memo: base64 of the first 32 characters of the
    transaction id, left-padded with '0' to 32 (a 32-byte hash memo)."""
    head = transaction_id[:32].rjust(32, "0")
    return base64.b64encode(head.encode("utf-8")).decode("ascii")
