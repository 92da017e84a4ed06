"""Fireblocks custody: the API client, webhook verification and the custody adapter.

- `config`: settings and the asset mapping, checked at start;
- `auth`, `client`, `models`: the signed async client of the few endpoints used
  (docs/fireblocks-wire.md);
- `webhook_signature`: both webhook signature schemes, on the raw bytes;
- `adapter`: the worker's custody seam over Fireblocks (exactly-once by externalTxId);
- `deposits`: custody deposit addresses for withdrawals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anchorpay.clock import SYSTEM, Clock
from anchorpay.metrics import Metrics

if TYPE_CHECKING:
    from anchorpay.adapters.fireblocks.adapter import FireblocksAdapter
    from anchorpay.adapters.fireblocks.client import FireblocksClient
    from anchorpay.adapters.fireblocks.config import FireblocksConfig
    from anchorpay.adapters.ledger import LedgerClient


def build_client(
    config: FireblocksConfig, clock: Clock = SYSTEM, metrics: Metrics | None = None
) -> FireblocksClient:
    from anchorpay.adapters.fireblocks.client import FireblocksClient

    return FireblocksClient(
        config.base_url,
        config.api_key,
        config.private_key,
        timeout_s=config.timeout_s,
        clock=clock.time,
        metrics=metrics,
    )


def build_fireblocks_adapter(
    config: FireblocksConfig,
    ledger: LedgerClient,
    clock: Clock = SYSTEM,
    metrics: Metrics | None = None,
) -> FireblocksAdapter:
    """The worker's adapter (CUSTODY_TYPE=fireblocks)."""
    from anchorpay.adapters.fireblocks.adapter import FireblocksAdapter

    return FireblocksAdapter(config, build_client(config, clock, metrics), ledger)
