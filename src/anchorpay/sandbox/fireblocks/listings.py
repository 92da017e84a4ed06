"""The workspace-wide vault listings the official SDKs use to discover a vault
(`GET /v1/vault/accounts_paged`, `GET /v1/vault/asset_wallets`). The sandbox has one vault, so
each answer is one page; `assetId` filters as Fireblocks does."""

from __future__ import annotations

from typing import Any

from anchorpay.sandbox.fireblocks.service import FireblocksSandbox


def accounts_paged(fb: FireblocksSandbox, asset_id: str | None) -> dict[str, Any]:
    """`{"accounts": [VaultAccount], "paging": {}}`: the vault, unless it lacks `asset_id`."""
    accounts = []
    if asset_id is None or asset_id in fb.stellar_assets:
        accounts.append(fb.vault_account(fb.vault_account_id))
    return {"accounts": accounts, "paging": {}}


def asset_wallets(fb: FireblocksSandbox, asset_id: str | None) -> dict[str, Any]:
    """`{"assetWallets": [AssetWallet], "paging": {}}`: one wallet per mapped asset."""
    wallets = []
    for fb_asset in fb.stellar_assets:
        if asset_id is not None and fb_asset != asset_id:
            continue
        balance = fb.vault_asset(fb.vault_account_id, fb_asset)
        wallets.append(
            {
                "vaultId": fb.vault_account_id,
                "assetId": fb_asset,
                "available": balance["available"],
                "total": balance["total"],
                "pending": balance["pending"],
                "staked": "0",
                "frozen": balance["frozen"],
                "lockedAmount": balance["lockedAmount"],
            }
        )
    return {"assetWallets": wallets, "paging": {}}
