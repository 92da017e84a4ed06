"""The custody seam: how the payout worker asks a custodian to move money exactly once.

The worker depends only on this module. An adapter (the local Stellar signer here, Fireblocks
later) implements `CustodyAdapter`; the worker drives every payout through the same four
calls, and the exactly-once protocol (DESIGN.md) lives in how it orders them:

1. `prepare(order)` returns the idempotency material (local signer: the signed envelope, its
   hash, sequence number and time bound; Fireblocks: the external id). The worker COMMITS it
   before anything is sent, so a crash after this point resends the same material.
2. `submit(order)` sends exactly that material. Sending it again is always safe.
3. `lookup(order)` tells what the network made of it. Only `NotFound(dead=True)` proves that
   the material can never take effect, and only then may the worker `prepare` a new one.
4. `check_trustline(account, asset)` is read right before every submission.

Transient trouble (timeouts, 429, 5xx, a sequence race) raises `TransientCustodyError`; the
worker backs off and asks `lookup` before doing anything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from anchorpay.adapters.ledger import LedgerClient, LedgerError, LedgerNotFound, LedgerTransaction
from anchorpay.domain.transaction import StellarTransaction


@dataclass(frozen=True, slots=True)
class PayoutOrder:
    """What the adapter sees of a payout: what to pay, and the material stored so far."""

    id: str
    transaction_id: str
    purpose: str  # "payment" | "refund"
    destination: str
    asset: str  # SEP-38 id: "stellar:native" or "stellar:CODE:ISSUER"
    amount: str  # exact decimal string
    memo: str | None = None
    memo_type: str | None = None  # "text" | "id" | "hash" | "return" | None
    envelope_xdr: str | None = None
    tx_hash: str | None = None
    source_sequence: int | None = None
    valid_until: datetime | None = None
    adapter_ref: str | None = None
    source_account: str | None = None  # the lane the worker claimed it with (see below)
    # Its payment's index in an envelope shared with other payouts (operation batching);
    # None: the envelope carries this payout alone.
    op_index: int | None = None


@dataclass(frozen=True, slots=True)
class PayoutUpdate:
    """Idempotency material from `prepare`, to be committed before `submit`."""

    envelope_xdr: str | None = None
    tx_hash: str | None = None
    source_sequence: int | None = None
    valid_until: datetime | None = None
    adapter_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Confirmed:
    """Final and successful on the ledger. `record` is ready for `stellar_transactions[]`."""

    hash: str
    ledger: int | None
    record: StellarTransaction | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """Accepted by the custodian, not final yet: ask `lookup` again later."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class NotFound:
    """The network does not know the material. `dead` is True only when it provably can
    never take effect any more (local signer: the hash is absent and the time bound has
    passed on the ledger); then a new `prepare` is safe. Otherwise resubmit the same."""

    dead: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    """A permanent failure: nothing was paid, and retrying cannot help. `reason` is a
    sentence a person can act on; `code` is the custodian's code (e.g. op_no_destination)."""

    reason: str
    code: str | None = None


SubmitOutcome = Confirmed | Pending | Failed | NotFound
LookupResult = Confirmed | Pending | NotFound | Failed


@dataclass(frozen=True, slots=True)
class Batch:
    """`prepare_batch`'s answer: one envelope for the `accepted` payouts, whose payment
    operations are in that order (each payout's `op_index`), and the payouts that can never
    be built, with why (they are not in the envelope)."""

    update: PayoutUpdate | None  # None when nothing was accepted
    accepted: tuple[str, ...]  # payout ids, in operation order
    refused: dict[str, PermanentCustodyError]


class TransientCustodyError(Exception):
    """Retry later (timeouts, 429, 5xx, tx_bad_seq, tx_too_late, tx_insufficient_fee).
    The material may or may not have reached the network: `lookup` first, then resubmit."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class PermanentCustodyError(Exception):
    """`prepare` cannot build valid material for this payout (bad memo, bad amount...)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class CustodyAdapter(Protocol):
    @property
    def name(self) -> str:
        """Stored in `payouts.adapter` ("stellar", "fireblocks")."""
        ...

    @property
    def source_accounts(self) -> tuple[str, ...]:
        """The accounts whose sequence numbers submissions use (local signer: the
        distribution account, or its channel accounts). Each carries one payout in flight
        at a time; the worker claims a payout with a free one and passes it as
        `order.source_account`. Empty: the custodian sequences its own (Fireblocks)."""
        ...

    async def prepare(self, order: PayoutOrder) -> PayoutUpdate:
        """Build the idempotency material. No money moves. May raise PermanentCustodyError
        or TransientCustodyError."""
        ...

    async def submit(self, order: PayoutOrder) -> SubmitOutcome:
        """Send the prepared material (again). Raises TransientCustodyError when the outcome
        is unknown."""
        ...

    async def lookup(self, order: PayoutOrder) -> LookupResult:
        """What happened to the prepared material. Raises TransientCustodyError."""
        ...

    async def check_trustline(self, account: str, asset: str) -> bool:
        """Whether `account` can receive `asset` now. Raises TransientCustodyError."""
        ...

    async def aclose(self) -> None: ...


class BatchingCustody(CustodyAdapter, Protocol):
    """An adapter that can carry several payouts in one network transaction (the local
    signer: up to STELLAR_MAX_OPS_PER_TX payment operations in one envelope). The worker
    groups due memo-less payouts of one lane and drives the group through these; the
    exactly-once rules hold per envelope, and every payout's row stores the whole envelope,
    so a payout alone can always be resolved by `lookup` (its `op_index` says which
    operation is its own)."""

    @property
    def max_ops_per_tx(self) -> int: ...

    async def prepare_batch(self, orders: Sequence[PayoutOrder]) -> Batch:
        """One envelope paying every order that can be built. May raise
        TransientCustodyError (nothing was built)."""
        ...

    async def submit_batch(self, orders: Sequence[PayoutOrder]) -> dict[str, SubmitOutcome]:
        """Send the envelope the orders share (once) and say what it means for each: its
        own operation confirmed or failed, or `NotFound(dead=True)` when the envelope failed
        because of ANOTHER operation (nothing was paid; the payout is rebuilt). Raises
        TransientCustodyError when the outcome is unknown."""
        ...


def max_ops_per_tx(adapter: CustodyAdapter) -> int:
    """How many payouts `adapter` can put in one network transaction (1: no batching)."""
    return int(getattr(adapter, "max_ops_per_tx", 1))


# --- reading the ledger, for adapters whose payouts land on Stellar -------------------------


async def read_trustline(ledger: LedgerClient, account: str, asset: str) -> bool:
    """Whether `account` can receive `asset` now: native always, a missing account nothing.
    Raises TransientCustodyError when the ledger cannot be read."""
    if asset == "stellar:native":
        return True
    try:
        found = await ledger.get_account(account)
    except LedgerNotFound:
        return False
    except LedgerError as exc:
        raise TransientCustodyError(f"Could not read account {account}: {exc}") from None
    return found.trusts(asset)


async def find_transaction(ledger: LedgerClient, tx_hash: str) -> LedgerTransaction | None:
    """The transaction `tx_hash` on the ledger, or None when it is not there (yet). Raises
    TransientCustodyError when the ledger cannot be read."""
    try:
        return await ledger.get_transaction(tx_hash)
    except LedgerNotFound:
        return None
    except LedgerError as exc:
        raise TransientCustodyError(f"Could not look up {tx_hash}: {exc}") from None
