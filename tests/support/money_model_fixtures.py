"""The world of the money model test (`test_money_model.py`), imported explicitly.

One app per test (run_worker=False, no lifespan) over httpx's ASGITransport, on the test's
database; one example = that database restored to the pool (`PoolDatabase`), a fresh copy of
the pool's sandbox network (served in-process through ASGITransport too, behind a switch the
app's Horizon client talks to) and a worker made of `PayoutProcessor`s driven by hand, with
an instrumented signer (`ModelAdapter`). Time is one `ManualClock`, handed to the app (the
RPC side), the sandbox ledger, the signer and the processors: it moves only when the model
says so, so a run is the same whatever the machine's speed.

The invariants are computed from the sandbox ledger's own records (payments from the
distribution account) and the instrumented signer's registry of every envelope hash it
prepared (hash -> payout), never from anchorpay's statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from stellar_sdk import Account, Keypair, TransactionBuilder
from stellar_sdk import Asset as SdkAsset

from anchorpay.adapters.custody import (
    LookupResult,
    PayoutOrder,
    PayoutUpdate,
    SubmitOutcome,
    TransientCustodyError,
)
from anchorpay.adapters.horizon import HorizonLedgerClient
from anchorpay.adapters.stellar_signer import StellarSigner
from anchorpay.app import create_app
from anchorpay.clock import ManualClock
from anchorpay.sandbox import (
    SANDBOX_DISTRIBUTION_ACCOUNT,
    SANDBOX_DISTRIBUTION_SECRET,
)
from anchorpay.sandbox.app import Sandbox, create_sandbox_app
from anchorpay.sandbox.ledger import SandboxLedger
from anchorpay.scheduler.completion import Completion
from anchorpay.scheduler.payouts import PayoutProcessor
from anchorpay.settings import Settings
from anchorpay.store.tables import PayoutRow

REPO = Path(__file__).resolve().parents[2]
DIST = SANDBOX_DISTRIBUTION_ACCOUNT
USDC_ISSUER = "GBBD47IF6LWK7P7MDEVSCWR7DPUWV3NY3DTQEVFL4NAT4AQH3ZLLFLA5"
USDC = f"stellar:USDC:{USDC_ISSUER}"
USD = "iso4217:USD"
T = TypeVar("T")
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # the model's time: one clock for everything

# Open payout states (queued, waiting for a trustline, prepared, accepted): money may still
# leave for them. Read as strings from the REST view, so the test does not depend on how the
# store names them.
OPEN = frozenset({"queued", "waiting_trust", "submitting", "submitted"})

DEPOSITS = 2  # deposits in pending_anchor, funds received, amount_out 9 USDC
WITHDRAWALS = 2  # withdrawals whose user paid 10 USDC on the ledger, notified
DEPOSIT_OUT = Decimal(9)
WITHDRAWAL_IN = Decimal(10)

# Worker timings in the model's own time: a worker step lets 1 s pass, so every backoff
# (at most 1 s) is due at the next step; a crash lets the lease (20 s) pass; "time passes"
# lets an envelope's time bound (60 s) pass.
LEASE_S = 20.0
TX_TIMEOUT_S = 60
MAX_ATTEMPTS = 4
STEP_S = 1.0
MODEL_SETTINGS: dict[str, Any] = {
    "stellar_network": "sandbox",
    "custody_type": "stellar",
    "assets_file": REPO / "config" / "assets.toml",
    "payout_lease_s": LEASE_S,
    "payout_retry_base_s": 0.2,
    "payout_retry_max_s": STEP_S,
    "payout_poll_max_s": STEP_S,
    "payout_max_attempts": MAX_ATTEMPTS,
    "stellar_tx_timeout_s": TX_TIMEOUT_S,
    "sandbox_ledger_close_s": 3600,  # the app's own sandbox is unused
    "horizon_timeout_s": 30,
}


class Crash(BaseException):
    """The worker process vanished here: nothing after this point ran (not an Exception,
    so no handler of the worker records anything)."""


# Points in a worker's handling of a payout, each right after a durable effect, where the
# worker may die or the business may call in:
# - "claimed": the lease is committed, nothing else (the payout's first adapter call: the
#   trustline check before preparing, or the lookup of a prepared envelope);
# - "looked_up": the ledger's answer about a prepared envelope is in, not recorded;
# - "before_submit": the envelope is committed (`submitting`), nothing was sent;
# - "after_submit": the envelope reached the ledger (queued, or applied when the ledger
#   closes during the submission), the outcome is not recorded.
WORKER_POINTS = ("claimed", "looked_up", "before_submit", "after_submit")
CRASH_POINTS = ("claimed", "before_submit", "after_submit")

Interlude = Callable[[], Awaitable[None]]


class ModelAdapter:
    """The real signer, instrumented: records every envelope hash it prepares (hash ->
    payout id), submits either the way Horizon answers when no ledger closes in time (504,
    the envelope stays queued: `sync=False`) or waits while ledgers close (`sync=True`), and
    at one of WORKER_POINTS can crash the worker (once crashed, every call crashes) or run
    an `interlude` (a business call, made while the worker is right there)."""

    def __init__(
        self,
        inner: StellarSigner,
        sandbox: Sandbox,
        hashes: dict[str, str],
        *,
        sync: bool = False,
        crash_at: str | None = None,
        interlude: Interlude | None = None,
        interlude_at: str | None = None,
    ) -> None:
        self.inner = inner
        self.sandbox = sandbox
        self.hashes = hashes
        self.sync = sync
        self.crash_at = crash_at
        self.interlude = interlude
        self.interlude_at = interlude_at
        self.dead = False

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def source_accounts(self) -> tuple[str, ...]:
        return self.inner.source_accounts

    async def _at(self, point: str) -> None:
        if self.dead:
            raise Crash("already dead")
        if self.crash_at == point:
            self.dead = True
            raise Crash(point)
        if self.interlude is not None and self.interlude_at == point:
            interlude, self.interlude = self.interlude, None  # once
            await interlude()

    async def check_trustline(self, account: str, asset: str) -> bool:
        await self._at("claimed")
        return await self.inner.check_trustline(account, asset)

    async def lookup(self, order: PayoutOrder) -> LookupResult:
        await self._at("claimed")
        found = await self.inner.lookup(order)
        await self._at("looked_up")
        return found

    async def prepare(self, order: PayoutOrder) -> PayoutUpdate:
        await self._at("")
        update = await self.inner.prepare(order)
        assert update.tx_hash is not None
        self.hashes[update.tx_hash] = order.id
        return update

    async def submit(self, order: PayoutOrder) -> SubmitOutcome:
        await self._at("before_submit")
        try:
            outcome = await (self._submit_closing(order) if self.sync else self.inner.submit(order))
        except TransientCustodyError:
            await self._at("after_submit")
            raise
        await self._at("after_submit")
        return outcome

    async def _submit_closing(self, order: PayoutOrder) -> SubmitOutcome:
        """Horizon's synchronous submission with the network closing ledgers meanwhile."""
        self.sandbox.submit_timeout_s = 30.0
        try:
            task = asyncio.create_task(self.inner.submit(order))
            for _ in range(200):
                if task.done():
                    break
                await asyncio.sleep(0)
                await self.sandbox.close_ledger()
            return await task
        finally:
            self.sandbox.submit_timeout_s = 0.0

    async def aclose(self) -> None:
        await self.inner.aclose()


