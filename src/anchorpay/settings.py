"""One typed settings object, read once.

Precedence, highest first: process environment, the `dev.env` file (path from `--env-file`
or `ANCHORPAY_ENV_FILE`), the `[settings]` tables of `config/*.toml`, then the defaults below.
Every setting is listed in `dev.env.example`. Bad configuration raises `ConfigError` with one
line a person can act on; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from anchorpay.domain.assets import Asset, AssetList

DEFAULT_ENV_FILE = "dev.env"
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
        case_sensitive=False, extra="ignore", env_file_encoding="utf-8", frozen=True
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

    # Network and custody.
    stellar_network: Literal["sandbox", "testnet", "pubnet"] = "sandbox"
    horizon_url: str | None = None
    horizon_timeout_s: float = Field(10.0, gt=0)
    trustline_read_timeout_s: float = Field(3.0, gt=0)
    custody_type: Literal["none", "stellar", "fireblocks"] | None = None
    stellar_distribution_secret: SecretStr | None = None
    stellar_channel_secrets: SecretStr | None = None
    stellar_tx_timeout_s: int = Field(60, ge=5)
    stellar_base_fee: int = Field(100, ge=100)
    assets_file: Path = Path("config/assets.toml")
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

    # Worker: payouts.
    worker_tick_s: float = Field(1.0, gt=0)
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

    # Messages the worker writes when it moves a transaction itself.
    outgoing_payment_sent_message: str = "Outgoing payment sent"
    incoming_payment_received_message: str = "Received an incoming payment"
    refund_sent_message: str = "Refund sent"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        secret = self.secret_platform_api_auth_secret
        if self.platform_server_auth_type != "none":
            if secret is None or not secret.get_secret_value():
                raise ValueError(
                    "SECRET_PLATFORM_API_AUTH_SECRET is required when "
                    f"PLATFORM_SERVER_AUTH_TYPE={self.platform_server_auth_type}"
                )
            if (
                self.platform_server_auth_type == "jwt"
                and len(secret.get_secret_value().encode()) < 32
            ):
                raise ValueError(
                    "SECRET_PLATFORM_API_AUTH_SECRET is too weak for jwt: "
                    "it must be at least 32 bytes"
                )
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
        config_dir = Path(os.environ.get(CONFIG_DIR_ENV, "config"))
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            _TomlDefaults(settings_cls, config_dir),
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

    def custody_path(self) -> Path:
        """CUSTODY_FILE, or `custody.toml` beside the other config files."""
        if self.custody_file is not None:
            return self.custody_file
        return Path(os.environ.get(CONFIG_DIR_ENV, "config")) / "custody.toml"

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
    for entry in entries:
        asset_id = str(entry.get("id", "")).strip()
        if not asset_id.startswith(("stellar:", "iso4217:")):
            raise ConfigError(f"assets file {path}: asset id {asset_id!r} is not a SEP-38 id")
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
        return Settings(_env_file=env_arg, **overrides)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = ".".join(str(p) for p in err["loc"]).upper()
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "literal_error":
        return f"{name} must be {err['ctx']['expected']} (got {err['input']!r})"
    if not name:
        return msg
    return f"{name}: {msg} (got {err['input']!r})"
