"""The Fireblocks configuration, read and checked once at start (CUSTODY_TYPE=fireblocks).

Everything that can be wrong is found here, as one line a treasury engineer can act on: a
missing credential, an unreadable or wrong-type key file, an asset of the asset list without
a Fireblocks id, two Stellar assets mapped to one Fireblocks id. At run time nothing of this
can fail any more (the reference found a missing mapping as an HTTP 500 on the first payout).

On the sandbox, unset credentials fall back to defaults the composition root hands in (the
sandbox Fireblocks' fixed, sandbox-only key and vault), so `make serve` with
CUSTODY_TYPE=fireblocks works offline. This module never imports the sandbox.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from anchorpay.adapters.fireblocks.auth import (
    KeyFileError,
    load_private_key,
    load_public_key,
    parse_private_key_pem,
    parse_public_key_pem,
)
from anchorpay.domain.assets import AssetList
from anchorpay.settings import ConfigError, Settings


@dataclass(frozen=True)
class FireblocksConfig:
    base_url: str
    api_key: str = field(repr=False)
    private_key: RSAPrivateKey = field(repr=False)
    vault_account_id: str
    asset_ids: Mapping[str, str]  # SEP-38 Stellar asset id -> Fireblocks asset id
    webhook_key: RSAPublicKey | None = field(repr=False)
    jwks_url: str
    timeout_s: float

    def stellar_asset(self, fireblocks_asset: str) -> str | None:
        for stellar, fb in self.asset_ids.items():
            if fb == fireblocks_asset:
                return stellar
        return None


@dataclass(frozen=True)
class FireblocksDefaults:
    """What unset credentials fall back to (the sandbox's, handed in by the composition
    root); never used against a real Fireblocks."""

    api_key: str = field(repr=False)
    vault_account_id: str
    private_key_pem: str = field(repr=False)
    webhook_public_pem: str = field(repr=False)


def load_fireblocks_config(
    settings: Settings, assets: AssetList, defaults: FireblocksDefaults | None = None
) -> FireblocksConfig:
    """Build and check the configuration. Raises ConfigError with one line."""
    api_key = settings.fireblocks_api_key.get_secret_value() if settings.fireblocks_api_key else ""
    vault = (settings.fireblocks_vault_account_id or "").strip()
    if defaults is not None:
        api_key = api_key or defaults.api_key
        vault = vault or defaults.vault_account_id
    for name, value in (
        ("FIREBLOCKS_API_KEY", api_key.strip()),
        ("FIREBLOCKS_VAULT_ACCOUNT_ID", vault),
    ):
        if not value:
            raise ConfigError(f"{name} is required when CUSTODY_TYPE=fireblocks")
    try:
        private_key = _private_key(settings.fireblocks_secret_key_file, defaults)
        webhook_key = _webhook_key(settings.fireblocks_webhook_public_key_file, defaults)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None
    return FireblocksConfig(
        base_url=settings.fireblocks_api_base_url(),
        api_key=api_key.strip(),
        private_key=private_key,
        vault_account_id=vault,
        asset_ids=load_asset_mapping(settings.custody_path(), assets),
        webhook_key=webhook_key,
        jwks_url=settings.fireblocks_jwks_url(),
        timeout_s=settings.fireblocks_timeout_s,
    )


def _private_key(path: Path | None, defaults: FireblocksDefaults | None) -> RSAPrivateKey:
    if path is not None:
        return load_private_key(path)
    if defaults is None:
        raise ConfigError("FIREBLOCKS_SECRET_KEY_FILE is required when CUSTODY_TYPE=fireblocks")
    return parse_private_key_pem(defaults.private_key_pem.encode())


def _webhook_key(path: Path | None, defaults: FireblocksDefaults | None) -> RSAPublicKey | None:
    if path is not None:
        return load_public_key(path)
    if defaults is None:
        return None  # the JWKS (Fireblocks-Webhook-Signature) is enough
    return parse_public_key_pem(defaults.webhook_public_pem.encode())


def load_asset_mapping(path: Path, assets: AssetList) -> dict[str, str]:
    """`[fireblocks.asset_mappings]` of the custody file: "stellar:…" = "FIREBLOCKS_ID".
    Keys and values are trimmed; every Stellar asset of the asset list needs exactly one
    mapping, a Fireblocks id may serve one Stellar asset only."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"custody file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"custody file {path} is not valid TOML: {exc}") from None
    table = data.get("fireblocks", {}).get("asset_mappings")
    where = f"custody file {path}: [fireblocks.asset_mappings]"
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{where} is missing or empty")
    mapping: dict[str, str] = {}
    owners: dict[str, str] = {}
    for raw_key, raw_value in table.items():
        stellar = str(raw_key).strip()
        if not isinstance(raw_value, str) or not raw_value.strip():
            raise ConfigError(f"{where}: {stellar} must map to a Fireblocks asset id string")
        fb = raw_value.strip()
        if not stellar.startswith("stellar:"):
            raise ConfigError(f"{where}: {stellar!r} is not a Stellar asset id (stellar:…)")
        if stellar in mapping:
            raise ConfigError(f"{where}: {stellar} is mapped twice")
        if fb in owners:
            raise ConfigError(
                f"{where}: Fireblocks asset {fb} is mapped from both {owners[fb]} and {stellar}"
            )
        if assets.get(stellar) is None:
            raise ConfigError(f"{where}: {stellar} is not in the asset list")
        mapping[stellar] = fb
        owners[fb] = stellar
    for asset in assets.stellar_assets():
        if asset.id not in mapping:
            raise ConfigError(f"{where} has no Fireblocks asset id for {asset.id}")
    return mapping
