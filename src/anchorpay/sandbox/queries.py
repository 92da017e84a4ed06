"""The sandbox ledger's read side: the queries Horizon's collections are made of (operations
and transactions in paging order, by account, ledger or hash; one operation, header or
balance). A mixin of `SandboxLedger`, which owns the state and its rules."""

from __future__ import annotations

import bisect
from decimal import Decimal

from anchorpay.sandbox.paging import pick
from anchorpay.sandbox.state import NATIVE, AccountState, LedgerHeader, OpRecord, TxRecord, toid


class LedgerQueries:
    accounts: dict[str, AccountState]
    transactions: dict[str, TxRecord]
    operations: list[OpRecord]
    headers: list[LedgerHeader]

    @property
    def latest(self) -> LedgerHeader:
        return self.headers[-1]

    def records(
        self,
        *,
        account: str | None = None,
        tx_hash: str | None = None,
        ledger: int | None = None,
        payments_only: bool = False,
        include_failed: bool = False,
        cursor: str | None = None,
        order: str = "asc",
        limit: int = 10,
    ) -> list[OpRecord]:
        """Operations in Horizon's paging order; `cursor` is a paging token or `now`.
        Raises ValueError for a cursor that is not one."""

        def keep(op: OpRecord) -> bool:
            return (
                (tx_hash is None or op.tx_hash == tx_hash)
                and (account is None or account in op.accounts)
                and (ledger is None or op.id >> 32 == ledger)
                and (not payments_only or op.is_payment)
                and (op.successful or include_failed or tx_hash is not None)
            )

        return pick(
            self.operations, lambda op: op.id, cursor=cursor, order=order, limit=limit,
            now=toid(self.latest.sequence + 1), keep=keep,
        )  # fmt: skip

    def transaction_records(
        self,
        *,
        account: str | None = None,
        ledger: int | None = None,
        include_failed: bool = False,
        cursor: str | None = None,
        order: str = "asc",
        limit: int = 10,
    ) -> list[TxRecord]:
        """Applied transactions in paging order: of an account (its own, or any of its
        operations touches it), of a ledger, or all; failed ones only when asked."""

        def keep(tx: TxRecord) -> bool:
            if ledger is not None and tx.ledger != ledger:
                return False
            if not (tx.successful or include_failed):
                return False
            return (
                account is None
                or account == tx.source_account
                or any(account in op.accounts for op in tx.operations)
            )

        return pick(
            list(self.transactions.values()), lambda tx: int(tx.paging_token), cursor=cursor,
            order=order, limit=limit, now=toid(self.latest.sequence + 1), keep=keep,
        )  # fmt: skip

    def operation(self, op_id: int) -> OpRecord | None:
        """One operation by id (ids grow with the ledger, so a binary search finds it)."""
        i = bisect.bisect_left(self.operations, op_id, key=lambda op: op.id)
        found = self.operations[i] if i < len(self.operations) else None
        return found if found is not None and found.id == op_id else None

    def header(self, sequence: int) -> LedgerHeader | None:
        first = self.headers[0].sequence
        index = sequence - first
        return self.headers[index] if 0 <= index < len(self.headers) else None

    def balance(self, account_id: str, asset_id: str = NATIVE) -> Decimal | None:
        """A test helper: the balance, or None without the account or trustline."""
        account = self.accounts.get(account_id)
        if account is None:
            return None
        if asset_id == NATIVE:
            return account.balance
        line = account.trustlines.get(asset_id)
        return None if line is None else line.balance
