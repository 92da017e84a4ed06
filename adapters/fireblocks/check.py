"""`anchorpay custody check`: can anchorpay pay through the configured Fireblocks workspace?

One signed request per line of the table: the vault account (which also proves the API key
and the private key), each mapped asset with its Fireblocks id and balance, and the webhook
keys (the legacy key parses; the JWKS answers with RSA keys). The verdict is USABLE only
when every line is; the command's exit code says the same (0 usable, 1 not). Nothing secret
is printed: not the API key, not the key files' contents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anchorpay.adapters.fireblocks.client import FireblocksClient, FireblocksError
from anchorpay.adapters.fireblocks.config import FireblocksConfig
from anchorpay.adapters.fireblocks.models import VaultAccount
from anchorpay.adapters.fireblocks.webhook_signature import VerifierUnavailable, WebhookVerifier


@dataclass(frozen=True, slots=True)
class Line:
    check: str
    ok: bool
    detail: str


@dataclass
class Report:
    title: str
    lines: list[Line] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return bool(self.lines) and all(line.ok for line in self.lines)

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.lines.append(Line(check, ok, detail))

    def render(self) -> str:
        width = max(len(line.check) for line in self.lines) if self.lines else 5
        out = [self.title, ""]
        out.append(f"{'CHECK'.ljust(width)}  RESULT  DETAIL")
        for line in self.lines:
            mark = "ok" if line.ok else "FAILED"
            out.append(f"{line.check.ljust(width)}  {mark.ljust(6)}  {line.detail}")
        out.append("")
        failed = [line.check for line in self.lines if not line.ok]
        if failed:
            out.append(f"verdict: NOT USABLE (failed: {', '.join(failed)})")
        else:
            out.append("verdict: USABLE")
        return "\n".join(out)


async def run_check(config: FireblocksConfig, client: FireblocksClient) -> Report:
    report = Report(
        f"Fireblocks custody check: {config.base_url}, vault account {config.vault_account_id}"
    )
    vault = await _vault(config, client, report)
    held = {asset.id: asset for asset in vault.assets} if vault is not None else {}
    for stellar, fb_id in config.asset_ids.items():
        asset = held.get(fb_id)
        if vault is None:
            report.add(stellar, False, f"{fb_id}: not checked (the vault could not be read)")
        elif asset is None:
            report.add(stellar, False, f"{fb_id}: not in the vault account")
        else:
            balance = f"{fb_id}: balance {asset.total}, available {asset.available}"
            report.add(stellar, True, balance)
    await _webhook_keys(config, report)
    return report


async def _vault(
    config: FireblocksConfig, client: FireblocksClient, report: Report
) -> VaultAccount | None:
    try:
        vault = await client.get_vault_account(config.vault_account_id)
    except FireblocksError as exc:
        report.add("credentials and vault", False, str(exc))
        return None
    name = f' "{vault.name}"' if vault.name else ""
    report.add("credentials and vault", True, f"vault account {vault.id}{name}, API key accepted")
    return vault


async def _webhook_keys(config: FireblocksConfig, report: Report) -> None:
    if config.webhook_key is not None:
        bits = config.webhook_key.key_size
        report.add("webhook key (legacy)", True, f"RSA {bits}-bit public key parses")
    # The webhook endpoint's own verifier: the check counts the keys it would use.
    verifier = WebhookVerifier(
        legacy_key=None, jwks_url=config.jwks_url, timeout_s=config.timeout_s
    )
    try:
        count = await verifier.refresh()
    except VerifierUnavailable as exc:
        report.add("webhook keys (JWKS)", False, f"{config.jwks_url}: {exc}")
        return
    finally:
        await verifier.aclose()
    report.add("webhook keys (JWKS)", True, f"{config.jwks_url}: {count} RSA signing key(s)")
