"""Schema creation and upgrades with Alembic (`anchorpay migrate`, and at start on SQLite).

On SQLite every process migrates at start (`serve`, `worker`), so several starting together
on a fresh file would race to create the same tables. They take turns on an exclusive lock
of a file beside the database (`<db>.migrate.lock`): the first migrates, the others then
find the schema current. On PostgreSQL `anchorpay migrate` is a deploy step, run once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextlib.contextmanager
def _one_at_a_time(url: str) -> Iterator[None]:
    """Held while migrating a SQLite file; nothing to hold for other databases."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(f"{database}.migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even on a crash
        yield


def upgrade_sync(url: str) -> None:
    """Bring the database at `url` to the newest revision. Runs its own event loop."""
    with _one_at_a_time(url):
        command.upgrade(alembic_config(url), "head")


async def upgrade(url: str) -> None:
    """The same from async code: Alembic's env runs its own loop, so give it a thread."""
    await asyncio.to_thread(upgrade_sync, url)
