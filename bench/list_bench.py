"""`get_transactions` at scale: `list_page` (the store function the RPC calls, through the
engine of `store/db.py`) against its own SQL on the bare driver, on a table of a million
transactions, for every filter and order the API offers, at pages spread over the whole
result (page_number deep into the table included).

A SQLite file always; PostgreSQL too when ANCHORPAY_BENCH_POSTGRES_URL (or
ANCHORPAY_TEST_POSTGRES_URL) names a server (a throwaway database is created on it and
dropped after). ANCHORPAY_BENCH_LIST_ROWS (default 1,000,000) and
ANCHORPAY_BENCH_LIST_PAGES (pages timed per shape, default 200) make a quicker run.

The rows are filled in bulk (executemany / COPY, the indexes built after), as a migrated
database holds them: a realistic spread of statuses and kinds, `transfer_received_at` and
`user_action_required_by` mostly set or mostly NULL as a live anchor's would be.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import accumulate, islice
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from anchorpay.store import migrate
from anchorpay.store import transactions as repo
from anchorpay.store.db import SQLITE_MMAP_BYTES, create_engine, session_factory
from anchorpay.store.transactions import Order, OrderBy

ROWS = int(os.environ.get("ANCHORPAY_BENCH_LIST_ROWS", "1000000"))
PAGES = int(os.environ.get("ANCHORPAY_BENCH_LIST_PAGES", "200"))
PAGE_SIZE = 20
TABLE = "sep24_transactions"
USDC = "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"

# Per mille, roughly a live anchor's table: mostly finished, a tail of everything else.
STATUS_WEIGHTS = {
    "completed": 700,
    "incomplete": 60,
    "pending_user_transfer_start": 50,
    "expired": 50,
    "pending_anchor": 30,
    "refunded": 20,
    "error": 20,
    "pending_external": 10,
    "pending_stellar": 10,
    "pending_user_transfer_complete": 10,
    "pending_trust": 5,
    "on_hold": 5,
    "pending_user": 5,
    "pending_transaction_info_update": 5,
    "no_market": 3,
    "too_small": 3,
    "too_large": 3,
}
FUNDS_RECEIVED = {"completed", "refunded", "pending_anchor", "pending_stellar", "pending_trust"}
USER_ACTION = {"pending_user_transfer_start", "pending_user", "pending_transaction_info_update"}

# The filters timed: none, one status, several (a work queue: ~11% of the rows).
FILTERS: dict[str, tuple[str, ...] | None] = {
    "all": None,
    "one": ("pending_anchor",),
    "several": ("pending_user_transfer_start", "pending_anchor", "pending_stellar", "error"),
    # Several that match most of the table: the merge of their walks is the dearest shape.
    "most": ("completed", "refunded", "expired", "error"),
}
ORDER_BYS: tuple[OrderBy, ...] = ("created_at", "transfer_received_at", "user_action_required_by")
ORDERS: tuple[Order, ...] = ("asc", "desc")


# ---- the rows ----------------------------------------------------------------------------


def _account(rng: random.Random) -> str:
    return "G" + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=55))


# The columns filled, in the order `generate` yields them; any other column keeps its default.
COLUMNS = (
    "id", "sep", "kind", "status", "version", "requested_asset", "amount_expected",
    "amount_in", "amount_in_asset", "amount_out", "amount_out_asset", "amount_fee",
    "amount_fee_asset", "fee_details", "started_at", "updated_at", "completed_at",
    "transfer_received_at", "user_action_required_by", "message", "stellar_transactions",
    "stellar_transaction_id", "from_account", "to_account", "withdraw_anchor_account", "memo",
    "memo_type", "client_domain", "sep10_account",
)  # fmt: skip
_FEES = '[{"name": "service", "amount": "%d", "description": null}]'
_STELLAR = (
    '[{"id": "%s", "created_at": "%s", "envelope": null, "payments": [{"id": "%d", '
    '"amount": "%d", "asset": "USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5", '
    '"payment_type": "payment", "source_account": "%s", "destination_account": "%s"}], '
    '"memo": null, "memo_type": null, "refund": false}]'
)


def _uuid4(bits: int) -> str:
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def generate(n: int, stamp: Callable[[datetime], Any], seed: int = 19) -> Iterator[tuple[Any, ...]]:
    """`n` rows of COLUMNS; `stamp` turns an aware UTC datetime into the driver's value.
    Plain Python kept cheap (a few µs a row): the fill of a million must take seconds."""
    rng = random.Random(seed)
    rand, below, bits = rng.random, rng.randrange, rng.getrandbits
    statuses = list(STATUS_WEIGHTS)
    cumulative = list(accumulate(STATUS_WEIGHTS.values()))
    total = cumulative[-1]
    accounts = [_account(rng) for _ in range(1000)]
    anchor = accounts[0]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    step_us = 730 * 86_400 * 1_000_000 // max(n, 1)
    started = start
    for i in range(n):
        # Now and then two transactions start in the same microsecond: ties, ordered by id.
        if rand() >= 0.02:
            started = start + timedelta(microseconds=step_us * i + below(1_000_000))
        status = statuses[bisect_right(cumulative, below(total))]
        deposit = rand() < 0.6
        amount = below(100, 1_000_000)
        fee = amount // 100
        user = accounts[below(1000)]
        received = started + timedelta(seconds=below(60, 3600))
        funds = status in FUNDS_RECEIVED or (status == "error" and rand() < 0.5)
        final = status == "completed" or status == "refunded"
        # Deadlines are set on the minute (ties again); nearly every other status clears them.
        deadline = None
        if status in USER_ACTION or (status == "incomplete" and rand() < 0.5):
            deadline = stamp(
                (started + timedelta(hours=below(1, 48))).replace(second=0, microsecond=0)
            )
        tx_hash = f"{bits(256):064x}" if final else None
        yield (
            _uuid4(bits(128)),
            "24",
            "deposit" if deposit else "withdrawal",
            status,
            below(1, 8),
            USDC,
            str(amount),
            str(amount) if funds else None,
            ("iso4217:USD" if deposit else USDC) if funds else None,
            str(amount - fee) if funds else None,
            (USDC if deposit else "iso4217:USD") if funds else None,
            str(fee) if funds else None,
            "iso4217:USD" if funds else None,
            _FEES % fee if funds else None,
            stamp(started),
            stamp(received if funds else started),
            stamp(received + timedelta(seconds=30)) if final else None,
            stamp(received) if funds else None,
            deadline,
            "timed out" if status == "error" or status == "expired" else None,
            _STELLAR % (tx_hash, received.isoformat(), bits(62), amount - fee, anchor, user)
            if final
            else "[]",
            tx_hash,
            None if deposit else user,
            None if deposit else anchor,
            None if deposit else anchor,
            None if deposit else str(bits(30)),
            None if deposit else "id",
            "wallet.example.com",
            user,
        )


def _batches(
    n: int, stamp: Callable[[datetime], Any], size: int
) -> Iterator[list[tuple[Any, ...]]]:
    rows = generate(n, stamp)
    while batch := list(islice(rows, size)):
        yield batch


def _sqlite_stamp(value: datetime) -> str:
    """As SQLAlchemy's SQLite DateTime stores it: UTC, no zone, always the microseconds."""
    return value.isoformat(" ", "microseconds")[:26]


