"""`anchorpay reconcile`: gather the ledger's payments from the payout source accounts and
anchorpay's payouts, match them (`domain.reconcile`, pure) and render the report.

Read-only: one paged read per source account (oldest first, 200 a page) and SELECTs (on
PostgreSQL in a READ ONLY transaction). The payouts are read twice, around the ledger read,
so a payout the worker confirms meanwhile is neither reported missing (first read: not yet
confirmed) nor its payment unexplained (second read: found by hash).

Source accounts: with the local signer, the distribution account (whose payment operations
every envelope carries, whatever channel is its source) and the channel accounts; with
Fireblocks, the vault's Stellar address of each mapped asset, as Fireblocks gives it.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import runtime
from anchorpay.adapters.ledger import (
    LedgerClient,
    LedgerError,
    LedgerNotFound,
    LedgerUnavailable,
    ObservedPayment,
    PaymentsPage,
)
from anchorpay.domain.reconcile import (
    CONFIRMED,
    PAYMENT_KINDS,
    LedgerPayment,
    Owed,
    PayoutRecord,
    reconcile,
)
from anchorpay.reconcile_report import Format, Report, render
from anchorpay.settings import ConfigError, Settings
from anchorpay.store.tables import PayoutRow, TransactionRow

if TYPE_CHECKING:
    from anchorpay.adapters.fireblocks.config import FireblocksConfig

__all__ = ["Format", "Report", "render"]
PAGE_LIMIT = 200
PAGE_ATTEMPTS = 3  # a transient Horizon error mid-history should not waste the whole read
RETRY_S = 0.5  # then 1 s
CHUNK = 500  # hashes / ids per IN (...) list
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_P = PayoutRow.__table__  # type: ignore[attr-defined]
_T = TransactionRow.__table__  # type: ignore[attr-defined]


class ReconcileError(Exception):
    """The ledger, Fireblocks or the database could not be read: nothing was proven."""


# --- usage ----------------------------------------------------------------------------------


def parse_since(value: str | None) -> datetime | None:
    """`--since YYYY-MM-DD`: midnight UTC of that day."""
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise ConfigError(f"--since must be a date YYYY-MM-DD (got {value!r})") from None
    return day.replace(tzinfo=UTC)


def parse_format(value: str) -> Format:
    if value == "table":
        return "table"
    if value == "json":
        return "json"
    raise ConfigError(f"--format must be 'table' or 'json' (got {value!r})")


@dataclass(frozen=True)
class Sources:
    """Where payouts come from: the adapter's name and its accounts (Fireblocks: looked up)."""

    adapter: str
    accounts: tuple[str, ...] = ()
    fireblocks: FireblocksConfig | None = None


def sources_of(settings: Settings) -> Sources:
    """Checked before anything is read: a bad custody setting is ConfigError (exit 2)."""
    custody = settings.effective_custody_type
    if custody == "stellar":
        from stellar_sdk import Keypair

        from anchorpay.adapters.stellar_signer import channel_secrets, distribution_secret

        default = runtime.distribution_secret_default(settings)
        secrets = [distribution_secret(settings, default), *channel_secrets(settings)]
        try:
            accounts = [str(Keypair.from_secret(s).public_key) for s in secrets]
        except Exception:  # the SDK's message could echo the value: say nothing of it
            raise ConfigError(
                "STELLAR_DISTRIBUTION_SECRET or STELLAR_CHANNEL_SECRETS is not a valid secret"
            ) from None
        return Sources("stellar", tuple(dict.fromkeys(accounts)))
    if custody == "fireblocks":
        return Sources(
            "fireblocks", fireblocks=runtime.load_fireblocks(settings, settings.load_assets())
        )
    raise ConfigError(f"reconcile needs CUSTODY_TYPE=stellar or fireblocks (custody is {custody})")


def check_database(url: str) -> None:
    """A SQLite file that does not exist is a wrong DATABASE_URL: do not create it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(str(parsed.database)).is_file():
            raise ConfigError(f"the database {parsed.database} does not exist")


async def vault_accounts(config: FireblocksConfig) -> tuple[str, ...]:
    """The vault's Stellar addresses of the mapped assets, read (never created) from
    Fireblocks' `addresses_paginated`."""
    from anchorpay.adapters.fireblocks import build_client
    from anchorpay.adapters.fireblocks.errors import FireblocksError

    client = build_client(config)
    found: dict[str, None] = {}
    try:
        for fb_asset in dict.fromkeys(config.asset_ids.values()):
            found.update(
                dict.fromkeys(await client.vault_addresses(config.vault_account_id, fb_asset))
            )
    except FireblocksError as exc:
        raise ReconcileError(f"could not read the Fireblocks vault's address: {exc}") from None
    finally:
        await client.aclose()
    if not found:
        raise ReconcileError("the Fireblocks vault has no address for the mapped assets")
    return tuple(found)


# --- the ledger -----------------------------------------------------------------------------


Progress = Callable[[str, int, int], None]  # (account, pages, records) after each page


def stderr_progress(every: int | None = None) -> Progress:
    """A stderr line every few pages (stdout stays the report's): on a terminal every 1,000
    records, in a log (cron) only on long runs, every 4,000."""
    step = every or (5 if sys.stderr.isatty() else 20)

    def show(account: str, pages: int, records: int) -> None:
        if pages % step == 0:
            line = f"reconcile: read {records:,} payments of {account[:4]}…{account[-4:]}"
            print(line, file=sys.stderr, flush=True)

    return show


