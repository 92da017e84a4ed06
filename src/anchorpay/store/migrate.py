"""Schema creation and upgrades with Alembic (`anchorpay migrate`, and at `serve` on SQLite)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_sync(url: str) -> None:
    """Bring the database at `url` to the newest revision. Runs its own event loop."""
    command.upgrade(alembic_config(url), "head")


async def upgrade(url: str) -> None:
    """The same from async code: Alembic's env runs its own loop, so give it a thread."""
    await asyncio.to_thread(upgrade_sync, url)
