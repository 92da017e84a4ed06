"""Fireblocks with real processes: `anchorpay sandbox` serving the ledger and the sandbox
Fireblocks, `anchorpay worker` SIGKILLed around the create call and restarted on the same
SQLite file, and `anchorpay custody check` against the sandbox with a good and a wrong key."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support.fireblocks_flow import fb_transactions, vault_payments_to
from support.payout_fixtures import USDC, Env, funded_deposit, running_app
from support.process_fixtures import ANCHORPAY, Workers, process_env, sandbox_server, until_dead

FB_ENV = {"CUSTODY_TYPE": "fireblocks", "SANDBOX_FIREBLOCKS_STEP_S": "0.02"}


@pytest.fixture(scope="module")
def fb_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`anchorpay sandbox` with CUSTODY_TYPE=fireblocks: the ledger and the sandbox
    Fireblocks outlive the workers the tests kill."""
    tmp = tmp_path_factory.mktemp("fb-sandbox")
    with sandbox_server(tmp, "/sandbox/fireblocks/state", **FB_ENV) as base:
        yield base


@pytest.fixture
async def stack(tmp_path: Path, fb_sandbox: str) -> AsyncIterator[tuple[Env, Workers]]:
    workers = Workers(
        tmp_path, fb_sandbox, **FB_ENV, FIREBLOCKS_BASE_URL=f"{fb_sandbox}/sandbox/fireblocks"
    )
    async with running_app(
        tmp_path,
        run_worker=False,
        sandbox_url=fb_sandbox,
        custody_type="fireblocks",
        fireblocks_base_url=f"{fb_sandbox}/sandbox/fireblocks",
    ) as env:
        try:
            yield env, workers
        finally:
            workers.stop()


@pytest.mark.parametrize("crash_at", ["after_prepare", "after_submit"])
async def test_worker_killed_around_the_create_pays_once(
    stack: tuple[Env, Workers], crash_at: str
) -> None:
    """after_submit: Fireblocks created the transfer, the worker died before storing the
    answer. The restarted worker finds it by externalTxId instead of creating another."""
    env, workers = stack
    user = await env.account(trust=(USDC,))
    tx_id = await funded_deposit(env, user.public_key)
    first = workers.start(crash_at=crash_at)
    await env.ok("do_stellar_payment", {"transaction_id": tx_id})
    assert await until_dead(env, first) == -signal.SIGKILL, workers.logs()

    (payout,) = await env.payouts(tx_id)
    assert (payout["state"], payout["adapter"]) == ("submitting", "fireblocks")
    created = await fb_transactions(env, payout["id"])
    assert len(created) == (0 if crash_at == "after_prepare" else 1)

    workers.start()
    assert await env.until_status(tx_id, "completed", timeout_s=30) == "completed", workers.logs()
    (payout,) = await env.payouts(tx_id)
    assert payout["state"] == "confirmed"
    (transfer,) = await fb_transactions(env, payout["id"])  # still one transfer
    assert transfer["txHash"] == payout["tx_hash"]
    assert [h for h, _ in await vault_payments_to(env, user.public_key)] == [payout["tx_hash"]]
    assert "Traceback" not in workers.logs()


def check(tmp_path: Path, sandbox: str, **extra: str) -> subprocess.CompletedProcess[str]:
    values = {**FB_ENV, "FIREBLOCKS_BASE_URL": f"{sandbox}/sandbox/fireblocks", **extra}
    env = process_env(tmp_path, **values)
    return subprocess.run(
        [ANCHORPAY, "custody", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_custody_check_passes_against_the_sandbox(tmp_path: Path, fb_sandbox: str) -> None:
    done = check(tmp_path, fb_sandbox)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"Fireblocks custody check: {fb_sandbox}/sandbox/fireblocks, vault account 0"
    )
    assert lines[-1] == "verdict: USABLE"
    rows = {line.split("  ")[0]: line.split() for line in lines[3:-2]}
    assert rows["credentials and vault"][3:6] == ["ok", "vault", "account"]
    assert rows[USDC][1:4] == ["ok", "USDC_XLM:", "balance"]
    assert rows["stellar:native"][1:4] == ["ok", "XLM:", "balance"]
    assert rows["webhook key (legacy)"][3:] == ["ok", "RSA", "2048-bit", "public", "key", "parses"]
    assert rows["webhook keys (JWKS)"][3] == "ok"
    assert done.stderr == ""


def test_custody_check_fails_clearly_with_a_wrong_key(tmp_path: Path, fb_sandbox: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "wrong.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    done = check(tmp_path, fb_sandbox, FIREBLOCKS_SECRET_KEY_FILE=str(path))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    (vault_line,) = [line for line in lines if line.startswith("credentials and vault")]
    assert "FAILED" in vault_line and "HTTP 401" in vault_line
    assert lines[-1] == (
        f"verdict: NOT USABLE (failed: credentials and vault, stellar:native, {USDC})"
    )
    (native,) = [line for line in lines if line.startswith("stellar:native")]
    assert native.split()[1:] == [
        "FAILED",
        "XLM:",
        "not",
        "checked",
        "(the",
        "vault",
        "could",
        "not",
        "be",
        "read)",
    ]
    assert "BEGIN" not in done.stdout  # no key material is printed


def test_custody_check_refuses_other_custody_types(tmp_path: Path, fb_sandbox: str) -> None:
    done = check(tmp_path, fb_sandbox, CUSTODY_TYPE="stellar")
    assert done.returncode == 2
    assert (
        done.stderr
        == "anchorpay: custody check needs CUSTODY_TYPE=fireblocks (custody is stellar)\n"
    )
