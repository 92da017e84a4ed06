"""Custody deposit instructions (DEPOSIT_INFO_GENERATOR=custody): for `request_onchain_funds`
on a withdrawal, a fresh Fireblocks deposit address and tag of the withdrawal's asset.

The (address, tag) pair is recorded in `withdrawal_memos` in the RPC's own database
transaction, like the `self` generator's memos: it is never issued twice, and a transaction
that asks again keeps the instructions its user may already have seen (no second address).
Fireblocks is called inside that transaction; if the RPC then fails, the address is simply
never used (Fireblocks addresses cost nothing).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.fireblocks.client import FireblocksClient, FireblocksError
from anchorpay.adapters.fireblocks.config import FireblocksConfig
from anchorpay.domain.errors import InternalError
from anchorpay.domain.plan import DepositInfo
from anchorpay.domain.transaction import Transaction
from anchorpay.store import observer as memos

log = logging.getLogger("anchorpay.fireblocks")

MAX_TAG = 20  # withdrawal_memos.memo; Fireblocks' Stellar tags are numeric


class FireblocksDepositAddresses:
    def __init__(self, config: FireblocksConfig, client: FireblocksClient) -> None:
        self.config = config
        self.client = client

    async def __call__(
        self, session: AsyncSession, tx: Transaction, asset_id: str | None, now: datetime
    ) -> DepositInfo:
        existing = await memos.memo_of_transaction(session, tx.id)
        if existing is not None:
            destination, memo, memo_type = existing
            return DepositInfo(destination, memo, memo_type)
        stellar_asset = asset_id or tx.amount_in_asset or tx.requested_asset or ""
        fb_asset = self.config.asset_ids.get(stellar_asset)
        if fb_asset is None:
            raise InternalError(f"No Fireblocks asset id is configured for {stellar_asset}")
        try:
            address = await self.client.new_deposit_address(
                self.config.vault_account_id, fb_asset, f"anchorpay withdrawal {tx.id}"
            )
        except FireblocksError as exc:
            log.warning("fireblocks: deposit address for %s failed: %s", tx.id, exc)
            raise InternalError(
                "Failed to get a deposit address from Fireblocks; retry the request"
            ) from None
        tag = address.tag.strip()
        if not tag or len(tag) > MAX_TAG:
            raise InternalError(f"Fireblocks gave deposit tag {tag!r}; expected 1 to 20 characters")
        memo_type = "id" if tag.isdigit() and int(tag) < 2**64 else "text"
        try:
            async with session.begin_nested():
                await memos.insert_memo(session, address.address, tag, tx.id, now, memo_type)
        except IntegrityError:
            raise InternalError(
                f"Fireblocks gave tag {tag} for {address.address} twice; retry the request"
            ) from None
        return DepositInfo(address.address, tag, memo_type)
