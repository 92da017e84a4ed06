"""The `anchorpay` command as a user runs it: real subprocesses, real HTTP."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.app import CONFIG_DIR, USDC, USER

ANCHORPAY = Path(sys.executable).parent / "anchorpay"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no inherited settings, a temp database, sandbox off."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PLATFORM_", "SECRET_", "STELLAR_", "CUSTODY_", "DATABASE_"))
    }
    base.update(
        {
            "ANCHORPAY_CONFIG_DIR": str(CONFIG_DIR),
            "ASSETS_FILE": str(CONFIG_DIR / "assets.toml"),
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'data' / 'cli.db'}",
            "STELLAR_NETWORK": "testnet",
            "HORIZON_URL": "http://127.0.0.1:9",
            "CUSTODY_TYPE": "none",
        }
    )
    return base


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ANCHORPAY), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"PLATFORM_SERVER_AUTH_TYPE": "basic"},
            "anchorpay: PLATFORM_SERVER_AUTH_TYPE must be 'none', 'api_key' or 'jwt' (got 'basic')",
        ),
        (
            {"PLATFORM_SERVER_AUTH_TYPE": "jwt"},
            "anchorpay: SECRET_PLATFORM_API_AUTH_SECRET is required when "
            "PLATFORM_SERVER_AUTH_TYPE=jwt",
        ),
        (
            {"PLATFORM_SERVER_AUTH_TYPE": "jwt", "SECRET_PLATFORM_API_AUTH_SECRET": "x" * 31},
            "anchorpay: SECRET_PLATFORM_API_AUTH_SECRET is too weak for jwt: "
            "it must be at least 32 bytes",
        ),
        (
            {"ASSETS_FILE": "/nonexistent/assets.toml"},
            "anchorpay: config file /nonexistent/assets.toml cannot be read: "
            "No such file or directory",
        ),
    ],
)
def test_serve_with_bad_configuration_exits_2(
    env: dict[str, str], tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    result = run(["serve", "--port", "1"], {**env, **extra}, tmp_path)
    assert result.returncode == 2
    assert result.stderr == message + "\n"
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_env_file_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["migrate", "--env-file", "nope.env"], env, tmp_path)
    assert result.returncode == 2
    assert result.stderr == "anchorpay: env file nope.env cannot be read: no such file\n"


def test_migrate_creates_the_schema(env: dict[str, str], tmp_path: Path) -> None:
    result = run(["migrate"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    db = tmp_path / "data" / "cli.db"
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sep24_transactions", "payouts", "alembic_version"} <= tables
    again = run(["migrate"], env, tmp_path)  # idempotent
    assert again.returncode == 0, again.stderr


def test_processes_starting_together_on_a_fresh_file_take_turns_to_migrate(
    env: dict[str, str], tmp_path: Path
) -> None:
    """`serve` and `worker` migrate SQLite at start: several at once must not race."""
    procs = [
        subprocess.Popen(
            [str(ANCHORPAY), "migrate"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    with sqlite3.connect(tmp_path / "data" / "cli.db") as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    from alembic.script import ScriptDirectory

    from anchorpay.store.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(env["DATABASE_URL"])).get_current_head()
    assert version == head


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(ANCHORPAY), "serve", "--port", str(port), "--no-worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"anchorpay serve did not start: {out}")
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_answers_seed_style_rpc_over_http(
    server: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    base, proc = server
    created = httpx.post(
        f"{base}/transactions",
        json={"kind": "deposit", "amount_expected": {"asset": USDC}, "destination_account": USER},
    )
    assert created.status_code == 201
    tx_id = created.json()["id"]
    request = tmp_path / "get.json"
    request.write_text(
        json.dumps(
            [
                {
                    "id": "1",
                    "method": "get_transaction",
                    "jsonrpc": "2.0",
                    "params": {"transaction_id": tx_id},
                }
            ]
        )
    )
    # what `curl localhost:8085 -X POST -H 'Content-Type: application/json' --data @file` sends
    response = httpx.post(
        base, content=request.read_bytes(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == [{"jsonrpc": "2.0", "result": created.json(), "id": "1"}]
    bad = httpx.post(base, content=b"{oops", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    proc.terminate()
    out, _ = proc.communicate(timeout=15)
    # uvicorn shuts down cleanly, then re-raises SIGTERM so the exit status tells why
    assert proc.returncode == -15, out
    assert "Application shutdown complete" in out
    assert "Traceback" not in out
    assert f"anchorpay serving on port {base.rsplit(':', 1)[1]}" in out
    assert "network testnet, custody none" in out


def test_worker_runs_until_sigterm(env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(ANCHORPAY), "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        seen = ""
        while "worker started" not in seen:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, seen
            seen += line
            assert time.monotonic() < deadline, seen
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, seen + out
    assert "worker stopped" in out


def test_worker_serves_its_own_metrics(env: dict[str, str], tmp_path: Path) -> None:
    """`anchorpay worker --metrics-port P`: the worker process's counters on P (here the
    observer's failed runs: its Horizon is unreachable); a taken port is one line, exit 2."""
    port = free_port()
    env = {**env, "OBSERVER_INTERVAL_S": "0.2"}
    proc = subprocess.Popen(
        [str(ANCHORPAY), "worker", "--metrics-port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        text = ""
        while 'anchorpay_observer_runs_total{outcome="failed"}' not in text:
            assert proc.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.2)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.TransportError:
                continue
        taken = run(["worker", "--metrics-port", str(port)], env, tmp_path)
        assert (taken.returncode, taken.stderr.strip().splitlines()[-1]) == (
            2,
            f"anchorpay: cannot serve metrics on port {port}: Address already in use",
        )
        proc.terminate()
        proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


def test_log_format_json_writes_one_object_per_line(env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(ANCHORPAY), "worker"],
        env={**env, "LOG_FORMAT": "json"},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[dict[str, Any]] = []
        while not any(line["logger"] == "anchorpay.worker" for line in lines):
            lines.append(json.loads(proc.stdout.readline()))  # every line is one JSON object
        proc.terminate()
        proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    worker = next(line for line in lines if line["logger"] == "anchorpay.worker")
    assert (worker["level"], worker["message"]) == (
        "INFO",
        "worker: custody is off (CUSTODY_TYPE=none); no payout jobs",
    )
    assert all(line["ts"].endswith("Z") for line in lines)
