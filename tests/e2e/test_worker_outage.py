"""A worker whose database cannot serve logs one line per backoff step, not one per tick
(issue 15 part 3): real `anchorpay worker` processes, ticking every 50 ms, against a
PostgreSQL port nobody listens on and against a SQLite file another process keeps locked."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from support.process_fixtures import ANCHORPAY, process_env
from support.sandbox_fixtures import free_port

TICK_S = 0.05
LINE = re.compile(
    r"WARNING anchorpay\.worker: worker: database unavailable \((?P<why>.*)\) in (?P<job>\S+); "
    r"attempt (?P<n>\d+) failed, next in (?P<delay>[0-9.e-]+)s$"
)


def start_worker(tmp_path: Path, database_url: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "worker.log"
    env = process_env(
        tmp_path,
        DATABASE_URL=database_url,
        DATABASE_BUSY_TIMEOUT_S="0.2",
        WORKER_TICK_S=str(TICK_S),
        OBSERVER_INTERVAL_S=str(TICK_S),  # the lease-holding jobs tick as fast
        TRUSTLINE_CHECK_INTERVAL_S=str(TICK_S),
        HORIZON_URL="http://127.0.0.1:9",  # never reached: the database fails first
    )
    with log.open("w") as out:
        proc = subprocess.Popen(
            [ANCHORPAY, "worker"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return proc, log


def wait_for(log: Path, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(15)


def backoff_lines(text: str) -> list[re.Match[str]]:
    return [m for m in (LINE.match(line[24:]) for line in text.splitlines()) if m]


def assert_one_line_per_step(lines: list[re.Match[str]], outage_s: float) -> None:
    """Attempts 1, 2, 3 … each once, the delay doubling from the tick (capped at 60 s), and
    so about log2(outage / tick) lines where ticking would have logged hundreds."""
    assert [int(m["n"]) for m in lines] == list(range(1, len(lines) + 1))
    assert [float(m["delay"]) for m in lines] == [
        min(60.0, TICK_S * 2**i) for i in range(len(lines))
    ]
    most = 2 + int(outage_s / TICK_S).bit_length()
    assert 3 <= len(lines) <= most, (len(lines), most)


def test_unreachable_postgres_logs_one_line_per_backoff_step(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://anchorpay@127.0.0.1:{free_port()}/anchorpay"
    proc, log = start_worker(tmp_path, url)
    try:
        wait_for(log, "worker started")
        started = time.monotonic()
        time.sleep(3.0)
        outage_s = time.monotonic() - started + 1  # and whatever ran before "started"
    finally:
        code = stop(proc)
    text = log.read_text()
    assert code == 0, text
    lines = backoff_lines(text)
    assert_one_line_per_step(lines, outage_s)
    assert all(m["why"].startswith("ConnectionRefusedError: ") for m in lines)
    assert "Traceback" not in text and "maximum number of running instances" not in text
    # nothing else is logged per tick: the lines are the start, the steps and the stop
    others = [
        line
        for line in text.splitlines()
        if not LINE.match(line[24:]) and "database unavailable" not in line
    ]
    assert len(others) <= 6, others


def test_locked_sqlite_backs_off_then_recovers(tmp_path: Path) -> None:
    db = tmp_path / "anchorpay.db"
    proc, log = start_worker(tmp_path, f"sqlite+aiosqlite:///{db}")
    try:
        wait_for(log, "worker started")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # every write of the worker times out
        started = time.monotonic()
        try:
            time.sleep(3.0)
            outage_s = time.monotonic() - started
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        wait_for(log, "worker: database available again after")
    finally:
        code = stop(proc)
    text = log.read_text()
    assert code == 0, text
    lines = backoff_lines(text)
    assert_one_line_per_step(lines, outage_s)
    assert all(m["why"] == "OperationalError: database is locked" for m in lines)
    back = f"worker: database available again after {len(lines)} failed attempts"
    assert text.count("database available again") == 1 and back in text
    during = text[: text.index("database available again")]
    assert "Traceback" not in during and "modified concurrently" not in text
    assert "maximum number of running instances" not in text