async def read_payments(
    ledger: LedgerClient,
    accounts: Sequence[str],
    since: datetime | None,
    progress: Progress | None = None,
) -> list[LedgerPayment]:
    """The successful outgoing payments of `accounts` since `since`, oldest first, once each
    (a channel's read repeats the distribution account's payments it carried)."""
    found: dict[str, LedgerPayment] = {}
    sources = frozenset(accounts)
    for account in accounts:
        cursor: str | None = None
        pages = records = 0
        while True:
            page = await _page(ledger, account, cursor)
            pages, records = pages + 1, records + len(page.payments)
            for observed in page.payments:
                if _outgoing(observed, sources, since) and observed.id not in found:
                    found[observed.id] = _payment(observed)
            if progress is not None:
                progress(account, pages, records)
            if len(page.payments) < PAGE_LIMIT or page.next_cursor is None:
                break
            cursor = page.next_cursor
    return sorted(found.values(), key=lambda p: (p.created_at, p.id))


async def _page(ledger: LedgerClient, account: str, cursor: str | None) -> PaymentsPage:
    for attempt in range(PAGE_ATTEMPTS):
        try:
            return await ledger.payments(account, cursor, PAGE_LIMIT)
        except LedgerNotFound:
            return PaymentsPage()  # an account not (yet) on the ledger has paid nothing
        except LedgerUnavailable as exc:
            if attempt + 1 == PAGE_ATTEMPTS:
                raise ReconcileError(f"could not read the ledger: {exc}") from None
            await asyncio.sleep(RETRY_S * 2**attempt)
        except LedgerError as exc:
            raise ReconcileError(f"could not read the ledger: {exc}") from None
    raise AssertionError("unreachable")


def _outgoing(p: ObservedPayment, sources: Collection[str], since: datetime | None) -> bool:
    return (
        p.successful
        and p.type in PAYMENT_KINDS
        and p.source_account in sources
        and (since is None or p.created_at >= since)
    )


def _payment(p: ObservedPayment) -> LedgerPayment:
    try:
        amount = Decimal(p.amount)
    except InvalidOperation:
        raise ReconcileError(f"the ledger gave operation {p.id} the amount {p.amount!r}") from None
    fields = (p.id, p.transaction_hash, p.source_account, p.destination_account, p.asset)
    return LedgerPayment(*fields, amount, p.created_at)


# --- the database ---------------------------------------------------------------------------


async def _read_only(session: AsyncSession) -> AsyncConnection:
    conn = await session.connection()
    if conn.dialect.name == "postgresql":  # the database itself guarantees no write
        await conn.execute(text("SET TRANSACTION READ ONLY"))
    return conn


async def _payouts(conn: AsyncConnection, where: ColumnElement[bool]) -> list[PayoutRecord]:
    names = ("id", "transaction_id", "purpose", "state", "asset", "amount", "refund_fee")
    query = select(*(_P.c[n] for n in (*names, "tx_hash", "created_at", "op_index"))).where(where)
    return [
        PayoutRecord(
            **{**r, "amount": Decimal(r["amount"]), "refund_fee": Decimal(r["refund_fee"] or 0)}
        )
        for r in (await conn.execute(query)).mappings()
    ]


async def read_payouts(
    sessions: async_sessionmaker[AsyncSession], adapter: str, since: datetime | None
) -> list[PayoutRecord]:
    """The payouts this custody made (a payout of another adapter is not on these accounts)."""
    where = _P.c.adapter == adapter
    if since is not None:
        where = where & (_P.c.created_at >= since)
    async with sessions() as session:
        return await _payouts(await _read_only(session), where)


async def read_by_hash(
    sessions: async_sessionmaker[AsyncSession], hashes: Collection[str]
) -> list[PayoutRecord]:
    found: list[PayoutRecord] = []
    async with sessions() as session:
        conn = await _read_only(session)
        for chunk in _chunks(sorted(hashes)):
            found += await _payouts(conn, _P.c.tx_hash.in_(chunk))
    return found


async def read_owed(
    sessions: async_sessionmaker[AsyncSession], transaction_ids: Collection[str]
) -> dict[str, Owed]:
    owed: dict[str, Owed] = {}
    async with sessions() as session:
        conn = await _read_only(session)
        for chunk in _chunks(sorted(transaction_ids)):
            query = select(_T.c.id, _T.c.amount_in, _T.c.amount_out).where(_T.c.id.in_(chunk))
            for r in (await conn.execute(query)).all():
                owed[r.id] = Owed(r.id, _decimal(r.amount_in), _decimal(r.amount_out))
    return owed


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


# --- the run --------------------------------------------------------------------------------


async def run(
    sources: Sources,
    sessions: async_sessionmaker[AsyncSession],
    ledger: LedgerClient,
    *,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> Report:
    """What the CLI runs: ReconcileError when the ledger, Fireblocks or the database fail."""
    accounts = sources.accounts
    if sources.fireblocks is not None:
        accounts = await vault_accounts(sources.fireblocks)
    try:
        payouts = {p.id: p for p in await read_payouts(sessions, sources.adapter, since)}
        payments = await read_payments(ledger, accounts, since, progress)
        # A batch's hash is read again whole: a payout of it may predate `since`.
        known = {p.tx_hash for p in payouts.values() if p.state == CONFIRMED and p.op_index is None}
        unknown = {p.tx_hash for p in payments} - known
        payouts.update((p.id, p) for p in await read_by_hash(sessions, unknown))
        paid = {p.tx_hash for p in payments}
        tx_ids = {p.transaction_id for p in payouts.values() if p.tx_hash in paid}
        owed = await read_owed(sessions, tx_ids)
    except (SQLAlchemyError, OSError) as exc:
        first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ReconcileError(f"could not read the database: {first}") from None
    result = reconcile(list(payouts.values()), payments, owed, since)
    return Report(result, accounts, since, len(payments))
