"""Horizon's paging over records ordered by their paging token (a toid, so an integer):
`cursor` (a token or `now`), `order` (asc or desc) and `limit`, for every collection."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


def pick(
    items: Sequence[T],
    token: Callable[[T], int],
    *,
    cursor: str | None,
    order: str,
    limit: int,
    now: int,
    keep: Callable[[T], bool] | None = None,
) -> list[T]:
    """Up to `limit` items after `cursor` in `order`; `items` are ascending by token and
    `now` is the token just past the latest ledger. Raises ValueError for a bad cursor."""
    if cursor == "now":
        after, before = (now, None) if order == "asc" else (None, now)
    else:
        mark = int(cursor) if cursor else None  # ValueError for garbage
        after, before = (mark, None) if order == "asc" else (None, mark)
    ordered: Iterable[T] = items if order == "asc" else reversed(items)
    found: list[T] = []
    for item in ordered:
        value = token(item)
        if after is not None and value <= after:
            continue
        if before is not None and value >= before:
            continue
        if keep is not None and not keep(item):
            continue
        found.append(item)
        if len(found) >= limit:
            break
    return found