def fill_sqlite(path: Path, n: int) -> None:
    """`n` rows into the migrated file at `path`: the indexes are dropped, the rows inserted
    in one transaction, the indexes built again from their own DDL."""
    con = sqlite3.connect(path)
    try:
        # A throwaway file: no journal while filling, WAL again (as db.py has it) after.
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-1000000")
        indexes = con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "AND sql IS NOT NULL",
            (TABLE,),
        ).fetchall()
        for name, _ in indexes:
            con.execute(f'DROP INDEX "{name}"')
        marks = ", ".join("?" for _ in COLUMNS)
        insert = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({marks})"
        with con:
            for batch in _batches(n, _sqlite_stamp, 10_000):
                con.executemany(insert, batch)
        for _, sql in indexes:
            con.execute(sql)
        con.commit()
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _pg_stamp(value: datetime) -> datetime:
    return value  # asyncpg's COPY takes the aware datetime as it is


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(False)


async def fill_postgres(url: str, n: int) -> None:
    """`n` rows into the migrated database at `url` with COPY, the indexes built after, then
    VACUUM ANALYZE (what autovacuum does to a table that has settled)."""
    con = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        indexes = await con.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 AND indexname "
            "NOT IN (SELECT conname FROM pg_constraint)",
            TABLE,
        )
        for index in indexes:
            await con.execute(f'DROP INDEX "{index["indexname"]}"')
        for batch in _batches(n, _pg_stamp, 50_000):
            await con.copy_records_to_table(TABLE, records=batch, columns=list(COLUMNS))
        for index in indexes:
            await con.execute(index["indexdef"])
        await con.execute(f"VACUUM ANALYZE {TABLE}")
    finally:
        await con.close()


