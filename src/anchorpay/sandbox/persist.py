"""The sandbox ledger on disk: one SQLite file (SANDBOX_STATE) holding the accounts with their
trustlines and the keys the sandbox made, the closed ledger headers, the applied transactions
with their operations, and the queue, so that a restarted sandbox continues the same network
(same genesis hash, ledger sequence and paging tokens).

Plain `sqlite3`, synchronous like the ledger itself: every change is written in one SQLite
transaction before the ledger answers anyone (a submission's answer, a page of payments), so
nothing a client saw can be lost when the process dies. `:memory:` keeps nothing (tests).
"""

from __future__ import annotations

import fcntl
import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from anchorpay.sandbox.state import AccountState, LedgerHeader, OpRecord, Trustline, TxRecord

MEMORY = ":memory:"
SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (account_id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (account_id TEXT PRIMARY KEY, secret TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS headers (sequence INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    ledger INTEGER NOT NULL, idx INTEGER NOT NULL, hash TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL, PRIMARY KEY (ledger, idx));
CREATE TABLE IF NOT EXISTS queue (position INTEGER PRIMARY KEY, xdr TEXT NOT NULL,
    hold INTEGER NOT NULL);
"""


class SandboxStateError(Exception):
    """The state file cannot be used; the message is one line for the operator."""


def lock_state(path: str) -> IO[bytes]:
    """Hold the state's lock (released when the returned file is closed or the process ends);
    SandboxStateError when another process holds it."""
    lock = open(f"{path}.lock", "ab")  # held open while the process owns the state
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise SandboxStateError(
            f"the sandbox state {path} is in use by another process; stop it, or give "
            "SANDBOX_STATE another file"
        ) from None
    return lock


class LedgerFile:
    """Write-through storage of one sandbox network, owned by one process at a time (an
    exclusive lock on `<path>.lock`): two processes each serving their own copy of one file
    would write diverging ledgers into it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock: IO[bytes] | None = None
        if path != MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._lock = lock_state(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a killed process loses nothing committed; only a power cut may
            # lose the last changes, a fair price for a sandbox (no fsync per submission).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise SandboxStateError(f"the sandbox state {path} cannot be opened: {exc}") from None

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    # --- reading -----------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def load(self) -> Loaded:
        rows = self._db.execute("SELECT body FROM accounts").fetchall()
        accounts = [_account(json.loads(r[0])) for r in rows]
        keys = dict(self._db.execute("SELECT account_id, secret FROM keys").fetchall())
        headers = [
            _header(json.loads(r[0]))
            for r in self._db.execute("SELECT body FROM headers ORDER BY sequence")
        ]
        txs = [
            _tx(json.loads(r[0]))
            for r in self._db.execute("SELECT body FROM transactions ORDER BY ledger, idx")
        ]
        queue = [
            (str(r[0]), int(r[1]))
            for r in self._db.execute("SELECT xdr, hold FROM queue ORDER BY position")
        ]
        return Loaded(accounts, keys, headers, txs, queue)

    # --- writing -----------------------------------------------------------------------------

    def save(
        self,
        *,
        meta: dict[str, str] | None = None,
        accounts: Iterable[AccountState] = (),
        keys: dict[str, str] | None = None,
        header: LedgerHeader | None = None,
        records: Sequence[TxRecord] = (),
        queue: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        """One SQLite transaction; `queue` (xdr, hold) replaces the stored queue."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for key, value in (meta or {}).items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            for account in accounts:
                db.execute(
                    "INSERT OR REPLACE INTO accounts VALUES (?, ?)",
                    (account.account_id, json.dumps(_account_json(account))),
                )
            for account_id, secret in (keys or {}).items():
                db.execute("INSERT OR REPLACE INTO keys VALUES (?, ?)", (account_id, secret))
            if header is not None:
                db.execute(
                    "INSERT OR REPLACE INTO headers VALUES (?, ?)",
                    (header.sequence, json.dumps(_header_json(header))),
                )
            for tx in records:
                db.execute(
                    "INSERT OR REPLACE INTO transactions VALUES (?, ?, ?, ?)",
                    (tx.ledger, tx.index, tx.hash, json.dumps(_tx_json(tx))),
                )
            if queue is not None:
                db.execute("DELETE FROM queue")
                db.executemany(
                    "INSERT INTO queue VALUES (?, ?, ?)",
                    [(i, xdr, hold) for i, (xdr, hold) in enumerate(queue)],
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


class Loaded:
    def __init__(
        self,
        accounts: list[AccountState],
        keys: dict[str, str],
        headers: list[LedgerHeader],
        transactions: list[TxRecord],
        queue: list[tuple[str, int]],
    ) -> None:
        self.accounts, self.keys, self.headers = accounts, keys, headers
        self.transactions, self.queue = transactions, queue


# --- JSON forms (Decimals and times as strings, so nothing is rounded) ----------------------


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _account_json(a: AccountState) -> dict[str, Any]:
    return {
        "id": a.account_id,
        "sequence": a.sequence,
        "balance": str(a.balance),
        "last_modified_ledger": a.last_modified_ledger,
        "last_modified_time": _time(a.last_modified_time),
        "trustlines": {
            asset: [str(t.balance), str(t.limit), t.authorized, t.last_modified_ledger]
            for asset, t in a.trustlines.items()
        },
    }


def _account(d: dict[str, Any]) -> AccountState:
    return AccountState(
        account_id=d["id"],
        sequence=int(d["sequence"]),
        balance=Decimal(d["balance"]),
        trustlines={
            asset: Trustline(Decimal(balance), Decimal(limit), bool(authorized), int(modified))
            for asset, (balance, limit, authorized, modified) in d["trustlines"].items()
        },
        last_modified_ledger=int(d["last_modified_ledger"]),
        last_modified_time=_parse_time(d["last_modified_time"]),
    )


def _header_json(h: LedgerHeader) -> dict[str, Any]:
    return {
        "sequence": h.sequence,
        "hash": h.hash,
        "prev_hash": h.prev_hash,
        "closed_at": _time(h.closed_at),
        "counts": [h.successful_transaction_count, h.failed_transaction_count, h.operation_count],
    }


def _header(d: dict[str, Any]) -> LedgerHeader:
    ok, failed, ops = d["counts"]
    closed_at = _parse_time(d["closed_at"])
    assert closed_at is not None
    return LedgerHeader(d["sequence"], d["hash"], d["prev_hash"], closed_at, ok, failed, ops)


def _op_json(op: OpRecord) -> dict[str, Any]:
    return {
        "id": op.id,
        "type": op.type,
        "type_i": op.type_i,
        "source": op.source_account,
        "successful": op.successful,
        "accounts": sorted(op.accounts),
        "details": op.details,
    }


def _tx_json(t: TxRecord) -> dict[str, Any]:
    return {
        "hash": t.hash,
        "ledger": t.ledger,
        "index": t.index,
        "created_at": _time(t.created_at),
        "envelope_xdr": t.envelope_xdr,
        "successful": t.successful,
        "source": t.source_account,
        "sequence": t.sequence,
        "fee_charged": t.fee_charged,
        "max_fee": t.max_fee,
        "memo_type": t.memo_type,
        "memo": t.memo,
        "signatures": list(t.signatures),
        "valid_after": t.valid_after,
        "valid_before": t.valid_before,
        "transaction_code": t.transaction_code,
        "operation_codes": list(t.operation_codes),
        "operations": [_op_json(op) for op in t.operations],
    }


def _tx(d: dict[str, Any]) -> TxRecord:
    created_at = _parse_time(d["created_at"])
    assert created_at is not None
    ops = tuple(
        OpRecord(
            id=o["id"],
            type=o["type"],
            type_i=o["type_i"],
            source_account=o["source"],
            tx_hash=d["hash"],
            successful=o["successful"],
            created_at=created_at,
            accounts=frozenset(o["accounts"]),
            details=dict(o["details"]),
        )
        for o in d["operations"]
    )
    return TxRecord(
        hash=d["hash"],
        ledger=d["ledger"],
        index=d["index"],
        created_at=created_at,
        envelope_xdr=d["envelope_xdr"],
        successful=d["successful"],
        source_account=d["source"],
        sequence=d["sequence"],
        fee_charged=d["fee_charged"],
        max_fee=d["max_fee"],
        memo_type=d["memo_type"],
        memo=d["memo"],
        signatures=tuple(d["signatures"]),
        valid_after=d["valid_after"],
        valid_before=d["valid_before"],
        transaction_code=d["transaction_code"],
        operation_codes=tuple(d["operation_codes"]),
        operations=ops,
    )
