"""`GET /health`: the database check reads a real table, so a database file that vanished
(SQLite recreates an empty one on connect, where `SELECT 1` still answers) is reported."""

from __future__ import annotations

from pathlib import Path

from support.app import ClientFactory, SettingsFactory


def remove_database_files(folder: Path) -> None:
    for path in folder.glob("health.db*"):
        path.unlink()


async def test_health_names_each_member_and_sees_a_vanished_database(
    client_factory: ClientFactory, settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    db = tmp_path / "health.db"
    settings = settings_factory(database_url=f"sqlite+aiosqlite:///{db}")
    async with client_factory(settings) as client:
        answer = await client.get("/health")
        assert answer.status_code == 200
        body = answer.json()
        assert (body["status"], body["database"]) == ("ok", "ok")
        assert set(body) == {"status", "database", "payouts", "observer"}

        await client.app.state.services.sessions.kw["bind"].dispose()
        remove_database_files(tmp_path)
        answer = await client.get("/health")
        assert answer.status_code == 503
        body = answer.json()
        assert (body["status"], body["database"], body["payouts"]) == (
            "unavailable",
            "unavailable",
            {"status": "unavailable"},
        )
