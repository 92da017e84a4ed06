"""The Fireblocks incoming poll as a worker job (DEPOSIT_INFO_GENERATOR=custody).

What the poll does, and the webhook's road to the same decisions, is in
`anchorpay.fireblocks_transfers`; this module only schedules it.
"""

from __future__ import annotations

from typing import Any

from anchorpay.fireblocks_transfers import IncomingTransfers
from anchorpay.scheduler.leases import add_periodic_job
from anchorpay.scheduler.observer import FIRST_RUN_DELAY_S
from anchorpay.services import JobServices
from anchorpay.settings import ConfigError

JOB_ID = "fireblocks_incoming"


def add_fireblocks_incoming_job(scheduler: Any, services: JobServices) -> IncomingTransfers | None:
    """Register the poll when custody deposit addresses are in use (Fireblocks): every
    OBSERVER_INTERVAL_S, one worker at a time."""
    settings = services.settings
    if settings.effective_custody_type != "fireblocks":
        return None
    if settings.deposit_info_generator != "custody":
        return None
    from anchorpay.adapters.fireblocks import build_client

    config = services.fireblocks
    if config is None:
        raise ConfigError("CUSTODY_TYPE=fireblocks but its configuration was not loaded")
    incoming = IncomingTransfers(
        services, config, build_client(config, services.clock, services.metrics)
    )
    add_periodic_job(
        scheduler,
        services,
        JOB_ID,
        settings.observer_interval_s,
        incoming.run_once,
        first_run_delay_s=FIRST_RUN_DELAY_S,
    )
    return incoming
