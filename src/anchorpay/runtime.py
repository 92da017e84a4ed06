"""The composition root's own knowledge: what only the process that wires everything may
know. Adapters never import the sandbox; on the sandbox network, its sandbox-only defaults
(the distribution secret, the sandbox Fireblocks' key, vault and webhook key) are handed to
them from here when the operator set nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anchorpay.domain.assets import AssetList
from anchorpay.settings import Settings

if TYPE_CHECKING:
    from anchorpay.adapters.fireblocks.config import FireblocksConfig


def distribution_secret_default(settings: Settings) -> str | None:
    """The sandbox's own distribution secret on the sandbox network, else None."""
    if not settings.sandbox_enabled:
        return None
    from anchorpay.sandbox import SANDBOX_DISTRIBUTION_SECRET

    return SANDBOX_DISTRIBUTION_SECRET


def load_fireblocks(settings: Settings, assets: AssetList) -> FireblocksConfig:
    """The Fireblocks configuration, read and checked once (ConfigError with one line), with
    the sandbox Fireblocks' fixed keys as defaults on the sandbox network."""
    from anchorpay.adapters.fireblocks.config import FireblocksDefaults, load_fireblocks_config

    defaults = None
    if settings.sandbox_enabled:  # a sandbox ledger only pairs with a sandbox Fireblocks
        from anchorpay.sandbox import fireblocks as fb

        defaults = FireblocksDefaults(
            api_key=fb.SANDBOX_FIREBLOCKS_API_KEY,
            vault_account_id=fb.SANDBOX_FIREBLOCKS_VAULT_ID,
            private_key_pem=fb.SANDBOX_FIREBLOCKS_API_SECRET_PEM,
            webhook_public_pem=fb.SANDBOX_FIREBLOCKS_WEBHOOK_PUBLIC_PEM,
        )
    return load_fireblocks_config(settings, assets, defaults)
