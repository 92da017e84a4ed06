"""One typed settings object, read once.

Precedence, highest first: process environment, the `dev.env` file (path from `--env-file`
or `ANCHORPAY_ENV_FILE`), the `[settings]` tables of `config/*.toml`, then the defaults below.
Every setting is listed in `dev.env.example`. Bad configuration raises `ConfigError` with one
line a person can act on; the CLI prints it and exits with code 2. Every setting is checked
here, before anything starts (`settings_checks.py`): a key of dev.env or of a `[settings]`
table that is no setting is refused with the closest name; a secret's value is never quoted.
"""

from __future__ import annotations

import importlib.resources
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url

from anchorpay import settings_checks as checks
from anchorpay.domain.assets import Asset, AssetList

DEFAULT_ENV_FILE = "dev.env"
SANDBOX_STATE_FILE = "sandbox.db"
CONFIG_DIR_ENV = "ANCHORPAY_CONFIG_DIR"
ENV_FILE_ENV = "ANCHORPAY_ENV_FILE"

HORIZON_URLS = {
    "testnet": "https://horizon-testnet.stellar.org",
    "pubnet": "https://horizon.stellar.org",
}
FIREBLOCKS_URL = "https://api.fireblocks.io"
FIREBLOCKS_JWKS_URL = "https://keys.fireblocks.io/.well-known/jwks.json"
NETWORK_PASSPHRASES = {
    "testnet": "Test SDF Network ; September 2015",
    "pubnet": "Public Global Stellar Network ; September 2015",
    "sandbox": "anchorpay sandbox ; 2026",
}


class ConfigError(Exception):
    """A configuration problem, stated in one line."""


def config_dir() -> Path:
    """ANCHORPAY_CONFIG_DIR, else ./config when there is one, else the defaults installed with
    anchorpay (the repository's config/, packaged as `anchorpay.defaults`): so the command runs
    from any directory, not only from a checkout."""
    chosen = os.environ.get(CONFIG_DIR_ENV)
    if chosen:
        return Path(chosen)
    local = Path("config")
    if local.is_dir():
        return local
    return Path(str(importlib.resources.files("anchorpay.defaults")))


