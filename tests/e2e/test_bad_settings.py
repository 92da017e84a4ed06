"""`anchorpay serve` with each kind of bad setting (issue 15 parts 4 and 6): a real process,
one line on stderr naming the setting and what is allowed, exit code 2, nothing on stdout,
no traceback. Then the secrets: under every misconfiguration here and in a served session
(DEBUG logs, refused and failed requests), no configured secret appears in any output."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from support.app import CONFIG_DIR
from support.serving import serving

ANCHORPAY = Path(sys.executable).parent / "anchorpay"

# The secrets of these tests: each must never be printed, whatever goes wrong.
API_KEY = "api-key-Q7f2Lr9wXk4PzT8mVb3N-0123456789"
SEED = "SC7ZZURNPGCPTFLKF652T4ZAFQ44M4CDQHGL7LFYGEFLOKHOBFKJSU7V"
CHANNEL_SEED = "SAXRAIEBF3ENNYUXZHKYYABNJURUYT7N42XLWA4DWJKHTTU363TIL5ZD"
FIREBLOCKS_KEY = "fireblocks-api-key-7c1d0e8a-5f4b-4e3a-9d2c"
DB_PASSWORD = "db-pass-W3qY8tR5"
BAD_SEED = "SBADSEEDXYZ" + "Q" * 45  # 56 characters, not a seed: still secret material
PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "-----END PRIVATE KEY-----\n"
)
SECRETS = (API_KEY, SEED, CHANNEL_SEED, FIREBLOCKS_KEY, DB_PASSWORD, BAD_SEED, "MIIEvQIBADAN")
PORT_RULE = "PLATFORM_SERVER_PORT must be a whole number from 1 to 65535"
SEED_RULE = "is not a valid Stellar secret seed (56 characters starting with S)"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Sandbox off, no custody, this test's SQLite file, and every secret configured where it
    is harmless (FIREBLOCKS_API_KEY is unused with CUSTODY_TYPE=none)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("PLATFORM_", "SECRET_", "STELLAR_", "CUSTODY_", "DATABASE_", "FIREBLOCKS_", "LOG_")
        )
        and k != "ANCHORPAY_ENV_FILE"
    }
    base.update(
        ANCHORPAY_CONFIG_DIR=str(CONFIG_DIR),
        ASSETS_FILE=str(CONFIG_DIR / "assets.toml"),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        STELLAR_NETWORK="testnet",
        HORIZON_URL="http://127.0.0.1:9",
        CUSTODY_TYPE="none",
        FIREBLOCKS_API_KEY=FIREBLOCKS_KEY,
    )
    return base


def serve(
    env: dict[str, str], cwd: Path, *args: str, python: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(ANCHORPAY), "serve", *args]
    if python is not None:  # the CLI run by a Python that hides a module first
        command = [sys.executable, "-c", python, "serve", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def assert_secret_free(*outputs: str) -> None:
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text, f"a secret was printed: {text!r}"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# (environment, extra arguments, the exact line), with {tmp} for the test's folder.
Case = tuple[dict[str, str], tuple[str, ...], str]
CASES: dict[str, Case] = {
    "log level": (
        {"LOG_LEVEL": "LOUD"}, (),
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got 'LOUD')",
    ),
    "port range": ({"PLATFORM_SERVER_PORT": "70000"}, (), f"{PORT_RULE} (got '70000')"),
    "port argument": ({}, ("--port", "eighty"), f"{PORT_RULE} (got 'eighty')"),
    "seconds": (
        {"WORKER_TICK_S": "inf"}, (),
        "WORKER_TICK_S must be a number of seconds above 0 (got 'inf')",
    ),
    "request bytes": (
        {"MAX_REQUEST_BYTES": "1.5"}, (),
        "MAX_REQUEST_BYTES must be a whole number from 1024 to 1073741824 (got '1.5')",
    ),
    "database scheme": (
        {"DATABASE_URL": f"mysql://anchor:{DB_PASSWORD}@db/anchorpay"}, (),
        "DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg:// (got mysql://)",
    ),
    "database sync driver": (
        {"DATABASE_URL": f"postgresql://anchor:{DB_PASSWORD}@db/anchorpay"}, (),
        "DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
        "(got postgresql://)",
    ),
    "distribution seed": (
        {"STELLAR_DISTRIBUTION_SECRET": BAD_SEED}, (), f"STELLAR_DISTRIBUTION_SECRET {SEED_RULE}"
    ),
    "channel seed": (
        {"STELLAR_CHANNEL_SECRETS": f"{CHANNEL_SEED},{BAD_SEED}"}, (),
        f"STELLAR_CHANNEL_SECRETS (entry 2) {SEED_RULE}",
    ),
    "distribution secret missing": (
        {"CUSTODY_TYPE": "stellar", "STELLAR_CHANNEL_SECRETS": CHANNEL_SEED}, (),
        "STELLAR_DISTRIBUTION_SECRET is required when CUSTODY_TYPE=stellar",
    ),
    "fireblocks key as text": (
        {"CUSTODY_TYPE": "fireblocks", "FIREBLOCKS_SECRET_KEY_FILE": PEM}, (),
        "FIREBLOCKS_SECRET_KEY_FILE must be the path of a PEM file, not the key itself: "
        "write the key to a file and give its path",
    ),
    "fireblocks key missing": (
        {"CUSTODY_TYPE": "fireblocks", "FIREBLOCKS_VAULT_ACCOUNT_ID": "7",
         "FIREBLOCKS_SECRET_KEY_FILE": "{tmp}/nope.pem"}, (),
        "FIREBLOCKS_SECRET_KEY_FILE {tmp}/nope.pem cannot be read: No such file or directory",
    ),
    "api key short": (
        {"PLATFORM_SERVER_AUTH_TYPE": "api_key",
         "SECRET_PLATFORM_API_AUTH_SECRET": API_KEY[:31]}, (),
        "SECRET_PLATFORM_API_AUTH_SECRET is too weak for api_key: it must be at least 32 bytes",
    ),
    "jwt repeated": (
        {"PLATFORM_SERVER_AUTH_TYPE": "jwt", "SECRET_PLATFORM_API_AUTH_SECRET": "k" * 64}, (),
        "SECRET_PLATFORM_API_AUTH_SECRET is too weak for jwt: it is one character repeated",
    ),
    "api key whitespace": (
        {"PLATFORM_SERVER_AUTH_TYPE": "api_key",
         "SECRET_PLATFORM_API_AUTH_SECRET": API_KEY + " x"}, (),
        "SECRET_PLATFORM_API_AUTH_SECRET must not contain whitespace",
    ),
    "misspelt in dev.env": (
        {"ANCHORPAY_ENV_FILE": "{tmp}/typo.env"}, (),
        "env file {tmp}/typo.env: SECRET_PLATFORM_API_AUTH_SECRT is not a setting; "
        "did you mean SECRET_PLATFORM_API_AUTH_SECRET?",
    ),
    "misspelt in config toml": (
        {"ANCHORPAY_CONFIG_DIR": "{tmp}/config"}, (),
        "{tmp}/config/scheduler.toml [settings]: worker_tik_s is not a setting; "
        "did you mean worker_tick_s?",
    ),
    "asset decimals": (
        {"ASSETS_FILE": "{tmp}/decimals.toml"}, (),
        "assets file {tmp}/decimals.toml: asset 1: significant_decimals must be a whole number "
        "from 0 to 7",
    ),
    "asset issuer": (
        {"ASSETS_FILE": "{tmp}/issuer.toml"}, (),
        "assets file {tmp}/issuer.toml: asset id 'stellar:USDC:GNOTANISSUER' is not a SEP-38 id "
        "(stellar:native, stellar:CODE:ISSUER with a 1-12 letter code and a G… issuer, or "
        "iso4217:CCY)",
    ),
    "asset twice": (
        {"ASSETS_FILE": "{tmp}/twice.toml"}, (),
        "assets file {tmp}/twice.toml: asset iso4217:USD is listed twice",
    ),
}  # fmt: skip


def files(tmp: Path) -> None:
    write(tmp / "typo.env", f"SECRET_PLATFORM_API_AUTH_SECRT={API_KEY}\n")
    write(tmp / "config" / "scheduler.toml", "[settings]\nworker_tik_s = 1.0\n")
    write(tmp / "decimals.toml", '[[assets]]\nid = "iso4217:USD"\nsignificant_decimals = 9\n')
    write(tmp / "issuer.toml", '[[assets]]\nid = "stellar:USDC:GNOTANISSUER"\n')
    write(tmp / "twice.toml", '[[assets]]\nid = "iso4217:USD"\n[[assets]]\nid = "iso4217:USD"\n')


@pytest.mark.parametrize("case", list(CASES))
def test_serve_with_a_bad_setting_is_one_line_and_exit_2(
    env: dict[str, str], tmp_path: Path, case: str
) -> None:
    files(tmp_path)
    extra, args, line = CASES[case]
    tmp = str(tmp_path)
    result = serve(
        {**env, **{k: v.replace("{tmp}", tmp) for k, v in extra.items()}},
        tmp_path,
        *args,
        # the worker's own check needs the worker; elsewhere nothing should get that far
        *(() if case == "distribution secret missing" else ("--no-worker",)),
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"anchorpay: {line.replace('{tmp}', tmp)}\n"
    assert_secret_free(result.stdout, result.stderr)
    assert not (tmp_path / "serve.db").exists()  # nothing started


def test_missing_postgres_driver_names_the_extra(env: dict[str, str], tmp_path: Path) -> None:
    """asyncpg hidden from the CLI's Python, as if anchorpay were installed without it."""
    hide = (
        "import sys; sys.modules['asyncpg'] = None; "
        "from anchorpay.cli import main; sys.exit(main())"
    )
    url = f"postgresql+asyncpg://anchor:{DB_PASSWORD}@127.0.0.1:9/anchorpay"
    result = serve({**env, "DATABASE_URL": url}, tmp_path, python=hide)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "anchorpay: DATABASE_URL uses postgresql+asyncpg but asyncpg is not installed: "
        "pip install 'anchorpay[postgres]'\n"
    )
    assert_secret_free(result.stderr)


