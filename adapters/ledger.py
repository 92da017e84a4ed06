"""The ledger-client seam: what anchorpay asks of a Stellar network (Horizon or the sandbox).

Only this Protocol and its result types live here; the Horizon implementation over httpx is
in `horizon.py`. Errors: `LedgerUnavailable` is transient (timeouts, 429, 5xx, connection
errors); `LedgerNotFound` means Horizon answered 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from anchorpay.domain.payments import ObservedPayment as ObservedPayment  # re-exported
from anchorpay.domain.transaction import StellarTransaction


class LedgerError(Exception):
    """Base of every ledger-client failure. The message never contains secrets."""


class LedgerUnavailable(LedgerError):
    """Transient: timeout, connection error, 429 or 5xx. Retrying later may succeed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LedgerNotFound(LedgerError):
    """Horizon answered 404 (unknown account or transaction hash)."""


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str  # SEP-38 id: "stellar:native" or "stellar:CODE:ISSUER"
    balance: Decimal
    authorized: bool = True


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    sequence: int
    balances: tuple[Balance, ...]

    def trusts(self, asset_id: str) -> bool:
        """Native always counts as trusted; a credit asset needs an authorized trustline."""
        if asset_id == "stellar:native":
            return True
        return any(b.asset == asset_id and b.authorized for b in self.balances)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """Horizon's answer to a submission. `successful` False carries the result codes
    (`extras.result_codes`): `transaction` (e.g. "tx_bad_seq") and `operations`."""

    hash: str
    successful: bool
    ledger: int | None = None
    transaction_code: str | None = None
    operation_codes: tuple[str, ...] = ()
    # A successful submission's `stellar_transactions[]` entry, when the answer carries it.
    record: StellarTransaction | None = None


@dataclass(frozen=True, slots=True)
class LedgerTransaction:
    """A transaction found on the ledger by hash, with its payment operations."""

    hash: str
    ledger: int
    successful: bool
    created_at: datetime
    envelope_xdr: str
    memo: str | None
    memo_type: str
    source_account: str
    record: StellarTransaction  # ready for `stellar_transactions[]` (spec/rpc.md §5.5)


@dataclass(frozen=True, slots=True)
class PaymentsPage:
    payments: list[ObservedPayment] = field(default_factory=list)
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class LatestLedger:
    sequence: int
    closed_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerNetwork:
    """Which network a Horizon serves: its passphrase and, when Horizon has the genesis ledger
    (a sandbox always does), that ledger's hash and close time: the network's identity. A
    wiped network shares the passphrase, never the genesis hash."""

    passphrase: str
    genesis_hash: str | None
    created_at: datetime | None
    latest_ledger: int


class LedgerClient(Protocol):
    async def get_account(self, account_id: str) -> Account:
        """Raises LedgerNotFound for an unknown account, LedgerUnavailable when transient."""
        ...

    async def get_transaction(self, tx_hash: str) -> LedgerTransaction:
        """The transaction with its payments. LedgerNotFound when the hash is not on ledger."""
        ...

    async def submit(self, envelope_xdr: str) -> SubmitResult:
        """Submit a signed envelope. A 400 from Horizon is a SubmitResult with codes, never an
        exception; timeouts and 5xx raise LedgerUnavailable (the envelope may have landed)."""
        ...

    async def payments(self, account_id: str, cursor: str | None, limit: int = 200) -> PaymentsPage:
        """Payments to or from `account_id` after `cursor`, oldest first."""
        ...

    async def latest_ledger(self) -> LatestLedger: ...

    async def network(self) -> LedgerNetwork:
        """The network's identity (Horizon's root, and its genesis ledger when it has it)."""
        ...

    async def aclose(self) -> None: ...
