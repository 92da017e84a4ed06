"""The sandbox ledger's state and records: accounts with trustlines, applied transactions,
their operations and closed ledger headers. Plain values; the rules are in `ledger.py` and
`operations.py`."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

NATIVE = "stellar:native"
STROOP = Decimal("0.0000001")
BASE_FEE = 100  # stroops per operation
BASE_RESERVE = Decimal("0.5")  # XLM per entry, as on the public network
MAX_OPS = 100
MAX_AMOUNT = Decimal("922337203685.4775807")  # int64 stroops: the default trustline limit
PAYMENT_TYPES = frozenset(
    {
        "create_account",
        "payment",
        "path_payment_strict_receive",
        "path_payment_strict_send",
        "account_merge",
    }
)


def amount(value: Decimal | str | int) -> Decimal:
    """An exact 7-decimal amount (Stellar's precision)."""
    return Decimal(value).quantize(STROOP)


def amount_str(value: Decimal) -> str:
    """Horizon's form: always seven decimals, `"100.0000000"`."""
    return f"{amount(value):f}"


def toid(ledger: int, tx_index: int = 0, op_index: int = 0) -> int:
    """Horizon's total order id: what ids and paging tokens of records are made of."""
    return (ledger << 32) | (tx_index << 12) | op_index


def asset_issuer(asset_id: str) -> str | None:
    parts = asset_id.split(":")
    return parts[2] if len(parts) == 3 else None


def asset_code(asset_id: str) -> str:
    parts = asset_id.split(":")
    return "XLM" if asset_id == NATIVE else parts[1]


def is_credit_asset_id(asset_id: str) -> bool:
    parts = asset_id.split(":")
    return (
        len(parts) == 3
        and parts[0] == "stellar"
        and 1 <= len(parts[1]) <= 12
        and parts[1].isalnum()
        and len(parts[2]) == 56
        and parts[2].startswith("G")
    )


@dataclass(slots=True)
class Trustline:
    balance: Decimal = Decimal("0.0000000")
    limit: Decimal = MAX_AMOUNT
    authorized: bool = True
    last_modified_ledger: int = 0


@dataclass(slots=True)
class AccountState:
    account_id: str
    sequence: int
    balance: Decimal  # native XLM
    trustlines: dict[str, Trustline] = field(default_factory=dict)
    last_modified_ledger: int = 0
    last_modified_time: datetime | None = None

    def min_balance(self, extra_entries: int = 0) -> Decimal:
        """The reserve: two base entries plus one per trustline."""
        return (2 + len(self.trustlines) + extra_entries) * BASE_RESERVE

    def available(self) -> Decimal:
        return self.balance - self.min_balance()


class Scratch:
    """Copy-on-read overlay over the accounts, so that a transaction whose operations fail
    leaves no trace but its fee and sequence number (Stellar's all-or-nothing)."""

    def __init__(self, accounts: dict[str, AccountState]) -> None:
        self._base = accounts
        self._changed: dict[str, AccountState] = {}

    def get(self, account_id: str) -> AccountState | None:
        if account_id in self._changed:
            return self._changed[account_id]
        found = self._base.get(account_id)
        if found is None:
            return None
        self._changed[account_id] = mine = copy.deepcopy(found)
        return mine

    def create(self, account: AccountState) -> None:
        self._changed[account.account_id] = account

    def commit(self) -> list[str]:
        """Apply the changes; answers the ids of the accounts changed (or read)."""
        changed = list(self._changed)
        self._base.update(self._changed)
        self._changed = {}
        return changed


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One operation as Horizon shows it; `details` are the type's own fields."""

    id: int
    type: str
    type_i: int
    source_account: str
    tx_hash: str
    successful: bool
    created_at: datetime
    accounts: frozenset[str]  # every account the operation touches (for per-account lists)
    details: dict[str, str]

    @property
    def paging_token(self) -> str:
        return str(self.id)

    @property
    def is_payment(self) -> bool:
        return self.type in PAYMENT_TYPES


@dataclass(frozen=True, slots=True)
class TxRecord:
    """An applied transaction (successful or failed), as Horizon keeps it."""

    hash: str
    ledger: int
    index: int  # application order within its ledger, from 1
    created_at: datetime
    envelope_xdr: str
    successful: bool
    source_account: str
    sequence: int
    fee_charged: int
    max_fee: int
    memo_type: str
    memo: str | None
    signatures: tuple[str, ...]
    valid_after: int | None
    valid_before: int | None
    transaction_code: str
    operation_codes: tuple[str, ...]
    operations: tuple[OpRecord, ...]

    @property
    def paging_token(self) -> str:
        return str(toid(self.ledger, self.index))


@dataclass(frozen=True, slots=True)
class Rejected:
    """Refused without being applied: no fee, no sequence number consumed."""

    hash: str | None
    envelope_xdr: str
    transaction_code: str
    operation_codes: tuple[str, ...] = ()
    malformed: bool = False  # the envelope could not be decoded at all


@dataclass(frozen=True, slots=True)
class Queued:
    hash: str


@dataclass(frozen=True, slots=True)
class LedgerHeader:
    sequence: int
    hash: str
    prev_hash: str
    closed_at: datetime
    successful_transaction_count: int = 0
    failed_transaction_count: int = 0
    operation_count: int = 0

    @property
    def paging_token(self) -> str:
        return str(toid(self.sequence))


SubmitOutcome = Rejected | Queued | TxRecord