def test_port_already_in_use(env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(env, tmp_path, "--port", str(port))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"anchorpay: PLATFORM_SERVER_PORT {port} is already in use on 127.0.0.1: stop what "
        "listens there or choose another port (--port or PLATFORM_SERVER_PORT)\n"
    )


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Callable[[], str]]]:
    """`anchorpay serve` with the worker, DEBUG logs, API key auth and every secret set;
    yields its URL and a function that stops it and returns its log."""
    env = {
        **env,
        "LOG_LEVEL": "DEBUG",
        "PLATFORM_SERVER_AUTH_TYPE": "api_key",
        "SECRET_PLATFORM_API_AUTH_SECRET": API_KEY,
        "CUSTODY_TYPE": "stellar",
        "STELLAR_DISTRIBUTION_SECRET": SEED,
        "STELLAR_CHANNEL_SECRETS": CHANNEL_SEED,
        "WORKER_TICK_S": "0.2",
    }
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(serving([str(ANCHORPAY)], tmp_path, env))

        def stop() -> str:
            stack.close()
            return (tmp_path / "serve.log").read_text()

        yield base, stop


def test_no_secret_in_any_answer_or_log_line(served: tuple[str, Callable[[], str]]) -> None:
    base, stop = served
    key = {"X-Api-Key": API_KEY}
    wrong = {"X-Api-Key": API_KEY[:-1] + "x"}
    answers = [
        httpx.post(base, json=[{"jsonrpc": "2.0", "id": 1, "method": "get_transactions"}]),
        httpx.post(base, json={"jsonrpc": "2.0", "id": 1, "method": "nope"}, headers=wrong),
        httpx.post(base, json={"jsonrpc": "2.0", "id": 1, "method": "nope"}, headers=key),
        httpx.post(base, content=b"{oops", headers={**key, "Content-Type": "application/json"}),
        httpx.post(base, content=b"x", headers={**key, "Content-Type": "text/plain"}),
        httpx.post(f"{base}/transactions", json={"kind": "deposit"}, headers=key),
        httpx.get(f"{base}/transactions/{SEED}", headers=key),
        httpx.get(f"{base}/payouts?limit=0", headers=key),
        httpx.get(f"{base}/health"),
        httpx.get(f"{base}/nothing-here", headers=key),
    ]
    assert [a.status_code for a in answers] == [403, 403, 200, 400, 415, 400, 404, 400, 200, 404]
    logs = stop()
    assert "anchorpay serving on port" in logs and "worker started" in logs
    # the 404 of /transactions/<seed> names what the caller sent: that is the caller's text,
    # so it is not counted; everything else must be free of every secret
    texts = [a.text + str(a.headers) for i, a in enumerate(answers) if i != 6]
    assert_secret_free(logs.replace(f"/transactions/{SEED}", "/transactions/<id>"), *texts)


def test_sandbox_served_alone_follows_platform_auth(env: dict[str, str], tmp_path: Path) -> None:
    """`anchorpay sandbox` with API key auth: the developer routes need the key, Horizon
    does not."""
    env = {
        **env,
        "PLATFORM_SERVER_AUTH_TYPE": "api_key",
        "SECRET_PLATFORM_API_AUTH_SECRET": API_KEY,
        "CUSTODY_TYPE": "stellar",
    }
    with serving(
        [str(ANCHORPAY)], tmp_path, env, subcommand="sandbox", ready_path="/sandbox/horizon/"
    ) as root:
        base = f"{root}/sandbox"
        refused = httpx.post(f"{base}/accounts", json={"xlm": "10"})
        assert (refused.status_code, refused.text) == (403, '{\n  "error": "forbidden"\n}')
        assert httpx.get(f"{base}/distribution").status_code == 403
        made = httpx.post(f"{base}/accounts", json={"xlm": "10"}, headers={"X-Api-Key": API_KEY})
        assert made.status_code == 201
        account = made.json()["account_id"]
        assert httpx.get(f"{base}/horizon/accounts/{account}").status_code == 200