class _TomlDefaults(PydanticBaseSettingsSource):
    """Reads `[settings]` from every `config/*.toml`, below the environment and dev.env."""

    def __init__(self, settings_cls: type[BaseSettings], config_dir: Path) -> None:
        super().__init__(settings_cls)
        self._values: dict[str, Any] = {}
        if not config_dir.is_dir():
            return
        for path in sorted(config_dir.glob("*.toml")):
            table = _read_toml(path).get("settings", {})
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [settings] must be a table")
            try:
                checks.unknown_keys(table, settings_cls.model_fields, f"{path} [settings]")
            except checks.CheckError as exc:
                raise ConfigError(str(exc)) from None
            for key, value in table.items():
                self._values[key.lower()] = value

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=False,
        extra="ignore",
        env_file_encoding="utf-8",
        frozen=True,
        allow_inf_nan=False,  # "inf" seconds or "nan" bytes are no setting
    )

    # Platform API server and its authentication (spec/rpc.md §7).
    platform_server_host: str = "127.0.0.1"
    platform_server_port: int = Field(8085, ge=1, le=65535)
    platform_server_auth_type: Literal["none", "api_key", "jwt"] = "none"
    secret_platform_api_auth_secret: SecretStr | None = None
    platform_api_key_header: str = "X-Api-Key"
    platform_api_jwt_header: str = "Authorization"
    rpc_batch_size_limit: int = Field(40, ge=1)
    # Largest request body accepted (bytes); a larger one is HTTP 413 before it is parsed.
    max_request_bytes: int = Field(1_048_576, ge=1024, le=1_073_741_824)

    # Storage.
    database_url: str = "sqlite+aiosqlite:///./data/anchorpay.db"
    # How long a statement waits for another writer's lock (SQLite busy timeout, PostgreSQL
    # lock_timeout) before it gives up and is answered "temporarily unavailable, retry".
    database_busy_timeout_s: float = Field(30.0, gt=0, le=3600)

    # Network and custody.
    stellar_network: Literal["sandbox", "testnet", "pubnet"] = "sandbox"
    horizon_url: str | None = None
    horizon_timeout_s: float = Field(10.0, gt=0)
    trustline_read_timeout_s: float = Field(3.0, gt=0)
    # How long the RPC reuses an account seen trusting an asset (0: read every time).
    trustline_fresh_s: float = Field(2.0, ge=0)
    custody_type: Literal["none", "stellar", "fireblocks"] | None = None
    stellar_distribution_secret: SecretStr | None = None
    stellar_channel_secrets: SecretStr | None = None
    stellar_tx_timeout_s: int = Field(60, ge=5)
    stellar_base_fee: int = Field(100, ge=100)
    # Payment operations per signed transaction (operation batching; 1 turns it off).
    stellar_max_ops_per_tx: int = Field(100, ge=1, le=100)
    assets_file: Path = Field(default_factory=lambda: config_dir() / "assets.toml")
    deposit_info_generator: Literal["self", "none", "custody"] = "self"

    # Fireblocks (CUSTODY_TYPE=fireblocks). On the sandbox, unset values use the sandbox
    # Fireblocks' own base URL, keys and vault; elsewhere the first four are required.
    fireblocks_base_url: str | None = None
    fireblocks_api_key: SecretStr | None = None
    fireblocks_secret_key_file: Path | None = None
    fireblocks_vault_account_id: str | None = None
    fireblocks_webhook_public_key_file: Path | None = None
    fireblocks_webhook_jwks_url: str | None = None
    fireblocks_timeout_s: float = Field(30.0, gt=0)
    custody_file: Path | None = None  # default: custody.toml of the config folder

    # Sandbox network (STELLAR_NETWORK=sandbox).
    sandbox_ledger_close_s: float = Field(5.0, gt=0)
    sandbox_fireblocks_step_s: float = Field(1.0, gt=0)
    # The sandbox ledger's SQLite file; unset: sandbox.db beside a SQLite database (else in
    # ./data); `:memory:` forgets the network at every start.
    sandbox_state: str | None = None

    # Worker: payouts.
    worker_tick_s: float = Field(1.0, gt=0)
    # Between ticks (scheduler/payout_watch.py): how often a worker looks for payouts another
    # process recorded (one indexed read), and how often it reads the latest ledger while an
    # envelope is in flight (one Horizon read; raise it on a rate-limited public Horizon).
    worker_idle_poll_s: float = Field(0.05, gt=0)
    worker_ledger_poll_s: float = Field(0.25, gt=0)
    payout_lease_s: float = Field(30.0, gt=0)
    payout_retry_base_s: float = Field(1.0, gt=0)
    payout_retry_max_s: float = Field(300.0, gt=0)
    payout_max_attempts: int = Field(20, ge=1)
    payout_poll_max_s: float = Field(120.0, gt=0)

    # Worker: trustlines and the payment observer.
    trustline_check_interval_s: float = Field(10.0, gt=0)
    trustline_check_timeout_s: float = Field(3600.0, gt=0)
    trustline_timeout_message: str = "The trustline was not established in time"
    trustline_poll_manual: bool = False
    observer_interval_s: float = Field(2.0, gt=0)
    observer_stall_s: float = Field(300.0, gt=0)

    # Business events (the outbox): delivery to the business server's callback API.
    business_callback_url: str | None = None
    business_callback_secret: SecretStr | None = None
    events_delivery_timeout_s: float = Field(5.0, gt=0)
    events_delivery_concurrency: int = Field(8, ge=1, le=256)
    events_poll_s: float = Field(0.25, gt=0)
    events_lease_s: float = Field(30.0, gt=0)
    events_retry_base_s: float = Field(1.0, gt=0)
    events_retry_max_s: float = Field(300.0, gt=0)
    events_max_age_s: float = Field(86400.0, gt=0)
    # Kafka (the anchorpay[kafka] extra): brokers, comma-separated; off when unset.
    events_kafka_bootstrap_servers: str | None = None
    events_kafka_topic: str = Field("TRANSACTION", min_length=1, max_length=249)

    # Messages the worker writes when it moves a transaction itself.
    outgoing_payment_sent_message: str = "Outgoing payment sent"
    incoming_payment_received_message: str = "Received an incoming payment"
    refund_sent_message: str = "Refund sent"
    log_level: str = "INFO"
    # json (one object per line, with the ids of what it is about), text, or auto: json
    # unless stderr is a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        checks.database_url(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        return checks.log_level(value)

    @field_validator("stellar_distribution_secret")
    @classmethod
    def _check_seed(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            checks.secret_seed("STELLAR_DISTRIBUTION_SECRET", value.get_secret_value())
        return value

    @field_validator("stellar_channel_secrets")
    @classmethod
    def _check_channels(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            checks.channel_seeds("STELLAR_CHANNEL_SECRETS", value.get_secret_value())
        return value

    @field_validator(
        "fireblocks_secret_key_file", "fireblocks_webhook_public_key_file", mode="before"
    )
    @classmethod
    def _check_key_path(cls, value: Any, info: Any) -> Any:
        if value is not None:
            checks.key_file_path(str(info.field_name).upper(), value)
        return value

    @field_validator("horizon_url", "fireblocks_base_url", "fireblocks_webhook_jwks_url")
    @classmethod
    def _check_url(cls, value: str | None, info: Any) -> str | None:
        checks.http_url(str(info.field_name).upper(), value)
        return value

    @field_validator("platform_api_key_header", "platform_api_jwt_header")
    @classmethod
    def _check_header(cls, value: str, info: Any) -> str:
        checks.header_name(str(info.field_name).upper(), value)
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        secret = self.secret_platform_api_auth_secret
        if self.platform_server_auth_type != "none":
            if secret is None or not secret.get_secret_value():
                raise ValueError(
                    "SECRET_PLATFORM_API_AUTH_SECRET is required when "
                    f"PLATFORM_SERVER_AUTH_TYPE={self.platform_server_auth_type}"
                )
            checks.auth_secret(self.platform_server_auth_type, secret.get_secret_value())
        return self

    @model_validator(mode="after")
    def _check_callback(self) -> Settings:
        if self.events_lease_s <= self.events_delivery_timeout_s:
            raise ValueError(
                "EVENTS_LEASE_S must be longer than EVENTS_DELIVERY_TIMEOUT_S "
                "(else a second worker could send an event still being sent)"
            )
        url = self.business_callback_url
        if not url:
            return self
        if not url.startswith(("http://", "https://")):
            raise ValueError("BUSINESS_CALLBACK_URL must be an http:// or https:// URL")
        secret = self.business_callback_secret
        if secret is None or not secret.get_secret_value():
            raise ValueError(
                "BUSINESS_CALLBACK_SECRET is required when BUSINESS_CALLBACK_URL is set "
                "(every event is signed with it)"
            )
        return self

    @model_validator(mode="after")
    def _check_custody(self) -> Settings:
        if self.deposit_info_generator == "custody" and self.effective_custody_type != "fireblocks":
            raise ValueError(
                "DEPOSIT_INFO_GENERATOR=custody needs CUSTODY_TYPE=fireblocks "
                f"(custody is {self.effective_custody_type})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            _TomlDefaults(settings_cls, config_dir()),
        )

    # Derived values: one place decides them, so every process agrees.

    @property
    def event_callback_url(self) -> str | None:
        """Where events are POSTed (the AP callback API's `/event`), None when off."""
        if not self.business_callback_url:
            return None
        return self.business_callback_url.rstrip("/") + "/event"

    @property
    def effective_custody_type(self) -> str:
        """With the sandbox and nothing configured, payouts go through the local signer."""
        if self.custody_type is not None:
            return self.custody_type
        return "stellar" if self.stellar_network == "sandbox" else "none"

    @property
    def custody_enabled(self) -> bool:
        return self.effective_custody_type != "none"

    @property
    def sandbox_enabled(self) -> bool:
        return self.stellar_network == "sandbox"

    @property
    def network_passphrase(self) -> str:
        return NETWORK_PASSPHRASES[self.stellar_network]

    def horizon_base_url(self) -> str:
        """HORIZON_URL, or the network's public Horizon, or this server's own sandbox."""
        if self.horizon_url:
            return self.horizon_url.rstrip("/")
        if self.stellar_network == "sandbox":
            return f"{self.local_base_url()}/sandbox/horizon"
        return HORIZON_URLS[self.stellar_network]

    def fireblocks_api_base_url(self) -> str:
        """FIREBLOCKS_BASE_URL, or this server's sandbox Fireblocks, or Fireblocks itself."""
        if self.fireblocks_base_url:
            return self.fireblocks_base_url.rstrip("/")
        if self.stellar_network == "sandbox":
            return f"{self.local_base_url()}/sandbox/fireblocks"
        return FIREBLOCKS_URL

    def fireblocks_jwks_url(self) -> str:
        """FIREBLOCKS_WEBHOOK_JWKS_URL, or the sandbox Fireblocks' JWKS, or Fireblocks' own."""
        if self.fireblocks_webhook_jwks_url:
            return self.fireblocks_webhook_jwks_url
        if self.stellar_network == "sandbox":
            return f"{self.fireblocks_api_base_url()}/.well-known/jwks.json"
        return FIREBLOCKS_JWKS_URL

    def local_base_url(self) -> str:
        """How this server reaches itself (the embedded sandbox, its webhooks)."""
        return f"http://{self._local_host()}:{self.platform_server_port}"

    def _local_host(self) -> str:
        host = self.platform_server_host
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    def sandbox_state_path(self) -> str:
        """SANDBOX_STATE, or `sandbox.db` in the SQLite database's folder (else ./data)."""
        if self.sandbox_state:
            return self.sandbox_state
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return str(Path(url.database).parent / SANDBOX_STATE_FILE)
        return str(Path("data") / SANDBOX_STATE_FILE)

    def custody_path(self) -> Path:
        """CUSTODY_FILE, or `custody.toml` beside the other config files."""
        if self.custody_file is not None:
            return self.custody_file
        return config_dir() / "custody.toml"

    def load_assets(self) -> AssetList:
        return load_assets(self.assets_file)


def load_assets(path: Path) -> AssetList:
    """Parse the asset list (`[[assets]]` tables). Duplicates and bad ids are startup errors."""
    data = _read_toml(path)
    entries = data.get("assets")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"assets file {path} has no [[assets]] entries")
    seen: set[str] = set()
    assets: list[Asset] = []
    try:
        checks.unknown_keys(data, ["assets"], f"assets file {path}", "an assets file table")
        for n, entry in enumerate(entries, 1):
            checks.asset_entry(f"assets file {path}: asset {n}", entry)
            checks.asset_id(f"assets file {path}", entry.get("id"))
    except checks.CheckError as exc:
        raise ConfigError(str(exc)) from None
    for entry in entries:
        asset_id = str(entry.get("id", "")).strip()
        if asset_id in seen:
            raise ConfigError(f"assets file {path}: asset {asset_id} is listed twice")
        seen.add(asset_id)
        decimals = entry.get("significant_decimals")
        assets.append(
            Asset(
                id=asset_id,
                significant_decimals=int(decimals) if decimals is not None else None,
                distribution_account=entry.get("distribution_account"),
                deposit_enabled=bool(entry.get("deposit_enabled", True)),
                withdraw_enabled=bool(entry.get("withdraw_enabled", True)),
            )
        )
    return AssetList(tuple(assets))


def load_settings(env_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings. `env_file` (or ANCHORPAY_ENV_FILE) must exist when given; the
    default `dev.env` is optional."""
    explicit = env_file or os.environ.get(ENV_FILE_ENV)
    path = Path(explicit) if explicit else Path(DEFAULT_ENV_FILE)
    if explicit:
        if not path.is_file():
            raise ConfigError(f"env file {path} cannot be read: no such file")
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"env file {path} cannot be read: {exc.strerror}") from None
    env_arg = path if path.is_file() else None
    try:
        if env_arg is not None:
            _check_env_file_keys(env_arg)
        return Settings(_env_file=env_arg, **overrides)
    except checks.CheckError as exc:
        raise ConfigError(str(exc)) from None
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _check_env_file_keys(path: Path) -> None:
    """Every key of the env file is a setting: a misspelt one would be ignored silently."""
    from dotenv import dotenv_values

    try:
        keys = list(dotenv_values(path, encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"env file {path} cannot be read: {exc}") from None
    checks.unknown_keys(keys, Settings.model_fields, f"env file {path}")


def _one_line(exc: ValidationError) -> str:
    return checks.one_line(exc, Settings.model_fields)
