"""SANDBOX_STATE: where the sandbox ledger is kept by default."""

from __future__ import annotations

from typing import Any

import pytest

from anchorpay.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({}, "data/sandbox.db"),
        ({"database_url": "sqlite+aiosqlite:////srv/ap/main.db"}, "/srv/ap/sandbox.db"),
        ({"database_url": "postgresql+asyncpg://u@db/anchorpay"}, "data/sandbox.db"),
        ({"database_url": "sqlite+aiosqlite:///:memory:"}, "data/sandbox.db"),
        ({"sandbox_state": "/tmp/net.db"}, "/tmp/net.db"),
        ({"sandbox_state": ":memory:"}, ":memory:"),
    ],
)
def test_the_sandbox_state_lives_beside_a_sqlite_database(
    values: dict[str, Any], path: str
) -> None:
    assert settings(**values).sandbox_state_path() == path