# ---- the timing ----------------------------------------------------------------------------


def _ms(seconds: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p99 * 1000


class Bare:
    """The statement of `list_page`, compiled to text, on the bare driver."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.dialect = engine.dialect
        self.url = url
        self.sqlite: sqlite3.Connection | None = None
        self.pg: asyncpg.Connection | None = None

    async def open(self) -> None:
        # The engine's own session settings (store/db.py), so both read the data alike.
        if self.dialect.name == "sqlite":
            self.sqlite = sqlite3.connect(make_url(self.url).database or "")
            self.sqlite.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        else:
            self.pg = await asyncpg.connect(_asyncpg_dsn(self.url), server_settings={"jit": "off"})

    async def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
        if self.pg is not None:
            await self.pg.close()

    def sql(self, **shape: Any) -> str:
        statement = repo.list_statement(self.dialect.name, **shape)
        return str(statement.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True}))

    async def scalar(self, sql: str) -> Any:
        if self.sqlite is not None:
            return self.sqlite.execute(sql).fetchone()[0]
        assert self.pg is not None
        return await self.pg.fetchval(sql)

    async def ids(self, sql: str) -> list[str]:
        if self.sqlite is not None:
            cursor = self.sqlite.execute(sql)
            at = [d[0] for d in cursor.description].index("id")
            return [row[at] for row in cursor.fetchall()]
        assert self.pg is not None
        return [row["id"] for row in await self.pg.fetch(sql)]


async def _count(bare: Bare, statuses: tuple[str, ...] | None) -> int:
    where = ""
    if statuses:
        where = " WHERE status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"
    return int(await bare.scalar(f"SELECT count(*) FROM {TABLE}{where}"))


def _backend_cpu(pid: int | None) -> float:
    """CPU seconds of the PostgreSQL backend `pid` so far, when the server runs here."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0]) / 1e9


async def _backend(fetch: Callable[[str], Awaitable[Any]]) -> int | None:
    pid = int(await fetch("SELECT pg_backend_pid()"))
    try:
        _backend_cpu(pid)
    except OSError:
        return None  # a server elsewhere: the CPU columns count this process only
    return pid


async def _timed(
    call: Callable[[], Awaitable[list[str]]], backend: int | None
) -> tuple[float, float, list[str]]:
    """Wall and CPU seconds of `call`: this process's CPU (every thread: aiosqlite's too)
    plus the backend's, so a busy machine's waits show in the wall time only."""
    cpu, served, start = time.process_time(), _backend_cpu(backend), time.perf_counter()
    ids = await call()
    wall = time.perf_counter() - start
    return wall, time.process_time() - cpu + _backend_cpu(backend) - served, ids


def _line(label: str, wall: Sequence[float], cpu: Sequence[float]) -> str:
    (w50, w99), (c50, c99) = _ms(wall), _ms(cpu)
    return f"{label} {w50:7.1f} {w99:7.1f} {max(wall) * 1000:7.1f} |{c50:6.1f} {c99:6.1f}"


async def run(url: str, label: str, rows: int, pages: int) -> None:
    """Time every shape on the filled database at `url`."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    bare = Bare(engine, url)
    await bare.open()
    rng = random.Random(7)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{label}: {rows:,} rows, {pages} pages per shape (page_size {PAGE_SIZE}, page_number")
    print(f"uniform over the result, first and last included); load average {load}")
    print("ms: list_page wall p50 p99 max | CPU p50 p99; the bare SQL's; list_page/bare p50")
    list_backend = bare_backend = None
    if bare.pg is not None:
        async with sessions() as session:  # used one at a time, the pool keeps one connection
            conn = await session.connection()

            async def scalar(sql: str) -> Any:
                return (await conn.exec_driver_sql(sql)).scalar()

            list_backend = await _backend(scalar)
        bare_backend = await _backend(bare.scalar)
    totals: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in FILTERS}
    totals["every shape"] = ([], [])
    try:
        for name, statuses in FILTERS.items():
            last_page = max(0, (await _count(bare, statuses) - 1) // PAGE_SIZE)
            for order_by in ORDER_BYS:
                for order in ORDERS:
                    numbers = [0, last_page, *(rng.randint(0, last_page) for _ in range(pages - 2))]
                    listed: tuple[list[float], list[float]] = ([], [])
                    raw: tuple[list[float], list[float]] = ([], [])
                    for page_number in numbers:
                        shape: dict[str, Any] = {
                            "statuses": statuses,
                            "order_by": order_by,
                            "order": order,
                            "page_number": page_number,
                            "page_size": PAGE_SIZE,
                        }

                        async def through_store() -> list[str]:
                            async with sessions() as session:
                                found = await repo.list_page(session, **shape)  # noqa: B023
                            return [tx.id for tx in found]

                        sql = bare.sql(**shape)
                        wall, cpu, list_ids = await _timed(through_store, list_backend)
                        listed[0].append(wall)
                        listed[1].append(cpu)
                        wall, cpu, raw_ids = await _timed(lambda: bare.ids(sql), bare_backend)  # noqa: B023
                        raw[0].append(wall)
                        raw[1].append(cpu)
                        assert list_ids == raw_ids, (shape, list_ids, raw_ids)
                    for key in (name, "every shape"):
                        totals[key][0].extend(listed[0])
                        totals[key][1].extend(listed[1])
                    ratio = _ms(listed[0])[0] / _ms(raw[0])[0]
                    print(
                        _line(f"{name:<8} {order_by:<23} {order:<4}", *listed)
                        + _line("    ", *raw)
                        + f"  x{ratio:.2f}"
                    )
        for key, (walls, cpus) in totals.items():
            print(_line(f"{label} list_page, {key}:".ljust(40), walls, cpus))
    finally:
        await bare.close()
        await engine.dispose()


async def _sqlite(rows: int, pages: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.db"
        url = f"sqlite+aiosqlite:///{path}"
        await migrate.upgrade(url)
        start = time.perf_counter()
        await asyncio.to_thread(fill_sqlite, path, rows)
        print(f"\nSQLite: filled {rows:,} rows in {time.perf_counter() - start:.0f} s")
        await run(url, "SQLite", rows, pages)


async def _postgres(admin_url: str, rows: int, pages: int) -> None:
    admin = make_url(admin_url)
    url = admin.set(database=f"anchorpay_bench_{uuid.uuid4().hex[:12]}")
    con = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        await con.execute(f'CREATE DATABASE "{url.database}"')
        try:
            text = url.render_as_string(False)
            await migrate.upgrade(text)
            start = time.perf_counter()
            await fill_postgres(text, rows)
            print(f"\nPostgreSQL: filled {rows:,} rows in {time.perf_counter() - start:.0f} s")
            await run(text, "PostgreSQL", rows, pages)
        finally:
            await con.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await con.close()


async def main(rows: int = ROWS, pages: int = PAGES) -> None:
    await _sqlite(rows, pages)
    admin = os.environ.get("ANCHORPAY_BENCH_POSTGRES_URL") or os.environ.get(
        "ANCHORPAY_TEST_POSTGRES_URL"
    )
    if admin:
        await _postgres(admin, rows, pages)
    else:
        print("\nPostgreSQL: skipped (set ANCHORPAY_BENCH_POSTGRES_URL to a server)")


if __name__ == "__main__":
    asyncio.run(main())
