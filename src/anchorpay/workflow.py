"""The application service: one status-changing method applied to one stored transaction.

Shared by the RPC handlers and the worker (the scheduler must not import `rpc`). One call is
one database transaction: load, validate (the pure state machine), the lookups the plan asks
for (ledger, trustline, deposit instructions), apply, the optimistic write, and the payout
side effects. Any error rolls all of it back; nothing is half-written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import deposit_info, logs
from anchorpay.adapters.ledger import LedgerClient, LedgerError
from anchorpay.clock import SYSTEM, Clock
from anchorpay.domain import hashes, machine, money, refunds, settlement
from anchorpay.domain.assets import AssetList
from anchorpay.domain.errors import InternalError, InvalidParams, InvalidRequest
from anchorpay.domain.events import EventType
from anchorpay.domain.settlement import SettledPayout
from anchorpay.domain.transaction import StellarTransaction, Transaction
from anchorpay.metrics import Metrics
from anchorpay.settings import Settings
from anchorpay.store import ledger_hashes, payouts
from anchorpay.store import transactions as repo
from anchorpay.store.transactions import ConcurrentModification
from anchorpay.store.unavailable import lost_race
from anchorpay.trustline_reads import TrustlineReads

if TYPE_CHECKING:  # the adapter package is imported only when Fireblocks is configured
    from anchorpay.adapters.fireblocks.config import FireblocksConfig

log = logging.getLogger("anchorpay.workflow")

# Work that must commit in the same database transaction as the state change (the worker's
# final payout write, the observer's cursor).
InSameTransaction = Callable[[AsyncSession], Awaitable[None]]


def _no_worker() -> None:
    """The default `wake_worker`: nothing to wake (tests, `serve --no-worker`)."""


class CustodyDepositInfo(Protocol):
    """DEPOSIT_INFO_GENERATOR=custody: the custodian's deposit address and memo for `tx`."""

    async def __call__(
        self, session: AsyncSession, tx: Transaction, asset_id: str | None, now: datetime
    ) -> machine.DepositInfo: ...


@dataclass
class Services:
    """What the RPC handlers, the REST routes and the worker share."""

    settings: Settings
    assets: AssetList
    sessions: async_sessionmaker[AsyncSession]
    ledger: LedgerClient
    wake_worker: Callable[[], None] = field(default=_no_worker)
    custody_deposit_info: CustodyDepositInfo | None = None
    # CUSTODY_TYPE=fireblocks: the configuration, read and checked once at start.
    fireblocks: FireblocksConfig | None = None
    # The sandbox's distribution secret on the sandbox network (the composition root's), the
    # signer's default when STELLAR_DISTRIBUTION_SECRET is unset.
    distribution_secret_default: str | None = field(default=None, repr=False)
    # Where every part of the process reads the time (tests hand in a ManualClock).
    clock: Clock = field(default=SYSTEM)
    # This process's Prometheus metrics (GET /metrics, `anchorpay worker --metrics-port`).
    metrics: Metrics = field(default_factory=Metrics)
    # The RPC's trustline reads: coalesced, positives reused for TRUSTLINE_FRESH_S.
    trustline_reads: TrustlineReads = field(init=False)

    def __post_init__(self) -> None:
        self.trustline_reads = TrustlineReads(
            self.ledger,
            fresh_s=self.settings.trustline_fresh_s,
            timeout_s=self.settings.trustline_read_timeout_s,
            monotonic=self.clock.monotonic,
        )


def machine_context(services: Services, now: datetime) -> machine.MachineContext:
    settings = services.settings
    return machine.MachineContext(
        assets=services.assets,
        custody_enabled=settings.custody_enabled,
        custody_type=settings.effective_custody_type,
        deposit_info_generator=settings.deposit_info_generator,
        now=now,
    )


def transaction_id_of(params: Any) -> str:
    """`params.transaction_id` for the status-changing methods (spec §2.3)."""
    if not isinstance(params, dict):
        raise InvalidParams("params must be a JSON object with a transaction_id")
    value = params.get("transaction_id")
    if value is None:
        raise InvalidRequest("Transaction with id[null] is not found")
    if not isinstance(value, str):
        raise InvalidParams("transaction_id must be a string")
    return value


