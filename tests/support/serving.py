"""`anchorpay serve` as a user starts it, for the end-to-end tests that run it from outside
the repository (the packaged configuration, the README's walkthroughs)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from anchorpay.settings import ENV_FILE_ENV, Settings
from support.sandbox_fixtures import free_port


def bare_env(**extra: str) -> dict[str, str]:
    """The environment without any anchorpay setting: only the defaults apply."""
    names = {name.upper() for name in Settings.model_fields} | {ENV_FILE_ENV}
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in names and not k.startswith("ANCHORPAY_")
    }
    return env | extra


@contextlib.contextmanager
def serving(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    *,
    subcommand: str = "serve",
    ready_path: str = "/health",
) -> Iterator[str]:
    """`anchorpay <subcommand> --port P` until the block ends (SIGTERM, a clean stop); yields
    its base URL once `ready_path` answers 200. Its output is `<cwd>/<subcommand>.log`."""
    port = free_port()
    log_path = cwd / f"{subcommand}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [*command, subcommand, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base}{ready_path}", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            yield base
        finally:
            proc.send_signal(signal.SIGTERM)
            # uvicorn shuts down cleanly, then re-raises the signal it caught
            assert proc.wait(15) in (0, -signal.SIGTERM), log_path.read_text()
