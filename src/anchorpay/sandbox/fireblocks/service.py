"""`FireblocksSandbox`: the sandbox Fireblocks' state machine over the sandbox ledger.

Transfers walk SUBMITTED → PENDING_SIGNATURE → BROADCASTING (the vault really pays) →
CONFIRMING → COMPLETED, one `step_s` apart (or end REJECTED / FAILED); payments into the vault
become incoming transactions (CONFIRMING → COMPLETED); every change is a signed webhook. The
HTTP surface (`routes.py`, `dev_routes.py`) is a thin layer over it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from anchorpay.clock import SYSTEM
from anchorpay.sandbox.fireblocks import (
    SANDBOX_FIREBLOCKS_API_KEY,
    SANDBOX_FIREBLOCKS_API_SECRET_PEM,
    SANDBOX_FIREBLOCKS_VAULT_ID,
    SANDBOX_FIREBLOCKS_VAULT_SECRET,
    SANDBOX_FIREBLOCKS_WEBHOOK_KID,
    SANDBOX_FIREBLOCKS_WEBHOOK_PRIVATE_PEM,
)
from anchorpay.sandbox.fireblocks.auth import check_request, load_public_key
from anchorpay.sandbox.fireblocks.faults import FireblocksFaults
from anchorpay.sandbox.fireblocks.model import ApiError, FbTransaction, decimal_str
from anchorpay.sandbox.fireblocks.transfer import TransferRequest, parse_transfer, tag_memo
from anchorpay.sandbox.fireblocks.vault import IncomingPayment, VaultAccount
from anchorpay.sandbox.fireblocks.webhooks import (
    WebhookOutbox,
    WebhookSigner,
    load_private_key,
)
from anchorpay.sandbox.network import Sandbox
from anchorpay.sandbox.state import Rejected, TxRecord

log = logging.getLogger("anchorpay.sandbox.fireblocks")

VAULT_NAME = "anchorpay sandbox vault"
IDEMPOTENCY_S = 24 * 3600
MAX_LIST_LIMIT = 500


class FireblocksSandbox:
    def __init__(
        self,
        sandbox: Sandbox,
        asset_mapping: Mapping[str, str],
        *,
        vault_account_id: str = SANDBOX_FIREBLOCKS_VAULT_ID,
        vault_secret: str = SANDBOX_FIREBLOCKS_VAULT_SECRET,
        step_s: float = 0.5,
        webhook_url: str | None = None,
        webhook_private_pem: str = SANDBOX_FIREBLOCKS_WEBHOOK_PRIVATE_PEM,
        webhook_kid: str = SANDBOX_FIREBLOCKS_WEBHOOK_KID,
        clock: Callable[[], float] = SYSTEM.time,
    ) -> None:
        self.sandbox = sandbox
        self.asset_mapping = dict(asset_mapping)  # SEP-38 id → Fireblocks asset id
        self.stellar_assets = {fb: stellar for stellar, fb in self.asset_mapping.items()}
        self.vault_account_id = vault_account_id
        self.step_s = step_s
        self.webhook_url = webhook_url
        self.clock = clock
        self.vault = VaultAccount(sandbox, vault_secret)
        self.vault.ensure(self.asset_mapping)
        self.faults = FireblocksFaults()
        self.signer = WebhookSigner(webhook_private_pem, webhook_kid)
        self.outbox = WebhookOutbox(self.signer, self.faults, lambda: self.webhook_url)
        api_user = load_private_key(SANDBOX_FIREBLOCKS_API_SECRET_PEM)
        self.api_keys: dict[str, RSAPublicKey] = {SANDBOX_FIREBLOCKS_API_KEY: api_user.public_key()}
        self.transactions: dict[str, FbTransaction] = {}  # creation order
        self.by_external_id: dict[str, FbTransaction] = {}
        self.deposit_tags: dict[str, str] = {}  # tag → description
        self.counters: Counter[str] = Counter()  # requests per route ("POST /v1/transactions")
        self._idempotent: dict[str, tuple[float, dict[str, Any]]] = {}
        self._next_tag = secrets.randbelow(900_000_000) + 100_000_000
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def vault_address(self) -> str:
        """The vault's Stellar account (what deposit addresses and transfers use)."""
        return self.vault.address

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- API keys -------------------------------------------------------------------------------

    def register_api_key(self, api_key: str, public_key_pem: str | bytes) -> None:
        """Add or replace an API user; ValueError when the PEM is not an RSA public key."""
        self.api_keys[api_key] = load_public_key(public_key_pem)

    def authenticate(
        self,
        api_key: str | None,
        authorization: str | None,
        uris: Collection[str],
        body: bytes,
    ) -> None:
        """Raise `auth.Unauthorized` unless the request is signed as the contract says."""
        check_request(self.api_keys, api_key, authorization, uris, body, self.clock())

    # --- transfers --------------------------------------------------------------------------

    async def create_transfer(self, body: Any, idempotency_key: str | None) -> dict[str, Any]:
        """POST /v1/transactions: the answer `{"id", "status"}`, or ApiError (faults too)."""
        if self.faults.take("rate_limited"):
            raise ApiError(429, 429, "Too many requests (sandbox fault rate_limited)")
        if idempotency_key:
            first = self._idempotent.get(idempotency_key)
            if first is not None and self.clock() - first[0] < IDEMPOTENCY_S:
                return dict(first[1])
        request = parse_transfer(body, self.vault_account_id, self.stellar_assets)
        if request.external_tx_id is not None and request.external_tx_id in self.by_external_id:
            raise ApiError(
                400,
                1438,
                f"A transaction with externalTxId {request.external_tx_id} already exists",
            )
        tx = self._new_transfer(request)
        answer = {"id": tx.id, "status": tx.status}
        if idempotency_key:
            self._idempotent[idempotency_key] = (self.clock(), dict(answer))
        if self.faults.take("unavailable_after_create"):
            raise ApiError(503, 503, "Service unavailable (sandbox fault unavailable_after_create)")
        delay = self.faults.take_delay()
        if delay:
            await asyncio.sleep(delay)
        return answer

    def _new_transfer(self, request: TransferRequest) -> FbTransaction:
        now = self.now_ms()
        tx = FbTransaction(
            id=str(uuid.uuid4()),
            number=len(self.transactions) + 1,
            asset_id=request.asset_id,
            amount=request.amount,
            source={"type": "VAULT_ACCOUNT", "id": self.vault_account_id, "name": VAULT_NAME},
            destination={"type": "ONE_TIME_ADDRESS", "id": "", "name": ""},
            source_address=self.vault_address,
            destination_address=request.address,
            destination_tag=request.tag,
            created_at=now,
            last_updated=now,
            external_tx_id=request.external_tx_id,
            note=request.note,
        )
        self._add(tx)
        if self.faults.take("reject_by_policy"):
            self._spawn(tx, self._walk_rejected(tx))
        else:
            self._spawn(tx, self._walk_transfer(tx, fail=self.faults.take("fail_on_chain")))
        return tx

    def _add(self, tx: FbTransaction) -> None:
        self.transactions[tx.id] = tx
        if tx.external_tx_id is not None:
            self.by_external_id[tx.external_tx_id] = tx
        self.outbox.emit("transaction.created", tx.to_json(), tx.created_at)

    def _set(self, tx: FbTransaction, status: str, sub_status: str = "", **fields: str) -> None:
        tx.status, tx.sub_status = status, sub_status
        for name, value in fields.items():
            setattr(tx, name, value)
        tx.last_updated = self.now_ms()
        self.outbox.emit("transaction.status.updated", tx.to_json(), tx.last_updated)

    async def _step(self) -> None:
        await asyncio.sleep(self.step_s)

    async def _walk_rejected(self, tx: FbTransaction) -> None:
        await self._step()
        note = "Blocked by the transaction authorization policy (sandbox fault reject_by_policy)"
        self._set(tx, "REJECTED", "BLOCKED_BY_POLICY", note=note)

    async def _walk_transfer(self, tx: FbTransaction, fail: bool) -> None:
        await self._step()
        self._set(tx, "PENDING_SIGNATURE")
        await self._step()
        self._set(tx, "BROADCASTING")
        if fail:
            await self._step()
            note = "Stellar result code: tx_failed (sandbox fault fail_on_chain)"
            self._set(tx, "FAILED", "REJECTED_BY_BLOCKCHAIN", note=note)
            return
        asset_id = self.stellar_assets[tx.asset_id]
        memo = tag_memo(tx.destination_tag)
        answer = await self.vault.pay(
            tx.destination_address, asset_id, tx.amount, memo, self.step_s
        )
        if isinstance(answer, Rejected):
            self._set(tx, "FAILED", "REJECTED_BY_BLOCKCHAIN", note=_result_note(answer))
            return
        if not answer.successful:  # applied, operations failed: the fee was spent
            note = _result_note(answer)
            self._set(tx, "FAILED", "REJECTED_BY_BLOCKCHAIN", tx_hash=answer.hash, note=note)
            return
        self._set(tx, "CONFIRMING", tx_hash=answer.hash)
        await self._step()
        self._set(tx, "COMPLETED")

    # --- payments into the vault -----------------------------------------------------------

    def scan_ledger(self) -> list[FbTransaction]:
        """Make an incoming transaction for each new payment into the vault."""
        made = []
        for payment in self.vault.incoming():
            fb_asset = self.asset_mapping.get(payment.asset_id)
            if fb_asset is None:
                log.info("sandbox fireblocks: ignored a payment of unmapped %s", payment.asset_id)
                continue
            tx = self._new_incoming(payment, fb_asset)
            self._spawn(tx, self._complete_incoming(tx))
            made.append(tx)
        return made

    def _new_incoming(self, payment: IncomingPayment, fb_asset: str) -> FbTransaction:
        now = self.now_ms()
        tx = FbTransaction(
            id=str(uuid.uuid4()),
            number=len(self.transactions) + 1,
            asset_id=fb_asset,
            amount=payment.amount,
            source={"type": "UNKNOWN", "id": "", "name": "External"},
            destination={"type": "VAULT_ACCOUNT", "id": self.vault_account_id, "name": VAULT_NAME},
            source_address=payment.source,
            destination_address=self.vault_address,
            destination_tag=payment.memo,
            created_at=now,
            last_updated=now,
            status="CONFIRMING",
            tx_hash=payment.tx_hash,
        )
        self._add(tx)
        return tx

    async def _complete_incoming(self, tx: FbTransaction) -> None:
        await self._step()
        self._set(tx, "COMPLETED")

    async def _watch_ledger(self) -> None:
        while True:
            await self._step()
            try:
                self.scan_ledger()
            except Exception:  # one bad scan must not stop the watcher
                log.exception("sandbox fireblocks: scanning the ledger failed")

    # --- reads ------------------------------------------------------------------------------

    def get(self, tx_id: str) -> FbTransaction:
        found = self.transactions.get(tx_id)
        if found is None:
            raise ApiError(404, 1405, f"Transaction {tx_id} not found")
        return found

    def get_by_external_id(self, external_tx_id: str) -> FbTransaction:
        found = self.by_external_id.get(external_tx_id)
        if found is None:
            raise ApiError(404, 1405, f"Transaction with externalTxId {external_tx_id} not found")
        return found

    def list_transactions(
        self,
        after: int | None = None,
        limit: int = 200,
        ascending: bool = False,
        statuses: Iterable[str] | None = None,
    ) -> list[FbTransaction]:
        """By createdAt then creation order; `after` inclusive (createdAt >= after)."""
        wanted = set(statuses) if statuses is not None else None
        found = [
            tx
            for tx in self.transactions.values()
            if (after is None or tx.created_at >= after) and (wanted is None or tx.status in wanted)
        ]
        found.sort(key=lambda tx: (tx.created_at, tx.number), reverse=not ascending)
        return found[:limit]

    # --- vault --------------------------------------------------------------------------------

    def _check_vault(self, vault_id: str) -> None:
        if vault_id != self.vault_account_id:
            raise ApiError(404, 11001, f"Vault account {vault_id} not found")

    def _check_asset(self, vault_id: str, asset_id: str) -> str:
        self._check_vault(vault_id)
        stellar_asset = self.stellar_assets.get(asset_id)
        if stellar_asset is None:
            raise ApiError(404, 11002, f"Asset {asset_id} not found in vault account {vault_id}")
        return stellar_asset

    def vault_asset(self, vault_id: str, asset_id: str) -> dict[str, Any]:
        balance = decimal_str(self.vault.balance(self._check_asset(vault_id, asset_id)))
        return {
            "id": asset_id,
            "total": balance,
            "balance": balance,
            "available": balance,
            "pending": "0",
            "frozen": "0",
            "lockedAmount": "0",
        }

    def vault_account(self, vault_id: str) -> dict[str, Any]:
        self._check_vault(vault_id)
        return {
            "id": self.vault_account_id,
            "name": VAULT_NAME,
            "hiddenOnUI": False,
            "autoFuel": False,
            "assets": [self.vault_asset(vault_id, fb) for fb in self.stellar_assets],
        }

    def new_deposit_address(self, vault_id: str, asset_id: str, description: str) -> dict[str, Any]:
        """The vault's account with a tag never given before."""
        self._check_asset(vault_id, asset_id)
        tag = str(self._next_tag)
        self._next_tag += 1
        self.deposit_tags[tag] = description
        return {
            "address": self.vault_address,
            "tag": tag,
            "legacyAddress": "",
            "enterpriseAddress": "",
            "bip44AddressIndex": 0,
        }

    def vault_addresses(self, vault_id: str, asset_id: str) -> dict[str, Any]:
        """`addresses_paginated`: one Stellar account, each tag issued on it (one page)."""
        self._check_asset(vault_id, asset_id)
        tags = [("", ""), *self.deposit_tags.items()]
        return {
            "addresses": [
                {
                    "assetId": asset_id,
                    "address": self.vault_address,
                    "tag": tag,
                    "description": description,
                    "type": "Permanent",
                }
                for tag, description in tags
            ],
            "paging": {},
        }

    # --- developer routes ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "vault_account_id": self.vault_account_id,
            "vault_address": self.vault_address,
            "step_s": self.step_s,
            "webhook_url": self.webhook_url,
            "transactions": [tx.to_json() for tx in self.transactions.values()],
            "faults": self.faults.describe(),
            "counters": dict(self.counters),
            "webhooks": len(self.outbox.events),
        }

    # --- lifecycle ------------------------------------------------------------------------------

    def _spawn(self, tx: FbTransaction, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guard(tx, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, tx: FbTransaction, work: Coroutine[Any, Any, None]) -> None:
        """A walk that breaks ends the transaction FAILED rather than leaving it hanging."""
        try:
            await work
        except Exception as exc:
            log.exception("sandbox fireblocks: the walk of transaction %s failed", tx.id)
            if not tx.final:
                self._set(tx, "FAILED", "INTERNAL_ERROR", note=f"sandbox error: {exc!r}")

    async def start(self) -> None:
        """Watch the ledger for payments into the vault and deliver webhooks."""
        await self.outbox.start()
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_ledger())

    async def stop(self) -> None:
        tasks = [t for t in (self._watcher, *self._tasks) if t is not None]
        self._watcher = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.outbox.stop()


def _result_note(answer: Rejected | TxRecord) -> str:
    codes = ", ".join(answer.operation_codes)
    return f"Stellar result code: {answer.transaction_code}" + (f" ({codes})" if codes else "")


__all__ = ["FireblocksSandbox"]
