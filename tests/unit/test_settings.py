"""Settings precedence (environment > dev.env > config/*.toml > defaults) and the one-line
messages for bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchorpay.settings import ConfigError, Settings, load_settings
from support.app import CONFIG_DIR

SETTING_NAMES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A directory with no dev.env, an empty config dir, and no setting in the environment."""
    for name in [*SETTING_NAMES, "ANCHORPAY_ENV_FILE"]:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config"
    config.mkdir()
    monkeypatch.setenv("ANCHORPAY_CONFIG_DIR", str(config))
    monkeypatch.chdir(tmp_path)
    return config


def test_defaults(clean_env: Path) -> None:
    settings = load_settings()
    assert settings.platform_server_port == 8085
    assert settings.platform_server_auth_type == "none"
    assert settings.platform_api_key_header == "X-Api-Key"
    assert settings.rpc_batch_size_limit == 40
    assert settings.database_url == "sqlite+aiosqlite:///./data/anchorpay.db"
    assert settings.stellar_network == "sandbox"
    assert settings.assets_file == clean_env / "assets.toml"  # in the config folder
    assert settings.effective_custody_type == "stellar"
    assert settings.horizon_base_url() == "http://127.0.0.1:8085/sandbox/horizon"


def test_precedence(clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (clean_env / "server.toml").write_text(
        "[settings]\nplatform_server_port = 9001\nrpc_batch_size_limit = 10\nworker_tick_s = 7\n"
    )
    assert load_settings().platform_server_port == 9001
    (tmp_path / "dev.env").write_text("PLATFORM_SERVER_PORT=9002\nRPC_BATCH_SIZE_LIMIT=11\n")
    settings = load_settings()
    assert (settings.platform_server_port, settings.rpc_batch_size_limit) == (9002, 11)
    assert settings.worker_tick_s == 7
    monkeypatch.setenv("PLATFORM_SERVER_PORT", "9003")
    settings = load_settings()
    assert (settings.platform_server_port, settings.rpc_batch_size_limit) == (9003, 11)
    assert load_settings(platform_server_port=9004).platform_server_port == 9004


def test_env_file_option_and_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other = tmp_path / "other.env"
    other.write_text("STELLAR_NETWORK=testnet\nCUSTODY_TYPE=none\n")
    settings = load_settings(other)
    assert settings.stellar_network == "testnet"
    assert settings.horizon_base_url() == "https://horizon-testnet.stellar.org"
    assert settings.effective_custody_type == "none"
    monkeypatch.setenv("ANCHORPAY_ENV_FILE", str(other))
    assert load_settings().stellar_network == "testnet"


def test_horizon_url_overrides_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STELLAR_NETWORK", "pubnet")
    assert load_settings().horizon_base_url() == "https://horizon.stellar.org"
    monkeypatch.setenv("HORIZON_URL", "http://localhost:8000/")
    assert load_settings().horizon_base_url() == "http://localhost:8000"


def test_repo_config_dir_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANCHORPAY_CONFIG_DIR", str(CONFIG_DIR))
    settings = load_settings(assets_file=CONFIG_DIR / "assets.toml")
    assets = settings.load_assets()
    assert {a.id for a in assets.assets} == {
        "stellar:native",
        "stellar:USDC:GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5",
        "iso4217:USD",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PLATFORM_SERVER_AUTH_TYPE": "basic"},
            "PLATFORM_SERVER_AUTH_TYPE must be 'none', 'api_key' or 'jwt' (got 'basic')",
        ),
        (
            {"STELLAR_NETWORK": "futurenet"},
            "STELLAR_NETWORK must be 'sandbox', 'testnet' or 'pubnet' (got 'futurenet')",
        ),
        (
            {"PLATFORM_SERVER_PORT": "http"},
            "PLATFORM_SERVER_PORT: Input should be a valid integer, unable to parse string "
            "as an integer (got 'http')",
        ),
    ],
)
def test_bad_values(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == message


def test_missing_env_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.env")
    assert str(info.value) == f"env file {tmp_path / 'nope.env'} cannot be read: no such file"


def test_bad_config_toml(clean_env: Path) -> None:
    (clean_env / "broken.toml").write_text("[settings\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(f"config file {clean_env / 'broken.toml'} is not valid TOML")


def test_bad_assets_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(assets_file=missing).load_assets()
    assert str(info.value).startswith(f"config file {missing} cannot be read")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError) as info:
        load_settings(assets_file=empty).load_assets()
    assert str(info.value) == f"assets file {empty} has no [[assets]] entries"
    twice = tmp_path / "twice.toml"
    twice.write_text('[[assets]]\nid = "iso4217:USD"\n[[assets]]\nid = "iso4217:USD"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(assets_file=twice).load_assets()
    assert str(info.value) == f"assets file {twice}: asset iso4217:USD is listed twice"


def test_secret_is_not_printed() -> None:
    settings = load_settings(
        platform_server_auth_type="api_key", secret_platform_api_auth_secret="hunter2-secret"
    )
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings.model_dump())


def test_dev_env_example_lists_every_setting(tmp_path: Path) -> None:
    example = (CONFIG_DIR.parent / "dev.env.example").read_text()
    lines = [line for line in example.splitlines() if line.strip()]
    named = {
        line.lstrip("# ").split("=", 1)[0]
        for line in lines
        if "=" in line and line.lstrip("# ").split("=", 1)[0].isupper()
    }
    assert named == set(SETTING_NAMES)
    for i, line in enumerate(lines):
        if "=" in line and line.lstrip("# ").split("=", 1)[0] in named:
            assert lines[i - 1].startswith("# "), f"no comment line before {line}"
    copy = tmp_path / "dev.env"
    copy.write_text(example)
    assert load_settings(copy) == load_settings()
