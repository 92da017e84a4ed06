"""Deposit instructions for withdrawals (`request_onchain_funds` with DEPOSIT_INFO_GENERATOR=self).

The user pays the withdrawal asset's distribution account with a memo of type `id`: a
cryptographically random 63-bit number (`secrets.randbits(63)`, never 0). The table
`withdrawal_memos` has (destination, memo) as its primary key and rows are never deleted, so a
memo is issued once per account for ever: a late payment for a closed withdrawal can never be
credited to another customer (the reference's time-seeded memos collided). A drawn number that
was already issued, or that a transaction names (a memo the business chose with the `none`
generator), is drawn again. With 2^63 values a redraw practically never happens; the primary
key still refuses a duplicate if two servers drew the same number at the same instant (the
RPC then fails and can be retried).

A transaction that asks again (request_onchain_funds from `pending_anchor`) keeps its memo, so
instructions already shown to the user stay valid.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.clock import SYSTEM
from anchorpay.domain.assets import AssetList
from anchorpay.domain.errors import InternalError
from anchorpay.domain.machine import DepositInfo
from anchorpay.domain.transaction import Transaction
from anchorpay.store import observer as store

MEMO_TYPE = "id"
MAX_DRAWS = 16

Rng = Callable[[], int]


def random_memo() -> int:
    """A uniformly random number in [1, 2^63 - 1]."""
    while True:
        value = secrets.randbits(63)
        if value:
            return value


def distribution_account(tx: Transaction, assets: AssetList, asset_id: str | None = None) -> str:
    """The account the user pays: the distribution account of the withdrawal's Stellar asset
    (`asset_id`, else the stored amount_in asset, else the requested asset), else the
    transaction's current `to_account` (the reference's rule)."""
    for candidate in (asset_id, tx.amount_in_asset, tx.requested_asset):
        if not candidate:
            continue
        asset = assets.get(candidate)
        if asset is not None and asset.is_stellar and asset.distribution_account:
            return asset.distribution_account
    if tx.to_account:
        return tx.to_account
    raise InternalError(
        f"No distribution account is configured for asset "
        f"{asset_id or tx.amount_in_asset or tx.requested_asset}: "
        "set distribution_account in the assets file"
    )


async def allocate_memo_value(
    session: AsyncSession,
    destination: str,
    transaction_id: str,
    *,
    now: datetime | None = None,
    rng: Rng = random_memo,
) -> str:
    """The memo of `transaction_id` for `destination`: its existing one, or a new unique one
    inserted in the caller's database transaction."""
    when = now or SYSTEM.now()
    for _ in range(MAX_DRAWS):
        value = rng()
        if not 0 < value < 2**63:
            continue
        memo = str(value)
        if await store.try_insert_memo(session, destination, memo, transaction_id, when):
            return memo
        existing, _taken = await store.check_memo(session, transaction_id, destination, memo)
        if existing is not None:
            return existing  # asked again: keep the instructions the user may have seen
    raise InternalError(
        f"Could not generate a unique memo for transaction[{transaction_id}]; retry the request"
    )


async def allocate_memo(
    session: AsyncSession,
    tx: Transaction,
    assets: AssetList,
    *,
    asset_id: str | None = None,
    now: datetime | None = None,
    rng: Rng = random_memo,
) -> DepositInfo:
    """Deposit instructions for `tx` (the `self` generator): distribution account, id memo.
    `asset_id` is the request's `amount_in.asset` when it brings one."""
    destination = distribution_account(tx, assets, asset_id)
    memo = await allocate_memo_value(session, destination, tx.id, now=now, rng=rng)
    return DepositInfo(destination_account=destination, memo=memo, memo_type=MEMO_TYPE)
