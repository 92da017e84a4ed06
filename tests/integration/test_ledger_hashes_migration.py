"""Migration 0008 backfills `ledger_hashes` from what existing transactions record, so the
one-hash-one-purpose rule holds for data written before it existed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from anchorpay.store.migrate import alembic_config


def test_backfill_from_stellar_transactions_and_refunds(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    asyncio.run(asyncio.to_thread(command.upgrade, alembic_config(url), "0007_source_account"))
    sync = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    rows = [
        ("d1", "deposit", [{"id": "out1"}], None),
        ("w1", "withdrawal", [{"id": "in1"}], {"payments": [{"id": "ref1"}, {"id": "in1"}]}),
        ("w2", "withdrawal", [{"id": "in1"}], None),  # a duplicate: the first holder keeps it
    ]
    with sync.begin() as conn:
        for tx_id, kind, stellar, refunds in rows:
            conn.execute(
                text(
                    "INSERT INTO sep24_transactions (id, sep, kind, status, version, "
                    "started_at, stellar_transactions, refunds) VALUES (:id, '24', :kind, "
                    "'completed', 0, '2026-01-01 00:00:00.000000', :st, :rf)"
                ),
                {
                    "id": tx_id,
                    "kind": kind,
                    "st": json.dumps(stellar),
                    "rf": json.dumps(refunds) if refunds else None,
                },
            )
    asyncio.run(asyncio.to_thread(command.upgrade, alembic_config(url), "head"))
    with sync.connect() as conn:
        found = conn.execute(
            text("SELECT hash, transaction_id, purpose FROM ledger_hashes ORDER BY hash")
        ).all()
    assert [tuple(r) for r in found] == [
        ("in1", "w1", "incoming"),
        ("out1", "d1", "payment"),
        ("ref1", "w1", "refund"),
    ]
