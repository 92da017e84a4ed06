"""Fireblocks configuration is checked at start: every mistake is one line, before any
payout (the reference found a missing asset mapping as an HTTP 500 at the first payout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from anchorpay.adapters.fireblocks.config import load_asset_mapping, load_fireblocks_config
from anchorpay.runtime import load_fireblocks
from anchorpay.sandbox.fireblocks import (
    SANDBOX_FIREBLOCKS_API_KEY,
    SANDBOX_FIREBLOCKS_VAULT_ID,
)
from anchorpay.settings import ConfigError, Settings, load_settings
from support.app import CONFIG_DIR, USDC

ASSETS = load_settings(assets_file=CONFIG_DIR / "assets.toml").load_assets()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rsa_pem(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "api.pem"
    path.write_bytes(pem)
    return path


def prod(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "stellar_network": "testnet",
        "custody_type": "fireblocks",
        "fireblocks_api_key": "api-key",
        "fireblocks_secret_key_file": rsa_pem(tmp_path),
        "fireblocks_vault_account_id": " 3 ",
        "custody_file": CONFIG_DIR / "custody.toml",
    }
    values.update(overrides)
    return Settings(**values)


def test_production_config_is_read_and_trimmed(tmp_path: Path) -> None:
    config = load_fireblocks_config(prod(tmp_path), ASSETS)
    assert config.base_url == "https://api.fireblocks.io"
    assert config.jwks_url == "https://keys.fireblocks.io/.well-known/jwks.json"
    assert config.vault_account_id == "3"
    assert config.asset_ids == {"stellar:native": "XLM", USDC: "USDC_XLM"}
    assert config.webhook_key is None
    assert "api-key" not in repr(config)
    assert config.stellar_asset("USDC_XLM") == USDC and config.stellar_asset("ETH") is None


def test_the_jwks_url_and_the_base_url_are_configurable(tmp_path: Path) -> None:
    config = load_fireblocks_config(
        prod(
            tmp_path,
            fireblocks_base_url="https://eu.fireblocks.test/",
            fireblocks_webhook_jwks_url="https://eu-keys.fireblocks.test/jwks.json",
        ),
        ASSETS,
    )
    assert config.base_url == "https://eu.fireblocks.test"
    assert config.jwks_url == "https://eu-keys.fireblocks.test/jwks.json"


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("fireblocks_api_key", "FIREBLOCKS_API_KEY is required when CUSTODY_TYPE=fireblocks"),
        (
            "fireblocks_vault_account_id",
            "FIREBLOCKS_VAULT_ACCOUNT_ID is required when CUSTODY_TYPE=fireblocks",
        ),
        (
            "fireblocks_secret_key_file",
            "FIREBLOCKS_SECRET_KEY_FILE is required when CUSTODY_TYPE=fireblocks",
        ),
    ],
)
def test_production_needs_credentials(tmp_path: Path, missing: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_fireblocks_config(prod(tmp_path, **{missing: None}), ASSETS)
    assert str(caught.value) == message


def test_unreadable_and_wrong_keys_are_startup_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError) as caught:
        load_fireblocks_config(prod(tmp_path, fireblocks_secret_key_file=missing), ASSETS)
    assert str(caught.value) == (
        f"FIREBLOCKS_SECRET_KEY_FILE {missing} cannot be read: No such file or directory"
    )
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ec_path = tmp_path / "ec.pem"
    ec_path.write_bytes(ec_key)
    with pytest.raises(ConfigError) as caught:
        load_fireblocks_config(prod(tmp_path, fireblocks_secret_key_file=ec_path), ASSETS)
    assert str(caught.value) == f"FIREBLOCKS_SECRET_KEY_FILE {ec_path} is not a PEM RSA private key"
    garbage = write(tmp_path, "hook.pem", "not a key")
    with pytest.raises(ConfigError) as caught:
        load_fireblocks_config(prod(tmp_path, fireblocks_webhook_public_key_file=garbage), ASSETS)
    assert str(caught.value) == (
        f"FIREBLOCKS_WEBHOOK_PUBLIC_KEY_FILE {garbage} is not a PEM RSA public key"
    )


def test_the_sandbox_needs_no_credentials() -> None:
    """The composition root hands the sandbox's keys in; the adapter never imports them."""
    settings = Settings(custody_type="fireblocks", custody_file=CONFIG_DIR / "custody.toml")
    with pytest.raises(ConfigError, match="FIREBLOCKS_API_KEY is required"):
        load_fireblocks_config(settings, ASSETS)  # no defaults handed in
    config = load_fireblocks(settings, ASSETS)
    assert config.api_key == SANDBOX_FIREBLOCKS_API_KEY
    assert config.vault_account_id == SANDBOX_FIREBLOCKS_VAULT_ID
    assert config.base_url == "http://127.0.0.1:8085/sandbox/fireblocks"
    assert config.jwks_url == "http://127.0.0.1:8085/sandbox/fireblocks/.well-known/jwks.json"
    assert config.webhook_key is not None


