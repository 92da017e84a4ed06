"""The vault's Stellar side: its account on the sandbox ledger, payments from it (one envelope
per transfer, sequence numbers never racing) and payments into it found on the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from stellar_sdk import Account, Asset, Keypair, Memo, TransactionBuilder

from anchorpay.sandbox.network import Sandbox, TimedOut
from anchorpay.sandbox.state import (
    BASE_FEE,
    NATIVE,
    Rejected,
    TxRecord,
    asset_code,
    asset_issuer,
    is_credit_asset_id,
)

VAULT_XLM = Decimal("10000000")
VAULT_CREDIT = Decimal("1000000")
TIME_BOUND_S = 60


Answer = TxRecord | Rejected | TimedOut


@dataclass(frozen=True, slots=True)
class Signed:
    xdr: str
    hash: str


@dataclass(frozen=True, slots=True)
class IncomingPayment:
    """A successful payment into the vault from another account."""

    tx_hash: str
    source: str
    asset_id: str  # SEP-38 id
    amount: Decimal
    memo: str  # text or id memo as a string; "" without one


def sdk_asset(asset_id: str) -> Asset:
    if asset_id == NATIVE:
        return Asset.native()
    return Asset(asset_code(asset_id), asset_issuer(asset_id))


class VaultAccount:
    def __init__(self, sandbox: Sandbox, secret: str) -> None:
        self.sandbox = sandbox
        self.ledger = sandbox.ledger
        self.keypair = Keypair.from_secret(secret)
        self.address = str(self.keypair.public_key)
        self._lock = asyncio.Lock()  # one envelope at a time takes the next sequence number
        self._seen_ops = len(self.ledger.operations)

    def ensure(self, asset_ids: Iterable[str]) -> None:
        """Create the account directly (like the sandbox's genesis) unless it exists, with a
        funded trustline for every credit asset whose issuer exists or is configured."""
        if self.address in self.ledger.accounts:
            return
        self.ledger.create_account(self.address, VAULT_XLM)
        configured = set(self.sandbox.credit_assets())
        for asset_id in asset_ids:
            if not is_credit_asset_id(asset_id) or asset_issuer(asset_id) == self.address:
                continue
            if asset_id in configured or asset_issuer(asset_id) in self.ledger.accounts:
                self.ledger.add_trustline(self.address, asset_id, balance=VAULT_CREDIT)

    def balance(self, asset_id: str) -> Decimal:
        return self.ledger.balance(self.address, asset_id) or Decimal(0)

    # --- paying -----------------------------------------------------------------------------

    def envelope(self, destination: str, asset_id: str, amount: Decimal, memo: Memo) -> Signed:
        """A signed payment with the next free sequence number (queued ones counted)."""
        account = self.ledger.accounts[self.address]
        ahead = sum(1 for pending in self.ledger.queue if pending.source == self.address)
        source = Account(self.address, account.sequence + ahead)
        builder = TransactionBuilder(source, self.sandbox.network_passphrase, base_fee=BASE_FEE)
        now = int(self.ledger.clock().timestamp())
        builder.add_time_bounds(0, now + TIME_BOUND_S)
        builder.add_memo(memo)
        builder.append_payment_op(destination, sdk_asset(asset_id), f"{amount:f}")
        envelope = builder.build()
        envelope.sign(self.keypair)
        return Signed(str(envelope.to_xdr()), str(envelope.hash_hex()))

    async def _submit(self, make: Callable[[], Signed]) -> tuple[Signed, asyncio.Task[Answer]]:
        """Under the lock until the envelope is queued (or answered), so that the next envelope
        sees it in the queue and takes the following sequence number."""
        async with self._lock:
            signed = make()
            task = asyncio.create_task(self.sandbox.submit(signed.xdr))
            # the ledger is synchronous, with no event to wait on: the submission queues in the
            # first step of its task
            while not task.done() and not self._known(signed.hash):  # noqa: ASYNC110
                await asyncio.sleep(0)
        return signed, task

    def _known(self, tx_hash: str) -> bool:
        return self.ledger.is_queued(tx_hash) or tx_hash in self.ledger.transactions

    async def pay(
        self, destination: str, asset_id: str, amount: Decimal, memo: Memo, poll_s: float
    ) -> TxRecord | Rejected:
        """Pay once: build, submit and wait for the ledger. After a timeout the same envelope
        is watched for (and given to the ledger again if the ledger lost it): never a second,
        different envelope, so a transfer cannot pay twice."""
        signed, task = await self._submit(
            lambda: self.envelope(destination, asset_id, amount, memo)
        )
        answer = await task
        while isinstance(answer, TimedOut):
            await asyncio.sleep(poll_s)
            record = self.ledger.transactions.get(signed.hash)
            if record is not None:
                return record
            if not self.ledger.is_queued(signed.hash):
                _, task = await self._submit(lambda: signed)
                answer = await task
        return answer

    # --- payments in ------------------------------------------------------------------------

    def incoming(self) -> list[IncomingPayment]:
        """Payments into the vault applied since the last call (only the new operations)."""
        new = self.ledger.operations[self._seen_ops :]
        self._seen_ops += len(new)
        found = []
        for op in new:
            details = op.details
            if op.type != "payment" or not op.successful or details.get("to") != self.address:
                continue
            if op.source_account == self.address:
                continue
            if details.get("asset_type") == "native":
                asset_id = NATIVE
            else:
                asset_id = f"stellar:{details.get('asset_code')}:{details.get('asset_issuer')}"
            record = self.ledger.transactions.get(op.tx_hash)
            memo = ""
            if record is not None and record.memo_type in ("text", "id"):
                memo = record.memo or ""
            amount = Decimal(details["amount"])
            found.append(IncomingPayment(op.tx_hash, op.source_account, asset_id, amount, memo))
        return found
