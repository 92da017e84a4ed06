"""get_transactions is index-backed on a migrated database, for every filter and order: the
page's ids are a walk of the order's own index (one walk per status for several statuses,
merged), read from the index alone, with no sort of the table; then the page's rows are
fetched by primary key. SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN (FORMAT JSON),
with sequential scans and sorts priced out (a table this small would rightly be read whole,
which says nothing about a million rows), so a sort shows only when no index can give the
order. And the indexes the migrations create are the ones the table model declares."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.domain.statuses import Kind, Status
from anchorpay.domain.transaction import Transaction
from anchorpay.store import migrate
from anchorpay.store import transactions as repo
from anchorpay.store.db import create_engine as create_async_engine
from anchorpay.store.db import session_factory
from anchorpay.store.transactions import Order, OrderBy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TABLE = "sep24_transactions"
COLUMNS: dict[OrderBy, str] = {
    "created_at": "started_at",
    "transfer_received_at": "transfer_received_at",
    "user_action_required_by": "user_action_required_by",
}
FILTERS: dict[str, list[str]] = {
    "all": [],
    "one": ["pending_anchor"],
    "several": ["incomplete", "pending_anchor", "error"],
}
SHAPES: dict[str, tuple[list[str], OrderBy, Order]] = {
    f"{name}-{order_by}-{order}": (statuses, order_by, order)
    for name, statuses in FILTERS.items()
    for order_by in COLUMNS
    for order in ("asc", "desc")
}


def _index(statuses: list[str], order_by: OrderBy, order: Order) -> str:
    led = "status_" if statuses else ""
    return f"ix_sep24_list_{led}{COLUMNS[order_by]}_{order}"


def _sql(dialect: str, statuses: list[str], order_by: OrderBy, order: Order) -> str:
    statement = repo.list_statement(
        dialect, statuses=statuses, order_by=order_by, order=order, page_number=3, page_size=20
    )
    compiler = sqlite.dialect() if dialect == "sqlite" else postgresql.dialect()
    return str(statement.compile(dialect=compiler, compile_kwargs={"literal_binds": True}))


async def _fill(sessions: async_sessionmaker[AsyncSession], n: int = 300) -> None:
    statuses = (Status.INCOMPLETE, Status.PENDING_ANCHOR, Status.ERROR, Status.COMPLETED)
    async with sessions() as session, session.begin():
        for i in range(n):
            at = T0 + timedelta(minutes=i)
            await repo.insert(
                session,
                Transaction(
                    id=f"tx-{i:05d}",
                    kind=Kind.DEPOSIT,
                    status=statuses[i % 4],
                    started_at=at,
                    transfer_received_at=at if i % 3 else None,
                    user_action_required_by=at if i % 5 == 0 else None,
                ),
            )


# ---- SQLite ------------------------------------------------------------------------------


def sqlite_problems(plan: list[tuple[int, int, str]], index: str, walks: int) -> list[str]:
    """What keeps a SQLite plan (EXPLAIN QUERY PLAN rows: id, parent, detail) from being
    `walks` walks of `index` alone and a fetch of the page's rows by primary key."""
    problems: list[str] = []
    walked = 0
    fetched = 0
    for _, parent, detail in plan:
        if "TEMP B-TREE" in detail and parent != 0:
            problems.append(f"a sort inside the page's walk: {detail}")
        if TABLE not in detail:
            continue
        if detail.startswith(f"SCAN {TABLE} USING COVERING INDEX {index}") or detail.startswith(
            f"SEARCH {TABLE} USING COVERING INDEX {index} (status=?)"
        ):
            walked += 1
        elif detail.startswith(f"SEARCH {TABLE} USING INDEX sqlite_autoindex_{TABLE}_1 (id=?)"):
            fetched += 1
        else:
            problems.append(f"not a walk of {index} nor a fetch by id: {detail}")
    if walked != walks:
        problems.append(f"{walked} walks of {index}, not {walks}")
    if fetched != 1:
        problems.append(f"{fetched} fetches by id, not 1")
    return problems


