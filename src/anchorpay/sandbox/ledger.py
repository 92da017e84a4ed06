"""The sandbox ledger: a pure, synchronous state machine (no HTTP, no asyncio).

`submit` decodes an envelope with stellar-sdk and checks what stellar-core checks before it
accepts a transaction (operation count, time bounds, fee, source, sequence number,
signatures, fee balance, each operation's validity); a refusal there consumes nothing.
Accepted transactions wait in a queue until `close` applies them in order: fee and sequence
number are charged, then the operations run all-or-nothing, so an operation failure
(`op_no_trust`, `op_underfunded`, ...) is recorded as a failed transaction that consumed its
fee and sequence number, as on Stellar. A hash that is already applied is answered with the
stored record and never applied twice.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from stellar_sdk import FeeBumpTransactionEnvelope, Keypair, TransactionEnvelope
from stellar_sdk.exceptions import BadSignatureError

from anchorpay.clock import SYSTEM
from anchorpay.sandbox import operations
from anchorpay.sandbox.persist import SCHEMA_VERSION, LedgerFile, SandboxStateError
from anchorpay.sandbox.queries import LedgerQueries
from anchorpay.sandbox.state import (
    BASE_FEE,
    MAX_OPS,
    STROOP,
    AccountState,
    LedgerHeader,
    OpRecord,
    Queued,
    Rejected,
    Scratch,
    SubmitOutcome,
    TxRecord,
    amount,
    toid,
)


@dataclass(slots=True)
class _Pending:
    hash: str
    xdr: str
    envelope: Any  # stellar_sdk.TransactionEnvelope
    source: str
    hold: int = 0  # ledgers to skip before inclusion (fault injection)


@dataclass(frozen=True, slots=True)
class ClosedLedger:
    header: LedgerHeader
    outcomes: dict[str, TxRecord | Rejected] = field(default_factory=dict)


class SandboxLedger(LedgerQueries):
    def __init__(
        self,
        network_passphrase: str,
        clock: Callable[[], datetime] | None = None,
        store: LedgerFile | None = None,
    ) -> None:
        self.network_passphrase = network_passphrase
        self.clock = clock or SYSTEM.now
        self.store = store
        self.accounts: dict[str, AccountState] = {}
        self.keys: dict[str, str] = {}  # secrets of the accounts the sandbox made
        self.transactions: dict[str, TxRecord] = {}
        self.operations: list[OpRecord] = []  # ledger order, so ids only grow
        self.headers: list[LedgerHeader] = []
        self.queue: list[_Pending] = []
        self.fresh = store is None or not store.meta()  # a new network (needs its genesis)
        if self.fresh:
            # A random genesis: every new network has its own identity (its genesis hash),
            # so a client that recorded another network's can tell it is not the same.
            seed = hashlib.sha256(b"genesis:" + os.urandom(32)).hexdigest()
            self.headers.append(LedgerHeader(1, seed, "0" * 64, self.clock()))
            meta = {"network_passphrase": network_passphrase, "schema": SCHEMA_VERSION}
            self._save(meta=meta, header=self.headers[0])
        else:
            assert store is not None
            self._load(store)

    def _load(self, store: LedgerFile) -> None:
        stored = store.meta().get("network_passphrase")
        if stored != self.network_passphrase:
            raise SandboxStateError(
                f"the sandbox state {store.path} is a network with passphrase {stored!r}, not "
                f"{self.network_passphrase!r}; give SANDBOX_STATE another file"
            )
        loaded = store.load()
        if not loaded.headers:
            raise SandboxStateError(f"the sandbox state {store.path} has no genesis ledger")
        self.accounts = {a.account_id: a for a in loaded.accounts}
        self.keys = loaded.keys
        self.headers = loaded.headers
        for record in loaded.transactions:
            self.transactions[record.hash] = record
            self.operations.extend(record.operations)
        for xdr, hold in loaded.queue:
            envelope = TransactionEnvelope.from_xdr(xdr, self.network_passphrase)
            source = envelope.transaction.source.account_id
            self.queue.append(_Pending(envelope.hash_hex(), xdr, envelope, source, hold))

    def _save(self, **changes: Any) -> None:
        if self.store is not None:
            self.store.save(**changes)

    def _queue_rows(self) -> list[tuple[str, int]]:
        return [(p.xdr, p.hold) for p in self.queue]

    @property
    def network_id(self) -> str:
        """The network's identity: its genesis ledger's hash."""
        return self.headers[0].hash

    def remember_key(self, account_id: str, secret: str) -> None:
        self.keys[account_id] = secret
        self._save(keys={account_id: secret})

    # --- direct changes (start state and developer routes, not transactions) --------------

    def create_account(self, account_id: str, xlm: Decimal) -> AccountState:
        if account_id in self.accounts:
            raise ValueError(f"The account {account_id} already exists.")
        Keypair.from_public_key(account_id)  # raises on a malformed id
        seq = self.latest.sequence
        account = AccountState(account_id, seq << 32, amount(xlm), last_modified_ledger=seq)
        self.accounts[account_id] = account
        self._save(accounts=[account])
        return account

    def add_trustline(
        self, account_id: str, asset_id: str, authorized: bool = True, balance: Decimal = Decimal(0)
    ) -> bool:
        """Create (or re-authorize) a trustline and credit `balance`; False when it existed."""
        account = self.accounts[account_id]
        added = operations.new_trustline(account, asset_id, authorized, self.latest.sequence)
        line = account.trustlines[asset_id]
        line.authorized = authorized
        line.balance = amount(line.balance + balance)
        self._save(accounts=[account])
        return added

    # --- submission --------------------------------------------------------------------------

    def submit(self, envelope_xdr: str) -> SubmitOutcome:
        try:
            if FeeBumpTransactionEnvelope.is_fee_bump_transaction_envelope(envelope_xdr):
                fee_bump = FeeBumpTransactionEnvelope.from_xdr(
                    envelope_xdr, self.network_passphrase
                )
                return Rejected(fee_bump.hash_hex(), envelope_xdr, "tx_not_supported")
            envelope = TransactionEnvelope.from_xdr(envelope_xdr, self.network_passphrase)
            tx_hash = envelope.hash_hex()
        except Exception:  # any decoding error: Horizon's transaction_malformed
            return Rejected(None, envelope_xdr, "tx_malformed", malformed=True)
        if tx_hash in self.transactions:
            return self.transactions[tx_hash]
        if self.is_queued(tx_hash):
            return Queued(tx_hash)
        source = envelope.transaction.source.account_id
        ahead = sum(1 for p in self.queue if p.source == source)
        rejected = self._check(envelope, tx_hash, envelope_xdr, ahead, self.clock(), True)
        if rejected is not None:
            return rejected
        self.queue.append(_Pending(tx_hash, envelope_xdr, envelope, source))
        self._save(queue=self._queue_rows())
        return Queued(tx_hash)

    def is_queued(self, tx_hash: str) -> bool:
        return any(p.hash == tx_hash for p in self.queue)

    def hold(self, tx_hash: str, ledgers: int) -> None:
        """Keep a queued transaction out of the next `ledgers` closes (fault injection)."""
        for pending in self.queue:
            if pending.hash == tx_hash:
                pending.hold = ledgers
        self._save(queue=self._queue_rows())

    def _check(
        self, envelope: Any, tx_hash: str, xdr: str, ahead: int, now: datetime, signatures: bool
    ) -> Rejected | None:
        """stellar-core's validity checks; `ahead` = queued transactions of the same source."""
        tx = envelope.transaction
        ops = tx.operations

        def reject(code: str, op_codes: tuple[str, ...] = ()) -> Rejected:
            return Rejected(tx_hash, xdr, code, op_codes)

        if not ops:
            return reject("tx_missing_operation")
        if len(ops) > MAX_OPS:
            return reject("tx_malformed")
        bounds = tx.preconditions.time_bounds if tx.preconditions else None
        if bounds is not None:
            unix = int(now.timestamp())
            if bounds.min_time and unix < bounds.min_time:
                return reject("tx_too_early")
            if bounds.max_time and unix > bounds.max_time:
                return reject("tx_too_late")
        if tx.fee < BASE_FEE * len(ops):
            return reject("tx_insufficient_fee")
        source_id = tx.source.account_id
        source = self.accounts.get(source_id)
        if source is None:
            return reject("tx_no_source_account")
        if tx.sequence != source.sequence + 1 + ahead:
            return reject("tx_bad_seq")
        used: set[int] = set()
        if signatures and not self._signed(envelope, source_id, used):
            return reject("tx_bad_auth")
        queued_fees = sum(
            BASE_FEE * len(p.envelope.transaction.operations)
            for p in self.queue
            if p.source == source_id
        )
        fee = (BASE_FEE * len(ops) + (queued_fees if ahead else 0)) * STROOP
        if source.available() < fee:
            return reject("tx_insufficient_balance")
        op_codes = []
        for op in ops:
            op_source = op.source.account_id if op.source is not None else source_id
            code = operations.check_valid(op, op_source)
            if code is None and signatures and op_source != source_id:
                if not self._signed(envelope, op_source, used):
                    code = "op_bad_auth"
            op_codes.append(code or "op_success")
        if any(c != "op_success" for c in op_codes):
            return reject("tx_failed", tuple(op_codes))
        if signatures and len(used) < len(envelope.signatures):
            return reject("tx_bad_auth_extra")
        return None

    def _signed(self, envelope: Any, account_id: str, used: set[int]) -> bool:
        """True when a signature verifies with the account's master key over the hash for this
        network (sandbox accounts have no other signers; weight 1 meets every threshold)."""
        keypair = Keypair.from_public_key(account_id)
        hint, payload = keypair.signature_hint(), envelope.hash()
        found = False
        for i, sig in enumerate(envelope.signatures):
            if sig.signature_hint != hint:
                continue
            try:
                keypair.verify(payload, sig.signature)
            except BadSignatureError:
                continue
            used.add(i)
            found = True
        return found

    # --- closing a ledger --------------------------------------------------------------------

    def close(self) -> ClosedLedger:
        """Close the next ledger: apply every queued transaction that is due, in order."""
        prev = self.latest
        sequence = prev.sequence + 1
        closed_at = max(self.clock(), prev.closed_at)
        outcomes: dict[str, TxRecord | Rejected] = {}
        waiting: list[_Pending] = []
        held: set[str] = set()  # sources with a held transaction: later ones must wait too
        index = 0
        touched: set[str] = set()
        for pending in self.queue:
            if pending.hold > 0 or pending.source in held:
                pending.hold = max(0, pending.hold - 1)
                held.add(pending.source)
                waiting.append(pending)
                continue
            rejected = self._check(
                pending.envelope, pending.hash, pending.xdr, 0, closed_at, signatures=False
            )
            if rejected is not None:  # became invalid while queued (too late, bad seq)
                outcomes[pending.hash] = rejected
                continue
            index += 1
            outcomes[pending.hash] = self._apply(pending, sequence, index, closed_at, touched)
        self.queue = waiting
        applied = [o for o in outcomes.values() if isinstance(o, TxRecord)]
        digest = hashlib.sha256(f"{prev.hash}:{sequence}".encode())
        for record in applied:
            digest.update(bytes.fromhex(record.hash))
        header = LedgerHeader(
            sequence=sequence,
            hash=digest.hexdigest(),
            prev_hash=prev.hash,
            closed_at=closed_at,
            successful_transaction_count=sum(1 for r in applied if r.successful),
            failed_transaction_count=sum(1 for r in applied if not r.successful),
            operation_count=sum(len(r.operations) for r in applied if r.successful),
        )
        self.headers.append(header)
        self._save(
            accounts=[self.accounts[a] for a in sorted(touched) if a in self.accounts],
            header=header,
            records=applied,
            queue=self._queue_rows(),
        )
        return ClosedLedger(header, outcomes)

    def _apply(
        self, pending: _Pending, ledger: int, index: int, at: datetime, touched: set[str]
    ) -> TxRecord:
        tx = pending.envelope.transaction
        source = self.accounts[pending.source]
        fee = BASE_FEE * len(tx.operations)  # no surge pricing: the base fee is charged
        source.balance -= fee * STROOP
        source.sequence = tx.sequence
        source.last_modified_ledger = ledger
        scratch = Scratch(self.accounts)
        results = []
        for op in tx.operations:
            op_source = op.source.account_id if op.source is not None else pending.source
            results.append((op, op_source, *operations.apply(op, op_source, scratch, ledger)))
        successful = all(code == "op_success" for _, _, code, _, _ in results)
        touched.add(pending.source)
        if successful:
            touched.update(scratch.commit())
        records = tuple(
            OpRecord(
                id=toid(ledger, index, i + 1),
                type=operations.op_type(op)[0],
                type_i=operations.op_type(op)[1],
                source_account=op_source,
                tx_hash=pending.hash,
                successful=successful,
                created_at=at,
                accounts=touched | {op_source},
                details=details,
            )
            for i, (op, op_source, _code, details, touched) in enumerate(results)
        )
        self.operations.extend(records)
        bounds = tx.preconditions.time_bounds if tx.preconditions else None
        memo_type, memo = memo_fields(tx.memo)
        record = TxRecord(
            hash=pending.hash,
            ledger=ledger,
            index=index,
            created_at=at,
            envelope_xdr=pending.xdr,
            successful=successful,
            source_account=pending.source,
            sequence=tx.sequence,
            fee_charged=fee,
            max_fee=tx.fee,
            memo_type=memo_type,
            memo=memo,
            signatures=tuple(
                base64.b64encode(s.signature).decode() for s in pending.envelope.signatures
            ),
            valid_after=bounds.min_time if bounds else None,
            valid_before=bounds.max_time if bounds else None,
            transaction_code="tx_success" if successful else "tx_failed",
            operation_codes=tuple(code for _, _, code, _, _ in results),
            operations=records,
        )
        self.transactions[pending.hash] = record
        return record


def memo_fields(memo: Any) -> tuple[str, str | None]:
    """Horizon's `memo_type` and `memo` (text as is, id in decimal, hashes in base64)."""
    if hasattr(memo, "memo_text"):
        return "text", memo.memo_text.decode("utf-8", errors="replace")
    if hasattr(memo, "memo_id"):
        return "id", str(memo.memo_id)
    if hasattr(memo, "memo_hash"):
        return "hash", base64.b64encode(memo.memo_hash).decode()
    if hasattr(memo, "memo_return"):
        return "return", base64.b64encode(memo.memo_return).decode()
    return "none", None
