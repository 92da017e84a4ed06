"""The Fireblocks custody adapter: the worker's four calls (base.py) over the Fireblocks API.

Exactly-once rests on Fireblocks' `externalTxId`, which is unique for ever in a workspace:
- `prepare` stores the payout id as the external id (no network call), and the worker
  commits it before `submit`;
- `submit` creates the transfer with `externalTxId` = `Idempotency-Key` = the payout id, so a
  repeated create either replays the first answer or is refused as a duplicate, which is
  resolved by looking the transfer up;
- `lookup` asks `GET /v1/transactions/external_tx_id/{payout id}`: the transfer found is
  adopted; none found means nothing was created, and the same create is sent again (never
  `dead`: the create is idempotent, so there is no new material to build).

Statuses (all fifteen, docs/fireblocks-wire.md): COMPLETED is success once its `txHash` is
read back from the ledger (that fills `stellar_transactions`); CANCELLED, REJECTED, BLOCKED
and FAILED are permanent failures naming the status and sub-status; every other status is
pending, polled with backoff and nudged by webhooks.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from anchorpay.adapters.custody import (
    Confirmed,
    Failed,
    LookupResult,
    NotFound,
    PayoutOrder,
    PayoutUpdate,
    Pending,
    PermanentCustodyError,
    SubmitOutcome,
    TransientCustodyError,
    find_transaction,
    read_trustline,
)
from anchorpay.adapters.fireblocks.client import (
    FireblocksApiError,
    FireblocksClient,
    FireblocksError,
)
from anchorpay.adapters.fireblocks.config import FireblocksConfig
from anchorpay.adapters.fireblocks.models import FAILURES, STATUSES, SUCCESS, FbTransaction
from anchorpay.adapters.fireblocks.models import TransferRequest as Transfer
from anchorpay.adapters.ledger import LedgerClient
from anchorpay.adapters.stellar_signer import stellar_amount

log = logging.getLogger("anchorpay.fireblocks")


class FireblocksAdapter:
    def __init__(
        self, config: FireblocksConfig, client: FireblocksClient, ledger: LedgerClient
    ) -> None:
        self.config = config
        self.client = client
        self._ledger = ledger

    def __repr__(self) -> str:
        return f"FireblocksAdapter(vault={self.config.vault_account_id}, {self.config.base_url})"

    @property
    def name(self) -> str:
        return "fireblocks"

    @property
    def source_accounts(self) -> tuple[str, ...]:
        return ()  # Fireblocks sequences its own Stellar transactions: no limit here

    async def prepare(self, order: PayoutOrder) -> PayoutUpdate:
        self._transfer(order)  # refuse what can never be paid before anything is stored
        return PayoutUpdate(adapter_ref=order.id)

    async def submit(self, order: PayoutOrder) -> SubmitOutcome:
        transfer = self._transfer(order)
        try:
            created = await self.client.create_transaction(transfer, idempotency_key=order.id)
        except FireblocksApiError as exc:
            if exc.is_duplicate_external_id:  # created before (a lost answer): adopt it
                found = await self.lookup(order)
                if isinstance(found, NotFound):
                    raise TransientCustodyError(
                        f"Fireblocks says externalTxId {order.id} exists but does not find it"
                    ) from None
                return found
            if exc.is_retryable or exc.status in (401, 403):  # a key can be fixed: retry
                raise TransientCustodyError(f"Fireblocks create: {exc}") from None
            # Any other refusal of a create: nothing was created, and nothing ever will be.
            return Failed(f"Fireblocks refused the transfer: {exc}", str(exc.code or exc.status))
        except FireblocksError as exc:
            raise TransientCustodyError(f"Fireblocks create: {exc}") from None
        log.info("fireblocks: payout %s created as %s (%s)", order.id, created.id, created.status)
        if created.status in FAILURES:  # e.g. refused by policy at once: read the sub-status
            found = await self.lookup(order)
            if not isinstance(found, NotFound):
                return found
        return Pending(f"Fireblocks transaction {created.id} is {created.status}")

    async def lookup(self, order: PayoutOrder) -> LookupResult:
        try:
            found = await self.client.get_by_external_id(order.id)
        except FireblocksError as exc:  # a failed read proves nothing about the transfer
            raise TransientCustodyError(f"Fireblocks lookup: {exc}") from None
        if found is None:
            return NotFound(dead=False, detail=f"Fireblocks has no transfer {order.id} yet")
        return await self.outcome(found)

    async def outcome(self, fb: FbTransaction) -> LookupResult:
        """What a Fireblocks transaction means for its payout."""
        if fb.status == SUCCESS:
            return await self._confirmed(fb)
        if fb.status in FAILURES:
            sub = f" ({fb.sub_status})" if fb.sub_status else ""
            return Failed(
                f"Fireblocks transaction {fb.id} ended {fb.status}{sub}; nothing was paid",
                fb.status,
            )
        if fb.status not in STATUSES:
            log.warning("fireblocks: transaction %s has unknown status %r", fb.id, fb.status)
        return Pending(f"Fireblocks transaction {fb.id} is {fb.status}")

    async def _confirmed(self, fb: FbTransaction) -> LookupResult:
        if not fb.tx_hash:
            return Pending(f"Fireblocks transaction {fb.id} is COMPLETED without a txHash yet")
        tx = await find_transaction(self._ledger, fb.tx_hash)
        if tx is None:  # Horizon lags behind Fireblocks: look again shortly
            return Pending(f"{fb.tx_hash} of Fireblocks transaction {fb.id} not on Horizon yet")
        if not tx.successful:
            return Failed(
                f"Fireblocks transaction {fb.id} is COMPLETED but its Stellar transaction "
                f"{tx.hash} failed on the ledger; check the vault",
                "tx_failed",
            )
        return Confirmed(hash=tx.hash, ledger=tx.ledger, record=tx.record)

    async def check_trustline(self, account: str, asset: str) -> bool:
        return await read_trustline(self._ledger, account, asset)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _transfer(self, order: PayoutOrder) -> Transfer:
        if order.memo_type in ("hash", "return"):  # Fireblocks tags are text or id memos
            raise PermanentCustodyError(
                f"Memo type[{order.memo_type}] is not supported for custody type[fireblocks]",
                "bad_memo",
            )
        fb_asset = self.config.asset_ids.get(order.asset)
        if fb_asset is None:
            raise PermanentCustodyError(
                f"No Fireblocks asset id is configured for {order.asset}", "bad_asset"
            )
        return Transfer(
            asset_id=fb_asset,
            amount=Decimal(stellar_amount(order.amount)),
            vault_account_id=self.config.vault_account_id,
            address=order.destination,
            tag=order.memo or None,
            external_tx_id=order.id,
            note=f"anchorpay {order.purpose} {order.id} of transaction {order.transaction_id}",
        )
