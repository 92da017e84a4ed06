"""Helpers for the tests that run real `anchorpay` processes (imported explicitly): their
environment, `anchorpay sandbox` as the network that outlives the workers a test kills, and
`anchorpay worker` processes on the test's SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from support.payout_fixtures import FAST, REPO, Env
from support.sandbox_fixtures import free_port

ANCHORPAY = str(Path(sys.executable).parent / "anchorpay")


def process_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHORPAY_")}
    env.update(
        ANCHORPAY_CONFIG_DIR=str(REPO / "config"),
        STELLAR_NETWORK="sandbox",
        ASSETS_FILE=str(REPO / "config" / "assets.toml"),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'anchorpay.db'}",
        PAYOUT_LEASE_S="1",
        LOG_LEVEL="INFO",
        # The tests read these logs as text lines (LOG_FORMAT=auto would be json off a tty).
        LOG_FORMAT="text",
        **{k.upper(): str(v) for k, v in FAST.items() if k != "payout_lease_s"},
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def sandbox_server(tmp: Path, ready_path: str, **extra: str) -> Iterator[str]:
    """`anchorpay sandbox --port P` until the block ends; yields its base URL once
    `ready_path` answers 200."""
    port = free_port()
    log = (tmp / "sandbox.log").open("w")
    proc = subprocess.Popen(
        [ANCHORPAY, "sandbox", "--port", str(port)],
        cwd=tmp,
        env=process_env(tmp, **extra),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}{ready_path}", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp / "sandbox.log").read_text()
            subprocess.run(["sleep", "0.05"], check=True)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class Workers:
    """`anchorpay worker` processes on one SQLite file, against the sandbox at `sandbox`;
    `extra` is added to each one's environment."""

    def __init__(self, tmp_path: Path, sandbox: str, **extra: str) -> None:
        self.tmp_path = tmp_path
        self.sandbox = sandbox
        self.extra = extra
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, crash_at: str | None = None) -> subprocess.Popen[bytes]:
        extra = {"HORIZON_URL": f"{self.sandbox}/sandbox/horizon", **self.extra}
        if crash_at is not None:
            extra["ANCHORPAY_CRASH_AT"] = crash_at  # test-only hook: SIGKILL at that point
        n = len(self.procs)
        log = (self.tmp_path / f"worker{n}.log").open("w")
        proc = subprocess.Popen(
            [ANCHORPAY, "worker"],
            cwd=self.tmp_path,
            env=process_env(self.tmp_path, **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    async def ready(self, timeout_s: float = 20) -> None:
        """Wait until every started worker logged that it runs."""
        async with asyncio.timeout(timeout_s):
            while self.logs().count("worker started") < len(self.procs):
                assert all(p.poll() is None for p in self.procs), self.logs()
                await asyncio.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("worker*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def until_dead(env: Env, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> int:
    """Drive the ledger until the worker process dies (its submit waits for a ledger)."""
    async with asyncio.timeout(timeout_s):
        while proc.poll() is None:
            await env.close_ledger()
            await asyncio.sleep(0.05)
    return proc.returncode