@pytest.fixture(scope="module")
def sqlite_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A migrated, filled SQLite file as the app leaves it (never ANALYZEd), and a copy with
    statistics: the plans must hold either way."""
    folder = tmp_path_factory.mktemp("plans")
    plain, analyzed = folder / "plain.db", folder / "analyzed.db"
    url = f"sqlite+aiosqlite:///{plain}"
    migrate.upgrade_sync(url)

    async def fill() -> None:
        engine = create_async_engine(url)
        try:
            await _fill(session_factory(engine))
        finally:
            await engine.dispose()

    asyncio.run(fill())
    with sqlite3.connect(plain) as source, sqlite3.connect(analyzed) as copy:
        source.backup(copy)
        copy.execute("ANALYZE")
    return {"plain": plain, "analyzed": analyzed}


@pytest.mark.parametrize("statistics", ["plain", "analyzed"])
@pytest.mark.parametrize(("statuses", "order_by", "order"), SHAPES.values(), ids=SHAPES)
def test_sqlite_pages_walk_the_order_index(
    sqlite_files: dict[str, Path],
    statistics: str,
    statuses: list[str],
    order_by: OrderBy,
    order: Order,
) -> None:
    with sqlite3.connect(sqlite_files[statistics]) as conn:
        sql = _sql("sqlite", statuses, order_by, order)
        plan = [(r[0], r[1], r[3]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    walks = max(1, len(statuses))
    assert sqlite_problems(plan, _index(statuses, order_by, order), walks) == [], plan


def test_sqlite_check_sees_a_sort_and_a_table_scan() -> None:
    """The check above fails the plan SQLite makes when no index has the order."""
    unindexed = [
        (2, 0, "MATERIALIZE page"),
        (9, 2, f"SCAN {TABLE}"),
        (22, 2, "USE TEMP B-TREE FOR ORDER BY"),
        (45, 0, "SCAN page"),
        (47, 0, f"SEARCH {TABLE} USING INDEX sqlite_autoindex_{TABLE}_1 (id=?)"),
        (58, 0, "USE TEMP B-TREE FOR ORDER BY"),
    ]
    assert sqlite_problems(unindexed, "ix_sep24_list_started_at_asc", 1) == [
        f"not a walk of ix_sep24_list_started_at_asc nor a fetch by id: SCAN {TABLE}",
        "a sort inside the page's walk: USE TEMP B-TREE FOR ORDER BY",
        "0 walks of ix_sep24_list_started_at_asc, not 1",
    ]


# ---- PostgreSQL --------------------------------------------------------------------------


def _nodes(node: dict[str, Any], under_limit: bool = False) -> list[tuple[dict[str, Any], bool]]:
    found = [(node, under_limit)]
    below = under_limit or node["Node Type"] == "Limit"
    for child in node.get("Plans", []):
        found.extend(_nodes(child, below))
    return found


def postgres_problems(plan: dict[str, Any], index: str, walks: int) -> list[str]:
    """What keeps a PostgreSQL plan (EXPLAIN FORMAT JSON's "Plan") from being `walks`
    index-only walks of `index` under the page's Limit (merged when several), and a fetch of
    the page's rows by primary key."""
    problems: list[str] = []
    walked = 0
    fetched = 0
    merged = False
    for node, under_limit in _nodes(plan):
        kind = node["Node Type"]
        if kind == "Seq Scan":
            problems.append(f"a sequential scan of {node.get('Relation Name')}")
        if under_limit and kind in {"Sort", "Incremental Sort"}:
            problems.append(f"a sort inside the page's walk: {node.get('Sort Key')}")
        merged = merged or (under_limit and kind == "Merge Append")
        if node.get("Relation Name") != TABLE or kind == "Seq Scan":
            continue
        if under_limit and kind == "Index Only Scan" and node.get("Index Name") == index:
            walked += 1
        elif not under_limit and kind == "Index Scan" and node.get("Index Name") == f"{TABLE}_pkey":
            fetched += 1
        else:
            problems.append(
                f"{kind} using {node.get('Index Name')} (under the Limit: {under_limit})"
            )
    if walked != walks:
        problems.append(f"{walked} index-only walks of {index}, not {walks}")
    if walks > 1 and not merged:
        problems.append("the walks are not merged (Merge Append)")
    if fetched != 1:
        problems.append(f"{fetched} fetches by primary key, not 1")
    return problems


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_postgres_pages_walk_the_order_index(
    db_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await _fill(sessions)
    engine = create_async_engine(db_url)
    found: dict[tuple[str, ...], list[str]] = {}
    try:
        async with engine.connect() as conn:
            vacuum = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await vacuum.exec_driver_sql(f"VACUUM ANALYZE {TABLE}")  # index-only scans need it
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SET enable_seqscan = off")
            await conn.exec_driver_sql("SET enable_sort = off")
            for statuses, order_by, order in SHAPES.values():
                sql = _sql("postgresql", statuses, order_by, order)
                explained = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}")).scalar()
                plan = explained[0]["Plan"]  # SQLAlchemy's asyncpg decodes JSON
                index = _index(statuses, order_by, order)
                problems = postgres_problems(plan, index, max(1, len(statuses)))
                if problems:
                    found[(*statuses, order_by, order)] = problems
    finally:
        await engine.dispose()
    assert found == {}


def test_postgres_check_sees_a_sort_and_a_table_scan() -> None:
    """The check above fails the plan PostgreSQL makes when no index has the order."""
    unindexed = {
        "Node Type": "Nested Loop",
        "Plans": [
            {
                "Node Type": "Limit",
                "Plans": [
                    {
                        "Node Type": "Sort",
                        "Sort Key": ["started_at", "id"],
                        "Plans": [{"Node Type": "Seq Scan", "Relation Name": TABLE}],
                    }
                ],
            },
            {"Node Type": "Index Scan", "Relation Name": TABLE, "Index Name": f"{TABLE}_pkey"},
        ],
    }
    assert postgres_problems(unindexed, "ix_sep24_list_started_at_asc", 1) == [
        "a sort inside the page's walk: ['started_at', 'id']",
        f"a sequential scan of {TABLE}",
        "0 index-only walks of ix_sep24_list_started_at_asc, not 1",
    ]


# ---- migrations and model ----------------------------------------------------------------


def test_sqlite_migrations_create_the_model_indexes(tmp_path: Path) -> None:
    migrate.upgrade_sync(f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}")
    created = create_engine(f"sqlite:///{tmp_path / 'created.db'}")
    SQLModel.metadata.create_all(created)
    created.dispose()
    query = text(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
        "AND sql IS NOT NULL ORDER BY name"
    )
    indexes = []
    for name in ("migrated.db", "created.db"):
        engine = create_engine(f"sqlite:///{tmp_path / name}")
        with engine.connect() as conn:
            indexes.append([tuple(r) for r in conn.execute(query, {"t": TABLE})])
        engine.dispose()
    assert indexes[0] == indexes[1]
    assert len([n for n, _ in indexes[0] if n.startswith("ix_sep24_list_")]) == 12


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_postgres_migrations_create_the_model_indexes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The migrated database against the model created in a schema of its own."""
    query = text(
        "SELECT indexname, replace(indexdef, schemaname || '.', '') FROM pg_indexes "
        "WHERE tablename = :table AND schemaname = :schema ORDER BY indexname"
    )
    async with sessions() as session, session.begin():
        conn = await session.connection()
        await conn.exec_driver_sql("CREATE SCHEMA created")
        await conn.exec_driver_sql("SET LOCAL search_path TO created")
        await conn.run_sync(lambda sync: SQLModel.metadata.create_all(sync))
        found = {
            schema: [
                tuple(r) for r in await conn.execute(query, {"table": TABLE, "schema": schema})
            ]
            for schema in ("public", "created")
        }
    assert found["public"] == found["created"]
    assert len([r for r in found["public"] if r[0].startswith("ix_sep24_list_")]) == 12