class ModelProcessor(PayoutProcessor):
    """A processor whose process dies on `Crash` (instead of the whole run_batch raising
    while its other payouts go on in the background)."""

    crashed = False

    async def process(self, row: PayoutRow) -> None:
        try:
            await super().process(row)
        except Crash:
            self.crashed = True


# --- the database ----------------------------------------------------------------------------

SAVED = "model_saved_"  # prefix of the pristine copies of the tables, beside them


class PoolDatabase:
    """The test's database (`db_url`, migrated), restored for each example to the pool as
    it was built: every table emptied and refilled from a pristine copy kept beside it
    (plain SQL, the same on SQLite and PostgreSQL). Cheaper than a new database per
    example, and the app, its engine and connections stay warm."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.tables: list[str] = []  # dependency order

    async def save(self) -> None:
        async with self.engine.begin() as conn:
            names = await conn.run_sync(
                lambda sync: [t for t, _ in inspect(sync).get_sorted_table_and_fkc_names() if t]
            )
            self.tables = [t for t in names if t != "alembic_version" and not t.startswith(SAVED)]
            for table in self.tables:
                await conn.execute(text(f'DROP TABLE IF EXISTS "{SAVED}{table}"'))
                await conn.execute(
                    text(f'CREATE TABLE "{SAVED}{table}" AS SELECT * FROM "{table}"')
                )

    async def restore(self) -> None:
        async with self.engine.begin() as conn:
            for table in reversed(self.tables):
                await conn.execute(text(f'DELETE FROM "{table}"'))
            for table in self.tables:
                await conn.execute(text(f'INSERT INTO "{table}" SELECT * FROM "{SAVED}{table}"'))


# --- one example's world ----------------------------------------------------------------------


@dataclass(frozen=True)
class Party:
    """A pool transaction and its user's account (one account per transaction, so what the
    ledger paid a transaction is what the distribution account paid that account)."""

    index: int
    kind: str  # "deposit" | "withdrawal"
    tx_id: str
    user: str
    incoming: str | None = None  # the withdrawal's payment to the distribution account


@dataclass(frozen=True)
class LedgerPayment:
    hash: str
    to: str
    amount: Decimal


@dataclass
class Snapshot:
    """What anchorpay shows of the pool over REST: each transaction, and its payouts."""

    txs: dict[str, dict[str, Any]]
    payouts: dict[str, list[dict[str, Any]]]

    def of(self, tx_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return self.txs[tx_id], self.payouts.get(tx_id, [])

    def open_payouts(self) -> list[dict[str, Any]]:
        return [p for ps in self.payouts.values() for p in ps if p["state"] in OPEN]


@dataclass
class World:
    """One example: the app (on the restored database), a fresh sandbox network, the worker;
    the pool; the registry of prepared envelope hashes."""

    settings: Settings
    app: Starlette
    client: httpx.AsyncClient
    sandbox: Sandbox
    ledger: HorizonLedgerClient
    clock: ManualClock
    parties: list[Party] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)  # envelope hash -> payout id
    processor: ModelProcessor | None = None
    owners: int = 0
    answers: list[tuple[str, int | None, str]] = field(default_factory=list)
    dirty: bool = True  # the database may have changed since the last snapshot

    # --- the app, over HTTP ------------------------------------------------------------------

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        self.dirty = True
        response = await self.client.post("/", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        error = answer.get("error")
        self.answers.append(
            (method, error.get("code") if error else None, error.get("message") if error else "")
        )
        return answer

    async def batch(self, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        body = [
            {"jsonrpc": "2.0", "method": m, "params": p, "id": n}
            for n, (m, p) in enumerate(calls, 1)
        ]
        response = await self.client.post("/", json=body)
        assert response.status_code == 200, response.text
        answers: list[dict[str, Any]] = response.json()
        return answers

    async def tx(self, tx_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/transactions/{tx_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def payouts(self, tx_id: str) -> list[dict[str, Any]]:
        response = await self.client.get("/payouts", params={"transaction_id": tx_id})
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["payouts"]
        return records

    async def snapshot(self) -> Snapshot:
        """The whole pool in two reads (the database holds nothing else)."""
        self.dirty = False
        response = await self.client.get("/transactions", params={"page_size": 200})
        assert response.status_code == 200, response.text
        txs = {r["id"]: r for r in response.json()["records"]}
        assert set(txs) == {p.tx_id for p in self.parties}, sorted(txs)
        response = await self.client.get("/payouts", params={"limit": 200})
        assert response.status_code == 200, response.text
        payouts: dict[str, list[dict[str, Any]]] = {}
        for record in response.json()["payouts"]:
            payouts.setdefault(record["transaction_id"], []).append(record)
        return Snapshot(txs, payouts)

    # --- the ledger ------------------------------------------------------------------------

    def payments_from_distribution(self) -> list[LedgerPayment]:
        """Successful payments from the distribution account, from the ledger's records."""
        return [
            LedgerPayment(op.tx_hash, op.details["to"], Decimal(op.details["amount"]))
            for op in self.sandbox.ledger.operations
            if op.type == "payment" and op.successful and op.details.get("from") == DIST
        ]

    def ledger_hashes(self) -> list[str]:
        return list(self.sandbox.ledger.transactions)

    async def close_ledger(self) -> None:
        await self.sandbox.close_ledger()

    # --- the worker ------------------------------------------------------------------------

    def new_processor(
        self,
        *,
        sync: bool = False,
        crash_at: str | None = None,
        interlude: Interlude | None = None,
        interlude_at: str | None = None,
    ) -> ModelProcessor:
        """The worker for one step: the same owner as before, or a new one after a crash."""
        services = self.app.state.services
        signer = StellarSigner(
            SANDBOX_DISTRIBUTION_SECRET,
            self.ledger,
            network_passphrase=self.settings.network_passphrase,
            tx_timeout_s=self.settings.stellar_tx_timeout_s,
            clock=self.clock,
        )
        adapter = ModelAdapter(
            signer,
            self.sandbox,
            self.hashes,
            sync=sync,
            crash_at=crash_at,
            interlude=interlude,
            interlude_at=interlude_at,
        )
        if self.processor is None or self.processor.crashed:
            self.owners += 1
        return ModelProcessor(
            self.settings,
            services.sessions,
            adapter,
            Completion(services, clock=self.clock),
            owner=f"model-worker-{self.owners}",
            clock=self.clock,
        )

    async def worker_step(
        self,
        *,
        sync: bool = False,
        crash_at: str | None = None,
        interlude: Interlude | None = None,
        interlude_at: str | None = None,
    ) -> bool:
        """One `run_batch()`, STEP_S after the previous moment, with an `interlude` run when
        the worker reaches `interlude_at` (else after the batch). Returns whether the worker
        crashed; then the lease passes and the next step is another worker's."""
        self.clock.advance(STEP_S)
        self.processor = self.new_processor(
            sync=sync, crash_at=crash_at, interlude=interlude, interlude_at=interlude_at
        )
        if await self.processor.run_batch():
            self.dirty = True  # it claimed something (a claim is a write)
        adapter = self.processor.adapter
        assert isinstance(adapter, ModelAdapter)
        if adapter.interlude is not None:  # the worker never got there
            await adapter.interlude()
        if self.processor.crashed:
            self.clock.advance(LEASE_S + 1)
            return True
        return False

    async def open_payouts(self) -> list[dict[str, Any]]:
        response = await self.client.get("/payouts", params={"state": ",".join(sorted(OPEN))})
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["payouts"]
        return records

    async def drain(self, rounds: int = 60) -> Snapshot:
        """Run the worker (its submissions answered as ledgers close) and close ledgers until
        no payout is open, letting envelopes' time bounds pass now and then; fails when some
        payout stays open."""
        for n in range(rounds):
            if not await self.open_payouts():
                return await self.snapshot()
            if n % 10 == 9:
                self.clock.advance(TX_TIMEOUT_S + 2)
            await self.worker_step(sync=True)
            await self.close_ledger()
        raise AssertionError(
            f"payouts still open after {rounds} worker rounds: {await self.open_payouts()}"
        )

    # --- the pool (built once, in the template) ---------------------------------------------

    async def setup_pool(self) -> None:
        """DEPOSITS funded deposits and WITHDRAWALS funded withdrawals, each with its own user
        (an account trusting USDC, created directly on the sandbox ledger)."""
        ledger = self.sandbox.ledger
        users = [self.sandbox.create_account(Decimal(100), (USDC,)) for _ in range(DEPOSITS)]
        payers = []
        for _ in range(WITHDRAWALS):
            user = self.sandbox.create_account(Decimal(100))
            ledger.add_trustline(user.public_key, USDC, balance=WITHDRAWAL_IN)
            payers.append(user)
        incoming = []
        for user in payers:  # the users pay 10 USDC each, in one ledger
            outcome = ledger.submit(self._pay_distribution(user))
            incoming.append(str(getattr(outcome, "hash", "")))
        await self.close_ledger()
        for tx_hash in incoming:
            assert ledger.transactions[tx_hash].successful, tx_hash

        requests: list[tuple[str, dict[str, Any]]] = []
        notices: list[tuple[str, dict[str, Any]]] = []
        for user in users:
            body = {
                "sep": "24",
                "kind": "deposit",
                "amount_expected": {"asset": USDC},
                "destination_account": user.public_key,
            }
            tx_id = await self._create(body)
            self.parties.append(Party(len(self.parties), "deposit", tx_id, user.public_key))
            requests.append(
                (
                    "request_offchain_funds",
                    {
                        "transaction_id": tx_id,
                        "amount_in": {"amount": "10", "asset": USD},
                        "amount_out": {"amount": str(DEPOSIT_OUT), "asset": USDC},
                        "fee_details": {"total": "1", "asset": USD},
                    },
                )
            )
            notices.append(("notify_offchain_funds_received", {"transaction_id": tx_id}))
        for user, tx_hash in zip(payers, incoming, strict=True):
            body = {
                "sep": "24",
                "kind": "withdrawal",
                "amount_expected": {"asset": USDC},
                "source_account": user.public_key,
            }
            tx_id = await self._create(body)
            party = Party(len(self.parties), "withdrawal", tx_id, user.public_key, tx_hash)
            self.parties.append(party)
            requests.append(
                (
                    "request_onchain_funds",
                    {
                        "transaction_id": tx_id,
                        "amount_in": {"amount": str(WITHDRAWAL_IN), "asset": USDC},
                        "amount_out": {"amount": "9", "asset": USD},
                        "fee_details": {"total": "1", "asset": USDC},
                    },
                )
            )
            notices.append(
                (
                    "notify_onchain_funds_received",
                    {
                        "transaction_id": tx_id,
                        "stellar_transaction_id": tx_hash,
                        "amount_in": {"amount": str(WITHDRAWAL_IN)},
                    },
                )
            )
        for answer in [*await self.batch(requests), *await self.batch(notices)]:
            assert "result" in answer, answer
        snapshot = await self.snapshot()
        assert {t["status"] for t in snapshot.txs.values()} == {"pending_anchor"}, snapshot.txs

    def _pay_distribution(self, user: Keypair) -> str:
        """The user's signed payment of WITHDRAWAL_IN USDC to the distribution account."""
        account = Account(user.public_key, self.sandbox.ledger.accounts[user.public_key].sequence)
        builder = TransactionBuilder(account, self.settings.network_passphrase, base_fee=100)
        builder.append_payment_op(DIST, SdkAsset("USDC", USDC_ISSUER), str(WITHDRAWAL_IN))
        envelope = builder.add_time_bounds(0, int(self.clock().timestamp()) + 300).build()
        envelope.sign(user)
        return str(envelope.to_xdr())

    async def _create(self, body: dict[str, Any]) -> str:
        response = await self.client.post("/transactions", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def unknown_hash(n: int) -> str:
    """A well-formed transaction hash that is on no ledger."""
    return hashlib.sha256(f"not on the ledger {n}".encode()).hexdigest()


class SandboxSwitch:
    """An ASGI app forwarding to the current example's sandbox (the app's ledger client,
    made once, talks to it)."""

    def __init__(self) -> None:
        self.target: Starlette | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.target is not None
        await self.target(scope, receive, send)


class Worlds:
    """One World per example, on one event loop and one app: the pool is built once, then
    each example gets the database restored to it and a copy of the pool's ledger."""

    def __init__(self, runner: asyncio.Runner, db_url: str) -> None:
        self.runner = runner
        self.clock = ManualClock(T0)
        self.settings = Settings(_env_file=None, database_url=db_url, **MODEL_SETTINGS)  # type: ignore[call-arg]
        self.switch = SandboxSwitch()
        base = "http://sandbox.test/sandbox/horizon"
        self.ledger_http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.switch), base_url=base, timeout=30
        )
        self.ledger = HorizonLedgerClient(
            base, 30, self.ledger_http, network_passphrase=self.settings.network_passphrase
        )
        # No lifespan: the database is migrated here, the worker is the model's, the app's
        # own sandbox is not used.
        self.app = create_app(self.settings, run_worker=False, ledger=self.ledger, clock=self.clock)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://anchorpay.test",
            timeout=30,
        )
        self.database = PoolDatabase(self.app.state.services.sessions.kw["bind"])
        self.parties: list[Party] = []
        self.pool_ledger: SandboxLedger | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def _world(self) -> World:
        sandbox = Sandbox(
            assets=self.settings.load_assets(),
            network_passphrase=self.settings.network_passphrase,
            distribution_secret=SANDBOX_DISTRIBUTION_SECRET,
            ledger_close_s=None,
            clock=self.clock,
            submit_timeout_s=0.0,
        )
        if self.pool_ledger is not None:  # before the routes are made: they hold the ledger
            sandbox.ledger = copy.deepcopy(self.pool_ledger, {id(self.clock): self.clock})
        self.switch.target = create_sandbox_app(sandbox)
        world = World(self.settings, self.app, self.client, sandbox, self.ledger, self.clock)
        world.parties = list(self.parties)
        return world

    async def _build_pool(self) -> None:
        if self.settings.database_url.startswith("sqlite"):  # PostgreSQL's is migrated
            from anchorpay.store import migrate

            await migrate.upgrade(self.settings.database_url)
        world = self._world()
        await world.setup_pool()
        await world.sandbox.stop()
        await self.database.save()
        self.parties = world.parties
        self.pool_ledger = world.sandbox.ledger

    async def open(self) -> World:
        if self.pool_ledger is None:
            await self._build_pool()
        else:
            await self.database.restore()
        return self._world()

    async def close(self, world: World) -> None:
        await world.sandbox.stop()

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.ledger_http.aclose()
        await self.database.engine.dispose()


@contextlib.contextmanager
def event_loop() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner
