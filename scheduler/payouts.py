"""Carrying payouts out: claim, check the trustline, prepare (commit), submit, record.

Every step is committed before the next network call, so a crash anywhere leaves one of:
- `queued` with no material: nothing was sent; start over.
- `submitting` with material: it may or may not have been sent. Ask `lookup`; resubmit the
  SAME material while it may still land; build a new one only once it is proven dead.
- `submitted`: accepted, not final; `lookup` until it is.
- `confirmed` / `failed`: final, written together with the transaction's completion.
A worker holds a payout by a lease; a crashed worker's lease expires and another takes over.
Every write checks the lease, so a worker that lost the row stops before sending anything.

`attempts` counts envelopes prepared plus tries that failed transiently.

Operation batching: an adapter that can put several payouts in one network transaction
(`BatchingCustody`, the local signer) gets the due memo-less payouts of a lane claimed
together. They are checked one by one, then prepared as ONE envelope whose material every
row stores, committed in ONE database transaction, sent once; each row then reads its own
operation's outcome. From `submitting` on, every row is resolved alone by the same rules as a
single payout (a lookup of the shared hash, with its own operation index), so a crash, a
timeout or a second worker cannot make any of them pay twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Unpack, cast

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay import logs
from anchorpay.adapters.custody import (
    BatchingCustody,
    Confirmed,
    CustodyAdapter,
    Failed,
    LookupResult,
    NotFound,
    PayoutOrder,
    Pending,
    PermanentCustodyError,
    TransientCustodyError,
    max_ops_per_tx,
)
from anchorpay.clock import SYSTEM
from anchorpay.domain.payout_states import (
    IN_FLIGHT_STATES,
    NOT_SENT_STATES,
    OPEN_STATES,
    PayoutMove,
    PayoutState,
)
from anchorpay.domain.statuses import Status
from anchorpay.metrics import Metrics
from anchorpay.scheduler.completion import Completion, internal_error_text
from anchorpay.scheduler.payout_log import log_change
from anchorpay.scheduler.retry import Backoff
from anchorpay.settings import Settings
from anchorpay.store import payouts as store
from anchorpay.store import transactions as tx_store
from anchorpay.store.tables import PayoutRow
from anchorpay.store.unavailable import database_unavailable, describe

log = logging.getLogger("anchorpay.payouts")

CRASH_ENV = "ANCHORPAY_CRASH_AT"
COMPLETION_SLOTS = 4  # completions of batched payouts written at once


def crash_point(name: str) -> None:
    """TEST-ONLY: with ANCHORPAY_CRASH_AT=<name> (after_prepare | after_submit) the process
    SIGKILLs itself here, so crash tests can stop a real worker at the worst moment."""
    if os.environ.get(CRASH_ENV) == name:
        log.warning("ANCHORPAY_CRASH_AT=%s: killing this process (test hook)", name)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def to_order(row: PayoutRow) -> PayoutOrder:
    return PayoutOrder(
        id=row.id,
        transaction_id=row.transaction_id,
        purpose=row.purpose,
        destination=row.destination,
        asset=row.asset,
        amount=row.amount,
        memo=row.memo,
        memo_type=row.memo_type,
        envelope_xdr=row.envelope_xdr,
        tx_hash=row.tx_hash,
        source_sequence=row.source_sequence,
        valid_until=row.valid_until,
        adapter_ref=row.adapter_ref,
        source_account=row.source_account,
        op_index=row.op_index,
    )


class PayoutProcessor:
    """Advances claimed payouts through one adapter. One instance per worker process."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        adapter: CustodyAdapter,
        completion: Completion,
        *,
        owner: str | None = None,
        clock: Callable[[], datetime] | None = None,
        backoff: Backoff | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.sessions = sessions
        self.adapter = adapter
        self.completion = completion
        self.owner = owner or f"worker-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.clock = clock or SYSTEM.now
        self.backoff = backoff or Backoff.from_settings(settings)
        self.lease_s = settings.payout_lease_s
        self._finishing: set[asyncio.Task[None]] = set()  # batches' completions being written
        # Background completions take turns, so the next batch's claim and envelope (which
        # wait on the same database) are not queued behind hundreds of them.
        self._completing = asyncio.Semaphore(COMPLETION_SLOTS)

    # --- claiming --------------------------------------------------------------------------

    async def run_batch(
        self, states: Collection[PayoutState] = OPEN_STATES, limit: int = 10
    ) -> int:
        """Claim due payouts (committed) and process them concurrently: each lane's envelope
        (one payout, or a batch) and each payout in flight on its own, since a submission
        may wait for its ledger (Horizon's synchronous submit): K channel accounts put K
        envelopes in one ledger. Returns how many payouts."""
        batch = max_ops_per_tx(self.adapter)
        async with self.sessions() as session, session.begin():
            rows = await store.claim_due(
                session,
                self.owner,
                self.clock(),
                self.lease_s,
                limit,
                states=states,
                lanes={self.adapter.name: self.adapter.source_accounts},
                batch={self.adapter.name: batch},
            )
        groups: dict[str, list[PayoutRow]] = {}
        alone: list[PayoutRow] = []
        for row in rows:
            unsent = row.state in NOT_SENT_STATES and row.adapter == self.adapter.name
            if batch > 1 and unsent and row.source_account is not None:
                groups.setdefault(row.source_account, []).append(row)
            else:
                alone.append(row)
        await asyncio.gather(  # neither ever raises
            *(self.process(row) for row in alone),
            *(self.process_batch(group) for group in groups.values()),
        )
        return len(rows)

    async def process(self, row: PayoutRow) -> None:
        ids = {"payout": row.id, "transaction": row.transaction_id, "hash": row.tx_hash}
        with logs.bind(request_id=row.request_id, **ids):  # the request that asked for it
            await self._process(row)

    async def _process(self, row: PayoutRow) -> None:
        try:
            if row.adapter != self.adapter.name:
                await self.save(
                    row,
                    PayoutMove.KEEP,
                    release=True,
                    next_attempt_at=None,
                    last_error=f"no adapter {row.adapter!r} configured here",
                )
            elif row.state in NOT_SENT_STATES:
                await self._start(row)
            else:
                await self._resolve(row)
        except store.LeaseLost as exc:
            log.warning("payout %s: %s; leaving it to its new holder", row.id, exc)
        except Exception as exc:  # a bug or the database: keep the worker alive, retry later
            if database_unavailable(exc):  # recording it would fail too; the lease expires
                log.warning("payout %s: database unavailable (%s)", row.id, describe(exc))
                return
            log.exception("payout %s: unexpected error", row.id)
            try:
                await self.retry(row, internal_error_text("the payout step"), kind="internal")
            except Exception:
                log.exception("payout %s: could not record the error", row.id)

    # --- the steps -------------------------------------------------------------------------

    async def _ready(self, row: PayoutRow, status: str | None = None) -> bool:
        """Before material is built: still wanted, attempts left, the trustline there.
        Otherwise the payout is closed, failed, parked or rescheduled here. `status`: the
        transaction's, when the caller read it already."""
        if not await self._still_wanted(row, status):
            return False
        if row.attempts >= self.settings.payout_max_attempts:
            await self.completion.fail(self, row, self._gave_up(row))
            return False
        try:
            trusted = await self.adapter.check_trustline(row.destination, row.asset)
        except TransientCustodyError as exc:
            await self.retry(row, str(exc))
            return False
        if not trusted:
            await self._park_for_trust(row)
            return False
        return True

    async def _start(self, row: PayoutRow) -> None:
        """No live material: check the trustline, prepare and commit, then send."""
        if not await self._ready(row):
            return
        await self._prepare_and_send(row)

    async def _prepare_and_send(self, row: PayoutRow) -> None:
        try:
            update = await self.adapter.prepare(to_order(row))
        except PermanentCustodyError as exc:
            await self.completion.fail(self, row, str(exc))
            return
        except TransientCustodyError as exc:
            await self.retry(row, str(exc))
            return
        # The material is durable before it can reach the network. If the process dies
        # after this commit, the next holder finds `submitting` and resolves it by lookup.
        row = await self.save(
            row,
            PayoutMove.PREPARE,
            envelope_xdr=update.envelope_xdr,
            tx_hash=update.tx_hash,
            source_sequence=update.source_sequence,
            valid_until=update.valid_until,
            adapter_ref=update.adapter_ref,
            attempts=row.attempts + 1,
            waiting_since=None,
        )
        crash_point("after_prepare")
        await self._send(row)

    async def process_batch(self, rows: list[PayoutRow]) -> None:
        """One lane's unsent payouts as one envelope. Never raises."""
        with logs.bind(batch=rows[0].id, lane=rows[0].source_account):
            try:
                await self._start_batch(rows)
            except store.LeaseLost as exc:  # committed nothing: the rows' leases run out
                log.warning("batch of %d payouts: %s; leaving them", len(rows), exc)
            except Exception as exc:
                if database_unavailable(exc):
                    log.warning("batch: database unavailable (%s)", describe(exc))
                    return
                log.exception("batch of %d payouts: unexpected error", len(rows))
                for row in rows:
                    await self._retry_quietly(row, internal_error_text("the payout step"))

    async def _retry_quietly(self, row: PayoutRow, error: str) -> None:
        try:
            async with self.sessions() as session:
                current = await store.get(session, row.id)
            if current is not None and current.lease_owner == self.owner:
                await self.retry(current, error, kind="internal")
        except Exception:
            log.exception("payout %s: could not record the error", row.id)

    async def _start_batch(self, rows: list[PayoutRow]) -> None:
        adapter = cast(BatchingCustody, self.adapter)  # max_ops_per_tx > 1 says it is one
        ready = [r for r, ok in zip(rows, await self._all_ready(rows), strict=True) if ok]
        if len(ready) <= 1:
            for row in ready:  # a batch of one is a single payout
                await self.process_ready(row)
            return
        try:
            batch = await adapter.prepare_batch([to_order(r) for r in ready])
        except PermanentCustodyError as exc:
            await asyncio.gather(*(self.completion.fail(self, r, str(exc)) for r in ready))
            return
        except TransientCustodyError as exc:
            await asyncio.gather(*(self.retry(r, str(exc)) for r in ready))
            return
        by_id = {r.id: r for r in ready}
        for pid, refusal in batch.refused.items():
            await self.completion.fail(self, by_id[pid], str(refusal))
        update = batch.update
        if update is None:
            return
        members = [by_id[pid] for pid in batch.accepted]
        changes: dict[str, store.PayoutChanges] = {
            row.id: {
                "envelope_xdr": update.envelope_xdr,
                "tx_hash": update.tx_hash,
                "source_sequence": update.source_sequence,
                "valid_until": update.valid_until,
                "adapter_ref": update.adapter_ref,
                "attempts": row.attempts + 1,
                "waiting_since": None,
                "op_index": index,
            }
            for index, row in enumerate(members)
        }
        # The envelope is durable on EVERY row before it can reach the network, in one
        # database transaction: all rows hold it, or none does and nothing is sent.
        now = self.clock()
        async with self.sessions() as session, session.begin():
            prepared = await store.save_all(
                session, members, self.owner, now, PayoutMove.PREPARE, changes, lease_s=self.lease_s
            )
        for before, after in zip(members, prepared, strict=True):
            log_change(before, after, f"operation {after.op_index}", self.metrics)
        members = prepared
        self.metrics.payout_batch_size.observe(len(members))
        log.info(
            "batch of %d payouts prepared as %s on %s",
            len(members),
            update.tx_hash,
            members[0].source_account,
        )
        crash_point("after_prepare")
        try:
            outcomes = await adapter.submit_batch([to_order(r) for r in members])
        except TransientCustodyError as exc:
            await asyncio.gather(*(self.retry(r, str(exc)) for r in members))
            return
        crash_point("after_submit")
        on_ledger = {o.ledger for o in outcomes.values() if isinstance(o, Confirmed)}
        if len(on_ledger) == 1 and all(isinstance(o, Confirmed) for o in outcomes.values()):
            # Frees the lane for the next envelope while the completions are written (one
            # database transaction per payout, the slow part): the next batch is built and
            # waits for its ledger meanwhile.
            (ledger,) = on_ledger
            async with self.sessions() as session, session.begin():
                members = await store.save_all(
                    session,
                    members,
                    self.owner,
                    self.clock(),
                    PayoutMove.KEEP,
                    {r.id: {"ledger": ledger} for r in members},
                    lease_s=self.lease_s,
                )
            task = asyncio.create_task(self._record_all(members, outcomes))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)
            return
        await self._record_all(members, outcomes)

    async def _record_all(
        self, members: list[PayoutRow], outcomes: Mapping[str, LookupResult]
    ) -> None:
        async def one(row: PayoutRow) -> None:
            async with self._completing:
                await self._record_logged(row, outcomes[row.id])

        await asyncio.gather(*(one(r) for r in members))

    async def drain(self) -> None:
        """Wait for the completions still being written in the background."""
        while self._finishing:
            await asyncio.gather(*self._finishing)

    async def _all_ready(self, rows: list[PayoutRow]) -> list[bool]:
        """`_ready` for each row, each in its own log context; a row that fails unexpectedly
        is rescheduled and left out."""

        async def one(row: PayoutRow) -> bool:
            with logs.bind(
                request_id=row.request_id, payout=row.id, transaction=row.transaction_id
            ):
                try:
                    return await self._ready(row)
                except store.LeaseLost as exc:
                    log.warning("payout %s: %s; leaving it to its new holder", row.id, exc)
                    return False

        return list(await asyncio.gather(*(one(r) for r in rows)))

    async def process_ready(self, row: PayoutRow) -> None:
        """A payout already checked by `_ready`: prepare, commit, send (its own envelope)."""
        ids = {"payout": row.id, "transaction": row.transaction_id}
        with logs.bind(request_id=row.request_id, **ids):
            try:
                await self._prepare_and_send(row)
            except store.LeaseLost as exc:
                log.warning("payout %s: %s; leaving it to its new holder", row.id, exc)

    async def _record_logged(self, row: PayoutRow, outcome: LookupResult) -> None:
        ids = {"payout": row.id, "transaction": row.transaction_id, "hash": row.tx_hash}
        with logs.bind(request_id=row.request_id, **ids):
            try:
                await self._record(row, outcome)
            except store.LeaseLost as exc:
                log.warning("payout %s: %s; leaving it to its new holder", row.id, exc)
            except Exception:
                log.exception("payout %s: recording its outcome failed", row.id)
                await self._retry_quietly(row, internal_error_text("the payout step"))

    async def _send(self, row: PayoutRow) -> None:
        try:
            outcome = await self.adapter.submit(to_order(row))
        except TransientCustodyError as exc:
            await self.retry(row, str(exc))
            return
        crash_point("after_submit")
        await self._record(row, outcome)

    async def _resolve(self, row: PayoutRow) -> None:
        """Material exists and may have been sent: the ledger decides what happens next."""
        try:
            found = await self.adapter.lookup(to_order(row))
        except TransientCustodyError as exc:
            await self.retry(row, str(exc))
            return
        if not isinstance(found, NotFound):
            await self._record(row, found)
        elif found.dead and row.op_index is not None:
            await self._requeue(row, found)  # to be rebuilt with the lane's next batch
        elif found.dead:
            note = f"previous envelope {row.tx_hash} proven dead: {found.detail}"
            row = await self.save(
                row,
                PayoutMove.DISCARD,
                envelope_xdr=None,
                tx_hash=None,
                source_sequence=None,
                valid_until=None,
                adapter_ref=None,
                note=note,
            )
            await self._start(row)
        elif row.attempts >= self.settings.payout_max_attempts and row.valid_until is not None:
            # No more resubmissions; wait for the material to resolve (its bound passes).
            await self.retry(row, row.last_error or found.detail, count=False, kind="pending")
        else:
            # Resending the same material is always safe: it can apply at most once. Material
            # without a bound (Fireblocks' externalTxId) never resolves by itself, so it is
            # resent, with backoff, for as long as the custodian says it has nothing.
            await self._send(row)

    async def _record(self, row: PayoutRow, outcome: LookupResult) -> None:
        if isinstance(outcome, Confirmed):
            await self.completion.confirm(self, row, outcome)
        elif isinstance(outcome, Failed):
            await self.completion.fail(self, row, outcome.reason)
        elif isinstance(outcome, Pending):
            await self.save(
                row,
                PayoutMove.ACCEPT,
                release=True,
                polls=row.polls + 1,
                next_attempt_at=self.clock() + timedelta(seconds=self.poll_delay(row.polls)),
                last_error=None,
            )
        elif outcome.dead:  # another operation failed the shared envelope: rebuild it
            await self._requeue(row, outcome)
        else:
            await self.retry(row, outcome.detail, kind="pending")

    async def _requeue(self, row: PayoutRow, dead: NotFound) -> None:
        """The envelope is proven dead: forget it and make the payout due at once, to join
        its lane's next envelope. Its attempt was counted when the envelope was built."""
        await self.save(
            row,
            PayoutMove.DISCARD,
            release=True,
            note=f"previous envelope {row.tx_hash} proven dead: {dead.detail}",
            envelope_xdr=None,
            tx_hash=None,
            source_sequence=None,
            valid_until=None,
            adapter_ref=None,
            op_index=None,
            next_attempt_at=self.clock(),
        )

    def poll_delay(self, polls: int) -> float:
        """Accepted, not final: look again after PAYOUT_RETRY_BASE_S, then 1.5 times longer
        each time up to PAYOUT_POLL_MAX_S. Webhooks make it due at once; the cap bounds how
        long a lost webhook can delay completion."""
        base = self.settings.payout_retry_base_s
        return min(self.settings.payout_poll_max_s, base * 1.5 ** min(polls, 64))

    async def _still_wanted(self, row: PayoutRow, status: str | None = None) -> bool:
        """Before anything (new) is sent: if the business moved the transaction out of
        `pending_stellar` meanwhile (error, expired...), do not pay behind its back."""
        if status is None:
            async with self.sessions() as session:
                status = (await tx_store.statuses(session, [row.transaction_id])).get(
                    row.transaction_id, "missing"
                )
        if status == Status.PENDING_STELLAR.value:
            return True
        await self.save(
            row,
            PayoutMove.CANCEL,
            release=True,
            next_attempt_at=None,
            last_error=f"transaction was in status {status} before anything was sent; "
            "payout cancelled",
        )
        log.warning("payout %s cancelled: transaction %s is %s", row.id, row.transaction_id, status)
        return False

    async def _park_for_trust(self, row: PayoutRow) -> None:
        """The trustline vanished before submission: wait (re-checked with backoff) rather
        than send a payment that would fail with op_no_trust."""
        label = row.asset.removeprefix("stellar:")
        reason = (
            f"The destination account {row.destination} has no trustline for {label}; "
            "the payout waits for it"
        )
        if row.purpose == "payment":  # a deposit goes back to pending_trust (the poller's)
            await self.completion.trustline_lost(self, row, reason)
            return
        await self.save(
            row,
            PayoutMove.PARK,
            release=True,
            waiting_since=row.waiting_since or self.clock(),
            next_attempt_at=self.backoff.next_attempt_at(self.clock(), 3),
            last_error=f"The destination account {row.destination} has no trustline for "
            f"{label}; the payout waits for it",
        )

    async def retry(
        self, row: PayoutRow, error: str, *, count: bool = True, kind: str = "custody"
    ) -> None:
        """Reschedule after a transient failure; `kind` says what failed (custody: the
        adapter or the ledger; pending: not final yet; completion: recording the outcome;
        internal: a bug or the database), for the retries metric."""
        self.metrics.payout_retries.labels(kind).inc()
        attempts = row.attempts + 1 if count else row.attempts
        live = row.state in IN_FLIGHT_STATES
        if count and not live and attempts >= self.settings.payout_max_attempts:
            await self.completion.fail(self, row, self._gave_up(row, error, attempts))
            return
        when = self.backoff.next_attempt_at(self.clock(), attempts)
        if live and row.valid_until is not None and attempts >= self.settings.payout_max_attempts:
            when = max(when, row.valid_until)  # next look is after the bound: proof either way
        await self.save(
            row,
            PayoutMove.KEEP,
            release=True,
            attempts=attempts,
            last_error=error,
            next_attempt_at=when,
        )

    def _gave_up(self, row: PayoutRow, error: str | None = None, attempts: int = 0) -> str:
        n = max(attempts, row.attempts)
        return f"Gave up after {n} attempts; last error: {error or row.last_error or 'unknown'}"

    # --- persistence -----------------------------------------------------------------------

    async def save(
        self,
        row: PayoutRow,
        move: PayoutMove,
        *,
        release: bool = False,
        note: str = "",
        **changes: Unpack[store.PayoutChanges],
    ) -> PayoutRow:
        """Commit `move` with `changes` while holding the lease (renewed, or released)."""
        async with self.sessions() as session, session.begin():
            new = await store.save(
                session,
                row,
                self.owner,
                self.clock(),
                move,
                lease_s=None if release else self.lease_s,
                release=release,
                **changes,
            )
        if new.state != row.state or new.last_error != row.last_error or note:
            log_change(row, new, note, self.metrics)
        return new
