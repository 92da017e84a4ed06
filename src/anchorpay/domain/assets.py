"""The configured asset list (SEP-38 ids) and the checks every method shares on asset ids."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Asset:
    """One configured asset. `id` is the SEP-38 id: `stellar:CODE:ISSUER`, `stellar:native`,
    `iso4217:CCY`."""

    id: str
    significant_decimals: int | None = None
    distribution_account: str | None = None
    deposit_enabled: bool = True
    withdraw_enabled: bool = True

    @property
    def is_stellar(self) -> bool:
        return is_stellar_asset(self.id)

    @property
    def code(self) -> str:
        """`USDC` for `stellar:USDC:G…`, `native` for `stellar:native`, `USD` for `iso4217:USD`."""
        parts = self.id.split(":")
        return parts[1] if len(parts) > 1 else parts[0]

    @property
    def issuer(self) -> str | None:
        parts = self.id.split(":")
        return parts[2] if len(parts) > 2 else None


def is_stellar_asset(asset_id: str) -> bool:
    """The reference's rule: an asset id is a Stellar asset when it starts with `stellar:`."""
    return asset_id.startswith("stellar:")


@dataclass(frozen=True, slots=True)
class AssetList:
    assets: tuple[Asset, ...]

    def get(self, asset_id: str) -> Asset | None:
        for asset in self.assets:
            if asset.id == asset_id:
                return asset
        return None

    def by_code(self, code: str) -> Asset | None:
        """First asset with this code, Stellar assets first (spec §3.13's lookup for refunds)."""
        ordered = sorted(self.assets, key=lambda a: not a.is_stellar)
        for asset in ordered:
            if asset.code == code:
                return asset
        return None

    def stellar_assets(self) -> tuple[Asset, ...]:
        return tuple(a for a in self.assets if a.is_stellar)
