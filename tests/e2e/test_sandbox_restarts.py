"""A persistent sandbox across restarts of `anchorpay serve` (real subprocesses, real HTTP, the
sandbox state in its default place beside the SQLite database): a withdrawal is credited
exactly once when the server restarts between its creation and the wallet's payment (made
with `anchorpay sandbox pay`), and between the payment and its observation; a replaced
sandbox state file stops the server with one line, and `anchorpay sandbox reset` starts over.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from anchorpay.sandbox.app import Sandbox
from anchorpay.settings import load_assets
from support.payout_fixtures import DIST, REPO, USDC
from support.process_fixtures import ANCHORPAY, process_env
from support.sandbox_fixtures import free_port


class Server:
    """`anchorpay serve` on one port, data directory and sandbox state, started at will."""

    def __init__(self, tmp_path: Path, **extra: str) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = process_env(tmp_path, SANDBOX_LEDGER_CLOSE_S="0.1", OBSERVER_INTERVAL_S="0.2")
        del env["SANDBOX_STATE"]  # the default: sandbox.db beside the database
        env.update(extra)
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def state(self) -> Path:
        return self.tmp_path / "sandbox.db"

    def start(self, **extra: str) -> None:
        self.starts += 1
        log = (self.tmp_path / f"serve{self.starts}.log").open("w")
        self.proc = subprocess.Popen(
            [ANCHORPAY, "serve", "--port", str(self.port)],
            cwd=self.tmp_path,
            env={**self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.base}/sandbox/horizon/", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal (exit status -15)
        assert self.proc.wait(20) in (0, -signal.SIGTERM), self.log()
        assert "Application shutdown complete" in self.log()

    def log(self) -> str:
        return (self.tmp_path / f"serve{self.starts}.log").read_text()

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.base}{path}", params=params, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any, status: int = 200) -> Any:
        response = httpx.post(f"{self.base}{path}", json=body, timeout=30)
        assert response.status_code == status, response.text
        return response.json()

    def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = self.post("/", {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        assert "result" in answer, answer
        result: dict[str, Any] = answer["result"]
        return result

    def wallet(self, usdc: str = "100") -> str:
        """A sandbox account trusting USDC, funded from the distribution account."""
        user: str = self.post("/sandbox/accounts", {"xlm": "50", "trust": [USDC]}, 201)[
            "account_id"
        ]
        paid = self.post(
            "/sandbox/payments", {"from": DIST, "to": user, "asset": USDC, "amount": usdc}
        )
        assert paid["successful"] is True
        return user

    def withdrawal(self, user: str, amount: str = "10") -> dict[str, Any]:
        created = self.post(
            "/transactions",
            {"kind": "withdrawal", "amount_expected": {"asset": USDC, "amount": amount},
             "source_account": user},
            201,
        )  # fmt: skip
        return self.rpc(
            "request_onchain_funds",
            {
                "transaction_id": created["id"],
                "amount_in": {"amount": amount, "asset": USDC},
                "amount_out": {"amount": str(int(amount) - 1), "asset": "iso4217:USD"},
                "fee_details": {"total": "1", "asset": USDC},
            },
        )

    def until_status(self, tx_id: str, status: str, timeout_s: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            tx: dict[str, Any] = self.get(f"/transactions/{tx_id}")
            if tx["status"] == status:
                return tx
            assert time.monotonic() < deadline, (tx, self.log())
            time.sleep(0.1)

    def observer_past(self, ledger: int, timeout_s: float = 20) -> None:
        """Wait until the observer was caught up with `ledger` or later."""
        deadline = time.monotonic() + timeout_s
        while (self.get_health().get("observer", {}).get("last_ledger") or 0) < ledger:
            assert time.monotonic() < deadline, (self.get_health(), self.log())
            time.sleep(0.1)

    def get_health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.base}/health", timeout=10).json()
        return body

    def network_id(self) -> str:
        found: str = self.get("/sandbox/horizon/")["network_id"]
        return found


def sandbox_pay(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ANCHORPAY, "sandbox", "pay", "--url", server.base, *args],
        cwd=server.tmp_path,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    found = Server(tmp_path)
    try:
        yield found
    finally:
        if found.proc is not None and found.proc.poll() is None:
            found.proc.kill()
            found.proc.wait(10)


def assert_credited_once(server: Server, tx: dict[str, Any], tx_hash: str) -> None:
    stored = server.until_status(tx["id"], "pending_anchor")
    assert [s["id"] for s in stored["stellar_transactions"]] == [tx_hash]
    received = stored["amount_in"]
    assert (Decimal(received["amount"]), received["asset"]) == (Decimal("10"), USDC)
    assert server.get("/observer/unmatched") == {"unmatched_payments": []}


def test_restart_between_the_withdrawal_and_the_wallets_payment(server: Server) -> None:
    server.start()
    user = server.wallet()
    tx = server.withdrawal(user)
    assert tx["status"] == "pending_user_transfer_start"
    network = server.network_id()
    server.stop()

    server.start()
    assert server.network_id() == network  # the same network, continued
    paid = sandbox_pay(
        server, "--from", user, "--to", tx["destination_account"], "--asset", USDC,
        "--amount", "10", "--memo", tx["memo"], "--memo-type", "id",
    )  # fmt: skip
    assert (paid.returncode, paid.stderr) == (0, "")
    tx_hash = paid.stdout.strip()
    assert re.fullmatch("[0-9a-f]{64}", tx_hash), paid.stdout
    assert_credited_once(server, tx, tx_hash)

    ledger = server.get(f"/sandbox/horizon/transactions/{tx_hash}")["ledger"]
    server.stop()
    server.start()  # once more: the payment is not credited again
    server.observer_past(ledger + 1)
    assert_credited_once(server, tx, tx_hash)
    server.stop()


def test_restart_between_the_payment_and_its_observation(server: Server) -> None:
    server.start(OBSERVER_INTERVAL_S="3600")  # the observer runs once, at start
    user = server.wallet()
    tx = server.withdrawal(user)
    server.observer_past(1)
    paid = server.post(
        "/sandbox/payments",
        {"from": user, "to": tx["destination_account"], "asset": USDC, "amount": "10",
         "memo": tx["memo"], "memo_type": "id"},
    )  # fmt: skip
    assert server.get(f"/transactions/{tx['id']}")["status"] == "pending_user_transfer_start"
    server.stop()

    server.start()
    assert_credited_once(server, tx, paid["hash"])
    server.observer_past(paid["ledger"] + 1)
    server.stop()
    server.start()
    server.observer_past(paid["ledger"] + 1)
    assert_credited_once(server, tx, paid["hash"])
    server.stop()


def genesis_hash(state: Path) -> str:
    with sqlite3.connect(state) as db:
        (body,) = db.execute("SELECT body FROM headers WHERE sequence = 1").fetchone()
    found: str = json.loads(body)["hash"]
    return found


def test_a_replaced_sandbox_state_is_refused_in_one_line_until_reset(server: Server) -> None:
    server.start()
    tx = server.withdrawal(server.wallet())
    old = server.network_id()
    server.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{server.state}{suffix}").unlink(missing_ok=True)
    assets = load_assets(REPO / "config" / "assets.toml")
    Sandbox(assets=assets, ledger_close_s=None, state=str(server.state)).close_state()
    new = genesis_hash(server.state)
    assert new != old

    refused = subprocess.run(
        [ANCHORPAY, "serve", "--port", str(server.port)],
        cwd=server.tmp_path, env=server.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == (
        f"anchorpay: the ledger network changed: the database follows network {old[:12]} but "
        f"the sandbox (state {server.state}) is network {new[:12]}, a new one (was its state "
        "deleted or replaced?); to start over on it (transactions are kept, the old network's "
        "ledger cursors are forgotten), stop anchorpay and run: anchorpay sandbox reset\n"
    )

    reset = subprocess.run(
        [ANCHORPAY, "sandbox", "reset"],
        cwd=server.tmp_path, env=server.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (reset.returncode, reset.stderr) == (0, "")
    assert reset.stdout.startswith(f"anchorpay: sandbox reset: removed {server.state};")
    assert not server.state.exists()

    server.start()
    assert server.network_id() not in (old, new)
    assert server.get(f"/transactions/{tx['id']}")["status"] == "pending_user_transfer_start"
    busy = subprocess.run(
        [ANCHORPAY, "sandbox", "reset"],
        cwd=server.tmp_path, env=server.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (busy.returncode, busy.stdout) == (2, "")
    assert busy.stderr == (
        f"anchorpay: the sandbox state {server.state} is in use by another process; stop it, "
        "or give SANDBOX_STATE another file\n"
    )
    assert server.state.exists()
    server.stop()