MAPPINGS = "[fireblocks.asset_mappings]\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "is missing or empty"),
        ('"stellar:native" = "XLM"\n', f"has no Fireblocks asset id for {USDC}"),
        (
            f'"stellar:native" = "XLM"\n"{USDC}" = " XLM "\n',
            f"Fireblocks asset XLM is mapped from both stellar:native and {USDC}",
        ),
        (
            f'"stellar:native" = "XLM"\n" stellar:native" = "XLM2"\n"{USDC}" = "U"\n',
            "stellar:native is mapped twice",
        ),
        (
            f'"stellar:native" = "XLM"\n"{USDC}" = "U"\n"stellar:EURC:GX" = "E"\n',
            "stellar:EURC:GX is not in the asset list",
        ),
        ('"USDC" = "U"\n', "'USDC' is not a Stellar asset id (stellar:…)"),
        (f'"stellar:native" = ""\n"{USDC}" = "U"\n', "stellar:native must map to a Fireblocks"),
    ],
)
def test_mapping_mistakes_are_one_line(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, "custody.toml", MAPPINGS + body)
    with pytest.raises(ConfigError) as caught:
        load_asset_mapping(path, ASSETS)
    assert str(caught.value).startswith(f"custody file {path}: [fireblocks.asset_mappings]")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_mapping_keys_and_values_are_trimmed(tmp_path: Path) -> None:
    path = write(tmp_path, "c.toml", f'{MAPPINGS}" stellar:native " = " XLM "\n"{USDC}" = "U"\n')
    assert load_asset_mapping(path, ASSETS) == {"stellar:native": "XLM", USDC: "U"}


def test_custody_deposit_info_needs_fireblocks() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(custody_type="stellar", deposit_info_generator="custody")
    assert str(caught.value) == (
        "DEPOSIT_INFO_GENERATOR=custody needs CUSTODY_TYPE=fireblocks (custody is stellar)"
    )


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`anchorpay <args>` as a process, in an empty folder, with `env` on top."""
    full = {
        **os.environ,
        "CUSTODY_TYPE": "fireblocks",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/a.db",
        "ANCHORPAY_CONFIG_DIR": str(CONFIG_DIR),
        "ASSETS_FILE": str(CONFIG_DIR / "assets.toml"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "anchorpay.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_the_server_refuses_to_start_with_a_bad_mapping(tmp_path: Path) -> None:
    custody = write(tmp_path, "custody.toml", MAPPINGS + '"stellar:native" = "XLM"\n')
    done = run_cli(tmp_path, "serve", "--port", "1", CUSTODY_FILE=str(custody))
    assert done.returncode == 2
    assert done.stderr == (
        f"anchorpay: custody file {custody}: [fireblocks.asset_mappings] has no Fireblocks "
        f"asset id for {USDC}\n"
    )


def test_the_worker_refuses_to_start_without_credentials(tmp_path: Path) -> None:
    done = run_cli(
        tmp_path,
        "worker",
        STELLAR_NETWORK="testnet",
        FIREBLOCKS_API_KEY="k",
        FIREBLOCKS_VAULT_ACCOUNT_ID="0",
    )
    assert done.returncode == 2
    assert done.stderr == (
        "anchorpay: FIREBLOCKS_SECRET_KEY_FILE is required when CUSTODY_TYPE=fireblocks\n"
    )
    assert not (tmp_path / "a.db").exists()  # refused before touching anything
