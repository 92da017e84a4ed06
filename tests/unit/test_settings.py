"""Settings precedence (environment > dev.env > config/*.toml > defaults) and the one-line
messages for bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from anchorpay.settings import ConfigError, Settings, load_settings
from support.app import CONFIG_DIR

SETTING_NAMES = [name.upper() for name in Settings.model_fields]
SEED = "SC7ZZURNPGCPTFLKF652T4ZAFQ44M4CDQHGL7LFYGEFLOKHOBFKJSU7V"  # a random test seed
SECRETS = (
    "SECRET_PLATFORM_API_AUTH_SECRET",
    "STELLAR_DISTRIBUTION_SECRET",
    "STELLAR_CHANNEL_SECRETS",
    "FIREBLOCKS_SECRET_KEY_FILE",
    "FIREBLOCKS_WEBHOOK_PUBLIC_KEY_FILE",
    "DATABASE_URL",
)
ACCOUNT = "GDPWCPMWBW6PCXSXVZ4ISXK7245P6QEVSARTRJ4AG3ZMHBJTMCLZQ5GS"
PEM_TEXT = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
)


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
            "PLATFORM_SERVER_PORT must be a whole number from 1 to 65535 (got 'http')",
        ),
        (
            {"PLATFORM_SERVER_PORT": "70000"},
            "PLATFORM_SERVER_PORT must be a whole number from 1 to 65535 (got '70000')",
        ),
        (
            {"MAX_REQUEST_BYTES": "12"},
            "MAX_REQUEST_BYTES must be a whole number from 1024 to 1073741824 (got '12')",
        ),
        (
            {"RPC_BATCH_SIZE_LIMIT": "0"},
            "RPC_BATCH_SIZE_LIMIT must be a whole number at least 1 (got '0')",
        ),
        (
            {"HORIZON_TIMEOUT_S": "inf"},
            "HORIZON_TIMEOUT_S must be a number of seconds above 0 (got 'inf')",
        ),
        ({"WORKER_TICK_S": "nan"}, "WORKER_TICK_S must be a number of seconds above 0 (got 'nan')"),
        ({"WORKER_TICK_S": "-1"}, "WORKER_TICK_S must be a number of seconds above 0 (got '-1')"),
        (
            {"DATABASE_BUSY_TIMEOUT_S": "1e9"},
            "DATABASE_BUSY_TIMEOUT_S must be a number of seconds above 0 and at most 3600 "
            "(got '1e9')",
        ),
        (
            {"LOG_LEVEL": "LOUD"},
            "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got 'LOUD')",
        ),
        (
            {"DATABASE_URL": "mysql://anchor:pw-in-url@db/anchorpay"},
            "DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
            "(got mysql://)",
        ),
        (
            {"DATABASE_URL": "postgresql://anchor:pw-in-url@db/anchorpay"},
            "DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
            "(got postgresql://)",
        ),
        (
            {"DATABASE_URL": "pw-in-url"},
            "DATABASE_URL is not a database URL: use sqlite+aiosqlite:///path/to/file.db or "
            "postgresql+asyncpg://user:password@host:5432/database",
        ),
        (
            {"DATABASE_URL": "postgresql+asyncpg://anchor:pw-in-url@db"},
            "DATABASE_URL names no database (postgresql+asyncpg://…/database)",
        ),
        (
            {"STELLAR_DISTRIBUTION_SECRET": SEED[:-1] + "A"},
            "STELLAR_DISTRIBUTION_SECRET is not a valid Stellar secret seed "
            "(56 characters starting with S)",
        ),
        (
            {"STELLAR_DISTRIBUTION_SECRET": ACCOUNT},
            "STELLAR_DISTRIBUTION_SECRET is not a valid Stellar secret seed "
            "(56 characters starting with S)",
        ),
        (
            {"STELLAR_CHANNEL_SECRETS": f"{SEED}, {SEED[:20]}"},
            "STELLAR_CHANNEL_SECRETS (entry 2) is not a valid Stellar secret seed "
            "(56 characters starting with S)",
        ),
        (
            {"STELLAR_CHANNEL_SECRETS": f"{SEED},{SEED}"},
            "STELLAR_CHANNEL_SECRETS lists the same seed twice",
        ),
        (
            {"FIREBLOCKS_SECRET_KEY_FILE": PEM_TEXT},
            "FIREBLOCKS_SECRET_KEY_FILE must be the path of a PEM file, not the key itself: "
            "write the key to a file and give its path",
        ),
        (
            {"FIREBLOCKS_WEBHOOK_PUBLIC_KEY_FILE": PEM_TEXT},
            "FIREBLOCKS_WEBHOOK_PUBLIC_KEY_FILE must be the path of a PEM file, not the key "
            "itself: write the key to a file and give its path",
        ),
        (
            {"HORIZON_URL": "ftp://horizon.example"},
            "HORIZON_URL must be an http:// or https:// URL (got 'ftp://horizon.example')",
        ),
        (
            {"PLATFORM_API_KEY_HEADER": "X Api Key"},
            "PLATFORM_API_KEY_HEADER must be an HTTP header name such as X-Api-Key "
            "(got 'X Api Key')",
        ),
        (
            {
                "PLATFORM_SERVER_AUTH_TYPE": "api_key",
                "SECRET_PLATFORM_API_AUTH_SECRET": "short-k3y",
            },
            "SECRET_PLATFORM_API_AUTH_SECRET is too weak for api_key: it must be at least 32 bytes",
        ),
        (
            {"PLATFORM_SERVER_AUTH_TYPE": "jwt", "SECRET_PLATFORM_API_AUTH_SECRET": "z" * 48},
            "SECRET_PLATFORM_API_AUTH_SECRET is too weak for jwt: it is one character repeated",
        ),
        (
            {
                "PLATFORM_SERVER_AUTH_TYPE": "api_key",
                "SECRET_PLATFORM_API_AUTH_SECRET": "correct horse battery staple 12345",
            },
            "SECRET_PLATFORM_API_AUTH_SECRET must not contain whitespace",
        ),
        (
            {
                "PLATFORM_SERVER_AUTH_TYPE": "api_key",
                "SECRET_PLATFORM_API_AUTH_SECRET": "clé-de-l-api-secrète-0123456789",
            },
            "SECRET_PLATFORM_API_AUTH_SECRET must be printable ASCII for api_key "
            "(it is an HTTP header)",
        ),
    ],
)
def test_bad_values(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == message
    for name, value in env.items():  # a secret (or a URL's password) is never quoted
        if name in SECRETS:
            assert value not in str(info.value) and "pw-in-url" not in str(info.value)


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
        platform_server_auth_type="api_key",
        secret_platform_api_auth_secret="hunter2-secret-of-at-least-32-bytes",
    )
    assert "hunter2-secret-of-at-least-32-bytes" not in repr(settings)
    assert "hunter2-secret-of-at-least-32-bytes" not in str(settings.model_dump())


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


def test_unknown_keys_in_dev_env_are_refused_with_the_closest_name(tmp_path: Path) -> None:
    env = tmp_path / "dev.env"
    env.write_text("PLATFORM_SERVER_PORT=9000\nPLATFORM_SERVER_PROT=9001\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "env file dev.env: PLATFORM_SERVER_PROT is not a setting; did you mean "
        "PLATFORM_SERVER_PORT?"
    )
    # a misspelt secret: the key is named, its value is not
    env.write_text("SECRET_PLATFORM_API_AUTH_SECRT=the-value-of-a-misspelt-secret-0123\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "env file dev.env: SECRET_PLATFORM_API_AUTH_SECRT is not a setting; did you mean "
        "SECRET_PLATFORM_API_AUTH_SECRET?"
    )
    env.write_text("COLOUR=blue\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "env file dev.env: COLOUR is not a setting (dev.env.example lists every one)"
    )


def test_unknown_keys_in_config_toml_are_refused(clean_env: Path) -> None:
    (clean_env / "scheduler.toml").write_text("[settings]\nworker_tik_s = 2\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        f"{clean_env / 'scheduler.toml'} [settings]: worker_tik_s is not a setting; "
        "did you mean worker_tick_s?"
    )


def test_missing_database_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if not installed: import fails
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://anchor@db/anchorpay")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "DATABASE_URL uses postgresql+asyncpg but asyncpg is not installed: "
        "pip install 'anchorpay[postgres]'"
    )


ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('id = "stellar:USDC"', "asset id 'stellar:USDC' is not a SEP-38 id"),
        ('id = "stellar:USDC:GABC"', "asset id 'stellar:USDC:GABC' is not a SEP-38 id"),
        (f'id = "stellar:TOOLONGCODE13:{ISSUER}"', "is not a SEP-38 id"),
        ('id = "iso4217:usd"', "asset id 'iso4217:usd' is not a SEP-38 id"),
        ('id = "USD"', "asset id 'USD' is not a SEP-38 id"),
        (
            'id = "iso4217:USD"\nsignificant_decimals = 8',
            "asset 1: significant_decimals must be a whole number from 0 to 7",
        ),
        (
            'id = "iso4217:USD"\nsignificant_decimals = -1',
            "asset 1: significant_decimals must be a whole number from 0 to 7",
        ),
        (
            'id = "iso4217:USD"\nsignificant_decimals = "2"',
            "asset 1: significant_decimals must be a whole number from 0 to 7",
        ),
        (
            'id = "iso4217:USD"\ndeposit_enabled = "yes"',
            "asset 1: deposit_enabled must be true or false",
        ),
        (
            'id = "iso4217:USD"\ndecimals = 2',
            "asset 1: decimals is not an asset key (known: id, significant_decimals, "
            "distribution_account, deposit_enabled, withdraw_enabled)",
        ),
        (
            'id = "iso4217:USD"\nwithdrawal_enabled = true',
            "asset 1: withdrawal_enabled is not an asset key; did you mean withdraw_enabled?",
        ),
        (
            f'id = "stellar:USDC:{ISSUER}"\ndistribution_account = "GNOPE"',
            "asset 1: distribution_account must be a Stellar account id (G…, 56 characters)",
        ),
    ],
)
def test_bad_asset_entries(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "assets.toml"
    path.write_text(f"[[assets]]\n{entry}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(assets_file=path).load_assets()
    assert str(info.value).startswith(f"assets file {path}")
    assert message in str(info.value)


def test_asset_id_message_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "assets.toml"
    path.write_text('[[assets]]\nid = "stellar:USDC"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(assets_file=path).load_assets()
    assert str(info.value) == (
        f"assets file {path}: asset id 'stellar:USDC' is not a SEP-38 id (stellar:native, "
        "stellar:CODE:ISSUER with a 1-12 letter code and a G… issuer, or iso4217:CCY)"
    )


def test_assets_file_with_an_unknown_table(tmp_path: Path) -> None:
    path = tmp_path / "assets.toml"
    path.write_text('[[assets]]\nid = "iso4217:USD"\n[[asset]]\nid = "iso4217:EUR"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(assets_file=path).load_assets()
    assert str(info.value) == (
        f"assets file {path}: asset is not an assets file table; did you mean assets?"
    )