async def run_method(
    services: Services,
    method: str,
    params: Any,
    *,
    now: datetime | None = None,
    in_same_transaction: InSameTransaction | None = None,
    settling: str | None = None,
    known: StellarTransaction | None = None,
) -> Transaction:
    """Apply `method` with `params`; returns the transaction as stored. Raises RpcError.

    `settling`: the worker is recording the final state of this payout in the same database
    transaction (`in_same_transaction`): confirmed, its money is already on the ledger and in
    the outcome, so the money ledger does not count it twice; failed, the error it puts the
    transaction in does not cancel it under the worker's own write.
    `known`: the ledger's record of the hash the method names, when the caller already has
    it (the worker's submission answer): no second ledger read."""
    now = now or services.clock.now()
    transaction_id = transaction_id_of(params)
    ctx = machine_context(services, now)
    settings = services.settings
    wake = False
    async with services.sessions() as session, session.begin():
        tx = await repo.get(session, transaction_id)
        if tx is None:
            raise InvalidRequest(f"Transaction with id[{transaction_id}] is not found")
        plan = machine.validate(tx, method, params, ctx)
        facts = await _facts(services, session, tx, plan, params, now, known)
        if settling is not None and method == "notify_refund_sent" and known is not None:
            # the worker records a refund it paid: its ledger record joins stellar_transactions
            facts = dataclasses.replace(facts, refund_record=known)
        outcome = machine.apply(plan, facts, ctx)
        if method in money.MONEY_METHODS:
            entries = await payouts.money_entries(session, tx.id)
            decimals = refunds.decimals_for(tx, services.assets)
            money.check(method, tx, outcome, entries, decimals, settling=settling)
        await claim_hashes(session, tx, outcome.transaction, now)
        written = await _write(session, tx, outcome.transaction, now)
        if outcome.payout is not None:
            try:
                await payouts.record_intent(
                    session,
                    written.id,
                    outcome.payout,
                    settings.effective_custody_type,
                    now,
                    request_id=logs.current("request_id"),
                )
            except payouts.PayoutConflict as exc:
                raise InvalidParams(str(exc)) from None
            wake = True
        if outcome.resume_waiting_payout:
            await payouts.resume_waiting(session, written.id, now)
            wake = True
        if outcome.cancel_waiting_payout:
            reason = written.message or f"closed by {method}"
            await payouts.cancel_unsent(session, written.id, reason=reason, now=now, keep=settling)
        if in_same_transaction is not None:
            await in_same_transaction(session)
    if wake:
        services.wake_worker()
    return written


async def claim_hashes(
    session: AsyncSession, before: Transaction, after: Transaction, now: datetime
) -> None:
    """Refuse (InvalidParams) a Stellar hash `after` records that another transaction, or
    another purpose of this one, already holds; record the new ones (same database
    transaction as the record itself)."""
    for item in hashes.claims(before, after):
        for _ in range(2):  # a lost insert race is read back once
            holder = await ledger_hashes.holder(session, item.hash, after.id)
            if holder is not None:
                message = hashes.refusal(item, after.id, holder)
                if message is not None:
                    raise InvalidParams(message)
                if holder.payout_id is None:
                    break  # already recorded, same purpose of this transaction
            if await ledger_hashes.claim(session, after.id, item, now):
                break


async def record_settled_payout(
    services: Services,
    settled: SettledPayout,
    *,
    now: datetime,
    in_same_transaction: InSameTransaction,
) -> Transaction:
    """A confirmed payout whose status transition the state machine refused (the business
    moved the transaction meanwhile): its money left the treasury, so it is recorded on the
    transaction all the same, without a status change, in the same database transaction as
    the payout's final state. A refund joins `refunds.payments` (id: its hash) and, with its
    ledger record, `stellar_transactions`; a payment joins `stellar_transactions`. Raises
    InternalError when the ledger cannot be read yet."""
    record: StellarTransaction | None = None
    async with services.sessions() as session, session.begin():
        tx = await repo.get(session, settled.transaction_id)
        if tx is None:
            raise InvalidRequest(f"Transaction with id[{settled.transaction_id}] is not found")
        if settled.hash not in {s.id for s in tx.stellar_transactions}:
            if settled.purpose == "payment":
                record = settled.record or await _stellar_transaction(services, settled.hash)
            else:  # a refund counts once in `refunds`: its record is a courtesy, no lookup
                record = settled.record
        after = settlement.record(tx, settled, record, services.assets, now)
        await claim_hashes(session, tx, after, now)
        written = await _write(session, tx, after, now) if after is not tx else tx
        await in_same_transaction(session)
    return written


async def record_payout_failure(
    sessions: async_sessionmaker[AsyncSession],
    transaction_id: str,
    payout: dict[str, Any],
    *,
    now: datetime,
    in_same_transaction: InSameTransaction,
) -> None:
    """A payout failed for good but its transaction is not moved (the business moved it
    elsewhere): the `payout_failed` event, in the same database transaction as the payout's
    final write. The transaction is written unchanged with a new version, so the event's
    sequence number is taken under the same optimistic lock as every other change."""
    async with sessions() as session, session.begin():
        tx = await repo.get(session, transaction_id)
        if tx is not None:
            try:
                await repo.update(
                    session, tx.clone(), tx, now, event=EventType.PAYOUT_FAILED, detail=payout
                )
            except ConcurrentModification as exc:
                raise InternalError(str(exc)) from None
        await in_same_transaction(session)


async def _write(
    session: AsyncSession, before: Transaction, tx: Transaction, now: datetime
) -> Transaction:
    """The versioned write, with its business event (the repository records it)."""
    try:
        return await repo.update(session, tx, before, now)
    except ConcurrentModification as exc:
        raise InternalError(str(exc)) from None
    except OperationalError as exc:
        # SQLite: a writer whose read snapshot went stale (another writer committed since)
        # is refused at once with SQLITE_BUSY_SNAPSHOT: the same lost race as a version
        # mismatch. A lock timeout (SQLITE_BUSY) is not: it is the database being unavailable.
        if lost_race(exc):
            raise InternalError(str(ConcurrentModification(tx.id))) from None
        raise


async def _facts(
    services: Services,
    session: AsyncSession,
    tx: Transaction,
    plan: machine.Plan,
    params: dict[str, Any],
    now: datetime,
    known: StellarTransaction | None = None,
) -> machine.Facts:
    stellar_transaction: StellarTransaction | None = None
    if plan.stellar_transaction_id is not None:
        if known is not None and known.id == plan.stellar_transaction_id:
            stellar_transaction = known
        else:
            stellar_transaction = await _stellar_transaction(services, plan.stellar_transaction_id)
    trustline: bool | None = None
    if plan.trustline_query is not None:
        account, asset = plan.trustline_query
        trustline = await services.trustline_reads.trusts(account, asset)
    info: machine.DepositInfo | None = None
    generator = services.settings.deposit_info_generator
    if plan.needs_deposit_info and generator in ("self", "custody"):
        amount_in = params.get("amount_in")
        asset_id = amount_in.get("asset") if isinstance(amount_in, dict) else None
        asset_id = asset_id if isinstance(asset_id, str) and asset_id else None
        if generator == "self":
            info = await deposit_info.allocate_memo(
                session, tx, services.assets, asset_id=asset_id, now=now
            )
        elif services.custody_deposit_info is None:
            raise InternalError("DEPOSIT_INFO_GENERATOR=custody but no custodian is configured")
        else:
            info = await services.custody_deposit_info(session, tx, asset_id, now)
    return machine.Facts(
        stellar_transaction=stellar_transaction, trustline=trustline, deposit_info=info
    )


async def _stellar_transaction(services: Services, tx_hash: str) -> StellarTransaction:
    try:
        async with asyncio.timeout(services.settings.horizon_timeout_s):
            found = await services.ledger.get_transaction(tx_hash)
    except (LedgerError, TimeoutError) as exc:
        log.warning("ledger lookup of transaction %s failed: %s", tx_hash, exc)
        raise InternalError(f"Failed to retrieve Stellar transaction by ID[{tx_hash}]") from None
    return found.record
