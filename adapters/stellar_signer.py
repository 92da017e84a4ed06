"""The local Stellar signer: pays from the distribution account with a key held in-process.

Exactly-once rests on three facts of the Stellar protocol:
- a signed envelope has ONE sequence number, so submitting it twice can apply it at most once;
- its hash names it, so `GET /transactions/{hash}` tells whether it was applied;
- its time bound (`max_time`) makes it invalid for ever once a ledger closes after it.
So `prepare` signs an envelope that the worker commits before `submit`; any doubt is settled by
`lookup`, and a new envelope (new sequence) is built only when the hash is absent AND a ledger
closed after the bound (`NotFound(dead=True)`).

Channel accounts (STELLAR_CHANNEL_SECRETS): each envelope's source may be a channel account
(its sequence number and fee) while the payment operation's source stays the distribution
account, signed by both. The worker claims each payout with a free lane (`source_accounts`,
one payout in flight per lane), so K channels put K payouts in a ledger instead of one; the
exactly-once rules above hold per envelope, whatever its lane.

Operation batching (STELLAR_MAX_OPS_PER_TX, default 100): memo-less payouts of one lane
share one envelope, one payment operation each (`op_index`). Every row stores the whole
envelope, so the rules above hold per envelope, and each payout reads its own operation's
fate from the shared result: confirmed (its own payment record), failed (its operation's
code), or proven dead because ANOTHER operation failed the transaction (nothing was paid, the
sequence number is consumed or the envelope can never be valid): it is rebuilt without it.

The secrets are read once into Keypairs and never logged, returned or shown by `repr`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from stellar_sdk import (
    Account,
    Asset,
    HashMemo,
    IdMemo,
    Keypair,
    Memo,
    MuxedAccount,
    NoneMemo,
    ReturnHashMemo,
    TextMemo,
    TransactionBuilder,
)

from anchorpay.adapters.custody import (
    Batch,
    Confirmed,
    Failed,
    LookupResult,
    NotFound,
    PayoutOrder,
    PayoutUpdate,
    PermanentCustodyError,
    SubmitOutcome,
    TransientCustodyError,
    find_transaction,
    read_trustline,
)
from anchorpay.adapters.ledger import (
    LedgerClient,
    LedgerError,
    LedgerNotFound,
    LedgerTransaction,
    LedgerUnavailable,
    SubmitResult,
)
from anchorpay.clock import SYSTEM
from anchorpay.domain.transaction import StellarTransaction
from anchorpay.settings import ConfigError, Settings

# A ledger must have closed this long after the bound before the envelope counts as dead:
# guards against a Horizon whose clock or ingestion trails the network by a moment.
DEAD_MARGIN = timedelta(seconds=1)

# Retrying later can help: a sequence race, a bound that passed before inclusion, a fee surge.
TRANSIENT_TX_CODES = frozenset(
    {"tx_bad_seq", "tx_too_late", "tx_too_early", "tx_insufficient_fee", "tx_internal_error"}
)


def _short(account: str) -> str:
    return f"{account[:4]}…{account[-4:]}" if len(account) > 12 else account


class StellarSigner:
    """`CustodyAdapter` signing with STELLAR_DISTRIBUTION_SECRET, talking to Horizon (or the
    sandbox) through a `LedgerClient`."""

    def __init__(
        self,
        secret: str,
        ledger: LedgerClient,
        *,
        network_passphrase: str,
        tx_timeout_s: int = 60,
        base_fee: int = 100,
        max_ops_per_tx: int = 1,
        channel_secrets: Sequence[str] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._keypair = _keypair(secret, "STELLAR_DISTRIBUTION_SECRET")
        # Channel accounts: each envelope's source (its sequence number and fee), while the
        # payment itself comes from the distribution account. One payout in flight per
        # channel, so K channels carry K payouts at once instead of one.
        self._channels: dict[str, Keypair] = {}
        for n, channel_secret in enumerate(channel_secrets, 1):
            channel = _keypair(channel_secret, f"STELLAR_CHANNEL_SECRETS (entry {n})")
            if channel.public_key in self._channels or channel.public_key == self.source_account:
                raise ConfigError(
                    f"STELLAR_CHANNEL_SECRETS (entry {n}) repeats an account already used"
                )
            self._channels[channel.public_key] = channel
        self._ledger = ledger
        self._passphrase = network_passphrase
        self._timeout = timedelta(seconds=tx_timeout_s)
        self._base_fee = base_fee
        self._max_ops = max(1, min(max_ops_per_tx, MAX_OPS_PER_TX))
        self._clock = clock or SYSTEM.now
        # Concurrent reads and submissions of one envelope (the payouts of a batch resolving
        # side by side) share one request.
        self._shared: dict[tuple[str, str], asyncio.Future[object]] = {}

    def __repr__(self) -> str:
        channels = f", channels={len(self._channels)}" if self._channels else ""
        return f"StellarSigner(source={self.source_account}{channels})"

    @property
    def name(self) -> str:
        return "stellar"

    @property
    def source_accounts(self) -> tuple[str, ...]:
        """The lanes: the channel accounts, or the distribution account alone."""
        return tuple(self._channels) or (self.source_account,)

    @property
    def source_account(self) -> str:
        return str(self._keypair.public_key)

    @property
    def max_ops_per_tx(self) -> int:
        return self._max_ops

    # --- prepare ---------------------------------------------------------------------------

    async def prepare(self, order: PayoutOrder) -> PayoutUpdate:
        batch = await self.prepare_batch([order])
        if order.id in batch.refused:
            raise batch.refused[order.id]
        assert batch.update is not None  # the one order was accepted
        return batch.update

    async def prepare_batch(self, orders: Sequence[PayoutOrder]) -> Batch:
        """One envelope from the first order's lane paying every order that can be built,
        in order; the others are refused with why. Raises PermanentCustodyError when the
        lane's account does not exist (no order can be built), TransientCustodyError when
        it cannot be read."""
        payments: list[tuple[PayoutOrder, Asset, str]] = []
        refused: dict[str, PermanentCustodyError] = {}
        memo: Memo = NoneMemo()
        for n, order in enumerate(orders[: self._max_ops]):
            try:
                asset = stellar_asset(order.asset)
                order_memo = stellar_memo(order.memo, order.memo_type)
                amount = stellar_amount(order.amount)
                _destination(order.destination)
            except PermanentCustodyError as exc:
                refused[order.id] = exc
                continue
            if n == 0:
                memo = order_memo  # one memo per transaction: the worker batches memo-less
            elif order_memo != memo:
                raise ValueError(f"payout {order.id} has another memo than its batch")
            payments.append((order, asset, amount))
        if not payments:
            return Batch(None, (), refused)
        lanes = self.source_accounts
        # The lane the worker claimed; a lane no longer configured falls back to the first
        # (at worst a sequence race, which is transient).
        lane = orders[0].source_account
        source = lane if lane in lanes else lanes[0]
        what = "channel account" if source in self._channels else "distribution account"
        try:
            account = await self._ledger.get_account(source)
        except LedgerNotFound:
            raise PermanentCustodyError(
                f"The {what} {source} does not exist on the ledger; create and fund it "
                "(tx_no_source_account)",
                "tx_no_source_account",
            ) from None
        except LedgerError as exc:
            raise TransientCustodyError(f"Could not read the {what}: {exc}") from None
        now = self._clock()
        max_time = int((now + self._timeout).timestamp())
        channel = self._channels.get(source)
        builder = TransactionBuilder(
            Account(source, account.sequence),
            network_passphrase=self._passphrase,
            base_fee=self._base_fee,
        )
        for order, asset, amount in payments:
            builder.append_payment_op(
                order.destination,
                asset,
                amount,
                source=self.source_account if channel is not None else None,
            )
        builder.add_memo(memo)
        builder.add_time_bounds(0, max_time)
        envelope = builder.build()
        envelope.sign(self._keypair)
        if channel is not None:
            envelope.sign(channel)
        update = PayoutUpdate(
            envelope_xdr=envelope.to_xdr(),
            tx_hash=envelope.hash_hex(),
            source_sequence=account.sequence + 1,
            valid_until=datetime.fromtimestamp(max_time, UTC),
        )
        return Batch(update, tuple(o.id for o, _, _ in payments), refused)

    # --- submit ----------------------------------------------------------------------------

    async def submit(self, order: PayoutOrder) -> SubmitOutcome:
        return (await self.submit_batch([order]))[order.id]

    async def submit_batch(self, orders: Sequence[PayoutOrder]) -> dict[str, SubmitOutcome]:
        first = orders[0]
        if not first.envelope_xdr or not first.tx_hash:
            raise ValueError(f"payout {first.id} has no prepared envelope")
        if any(o.tx_hash != first.tx_hash for o in orders):
            raise ValueError("a batch is submitted as the one envelope its payouts share")
        xdr, tx_hash = first.envelope_xdr, first.tx_hash
        try:
            result = await self._shared_call("submit", tx_hash, lambda: self._ledger.submit(xdr))
        except LedgerUnavailable as exc:
            raise TransientCustodyError(
                f"Horizon did not confirm the submission of {tx_hash} ({exc}); "
                "it will be looked up and the same envelope resubmitted",
                "timeout" if exc.status is None else str(exc.status),
            ) from None
        except LedgerError as exc:
            raise TransientCustodyError(f"Submission of {tx_hash} failed: {exc}") from None
        assert isinstance(result, SubmitResult)
        if result.successful:
            return {
                o.id: Confirmed(
                    hash=result.hash or tx_hash,
                    ledger=result.ledger,
                    record=own_payment(result.record, o),
                )
                for o in orders
            }
        if result.transaction_code == "tx_failed" or result.operation_codes:
            # Applied now and failed, or refused for an operation: nothing was paid, and
            # this envelope cannot have been applied before (its sequence would be gone).
            failures = {o.id: self.explain(o, result) for o in orders}
            if all(f is not None for f in failures.values()):
                return {o.id: f for o, f in zip(orders, failures.values(), strict=True) if f}
        # Rejected before applying. A resubmission of an envelope that did land earlier is
        # refused the same way (tx_bad_seq / tx_too_late), so ask the ledger before deciding.
        found = {o.id: await self.lookup(o) for o in orders}
        if all(isinstance(f, Confirmed | Failed) for f in found.values()):
            return {pid: f for pid, f in found.items() if isinstance(f, Confirmed | Failed)}
        failures = {o.id: self.explain(o, result) for o in orders}
        if any(f is None for f in failures.values()):
            raise TransientCustodyError(
                f"The network refused {tx_hash} for now ({result.transaction_code}); retrying",
                result.transaction_code,
            )
        return {pid: f for pid, f in failures.items() if f is not None}

    def explain(self, order: PayoutOrder, result: SubmitResult) -> Failed | NotFound | None:
        """A sentence for a refused submission, or None when the refusal is transient.
        A batched payout whose own operation passed while another failed the transaction is
        `NotFound(dead=True)`: this envelope can never pay it, a new one will."""
        tx_code = result.transaction_code or "unknown"
        index = order.op_index or 0
        codes = result.operation_codes
        op_code = codes[index] if index < len(codes) else None
        if op_code == "op_success" and any(c != "op_success" for c in codes):
            failing = sorted({c for c in codes if c != "op_success"})
            return NotFound(
                dead=True,
                detail=f"{order.tx_hash} failed because of another payment in it "
                f"({', '.join(failing)}); nothing was paid",
            )
        dest, src, asset, amount = order.destination, self.source_account, order.asset, order.amount
        label = "XLM" if asset == "stellar:native" else asset.removeprefix("stellar:")
        if op_code is None or op_code == "op_success":
            if tx_code in TRANSIENT_TX_CODES:
                return None
            reasons = {
                "tx_bad_auth": f"The envelope is not validly signed for {src}; check "
                "STELLAR_DISTRIBUTION_SECRET and the network passphrase",
                "tx_no_source_account": f"The distribution account {src} does not exist on "
                "the ledger",
                "tx_insufficient_balance": f"The distribution account {src} has not enough XLM "
                "to pay the transaction fee",
                "tx_bad_auth_extra": f"The envelope carries signatures {src} does not need",
                "tx_malformed": "The network found the payment transaction malformed",
            }
            text = reasons.get(tx_code, f"The network refused the payment transaction {tx_code}")
            return Failed(f"{text} ({tx_code})", tx_code)
        reasons = {
            "op_no_destination": f"The destination account {dest} does not exist on the ledger",
            "op_no_trust": f"The destination account {dest} has no trustline for {label}",
            "op_not_authorized": f"The destination account {dest} is not authorized by the "
            f"issuer to hold {label}",
            "op_line_full": f"The destination account {dest} cannot hold {amount} more {label} "
            "(trustline limit reached)",
            "op_underfunded": f"The distribution account {src} has not enough {label} to pay "
            f"{amount}; fund it",
            "op_src_no_trust": f"The distribution account {src} has no trustline for {label}",
            "op_src_not_authorized": f"The distribution account {src} is not authorized to "
            f"send {label}",
            "op_no_issuer": f"The issuer of {label} does not exist on the ledger",
            "op_malformed": f"The payment of {amount} {label} to {dest} is malformed",
        }
        text = reasons.get(op_code, f"The payment operation failed ({tx_code})")
        return Failed(f"{text} ({op_code})", op_code)

    # --- lookup ----------------------------------------------------------------------------

    async def lookup(self, order: PayoutOrder) -> LookupResult:
        if not order.tx_hash:
            return NotFound(dead=True, detail="no envelope was prepared")
        found = await self._find(order)
        if found is not None:
            return found
        if order.valid_until is None:
            return NotFound(dead=False, detail="not on the ledger yet")
        try:
            latest = await self._ledger.latest_ledger()
        except LedgerError as exc:
            raise TransientCustodyError(f"Could not read the latest ledger: {exc}") from None
        if latest.closed_at <= order.valid_until + DEAD_MARGIN:
            return NotFound(dead=False, detail="not on the ledger yet; its time bound is open")
        # A ledger closed after the bound: the envelope can only have landed before it, and
        # this second read happens after that ledger, so absence now is proof.
        found = await self._find(order)
        if found is not None:
            return found
        return NotFound(
            dead=True,
            detail=f"{order.tx_hash} is not on the ledger and expired at "
            f"{order.valid_until.isoformat()}",
        )

    async def _find(self, order: PayoutOrder) -> Confirmed | Failed | NotFound | None:
        tx_hash = order.tx_hash or ""
        found = await self._shared_call(
            "find", tx_hash, lambda: find_transaction(self._ledger, tx_hash)
        )
        if found is None:
            return None
        assert isinstance(found, LedgerTransaction)
        tx = found
        if tx.successful:
            return Confirmed(hash=tx.hash, ledger=tx.ledger, record=own_payment(tx.record, order))
        if order.op_index is not None:
            # A batch that failed on the ledger: nothing was paid and its sequence is gone.
            # Which operation failed is not in the record, so every payout of it is rebuilt;
            # the next submission names the failing operation (Horizon's result codes).
            return NotFound(
                dead=True,
                detail=f"the payment transaction {tx.hash} failed on the ledger (ledger "
                f"{tx.ledger}); nothing was paid",
            )
        return Failed(
            f"The payment transaction {tx.hash} failed on the ledger (ledger {tx.ledger}); "
            "nothing was paid",
            "tx_failed",
        )

    async def _shared_call(
        self, kind: str, tx_hash: str, call: Callable[[], Awaitable[object]]
    ) -> object:
        """`call()`, shared by the callers asking the same (`kind`, hash) at the same time."""
        key = (kind, tx_hash)
        pending = self._shared.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._shared[key] = future
        try:
            value = await call()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a future nobody else awaited must not warn
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._shared[key]

    # --- trustline -------------------------------------------------------------------------

    async def check_trustline(self, account: str, asset: str) -> bool:
        # A batch checks its payouts side by side: one read per destination and asset.
        trusted = await self._shared_call(
            "trust", f"{account}:{asset}", lambda: read_trustline(self._ledger, account, asset)
        )
        return bool(trusted)

    async def aclose(self) -> None:
        return None  # the ledger client belongs to the caller


# --- conversions (pure; PermanentCustodyError means the payout can never be built) ---------


def stellar_asset(asset_id: str) -> Asset:
    if asset_id == "stellar:native":
        return Asset.native()
    parts = asset_id.split(":")
    if len(parts) != 3 or parts[0] != "stellar":
        raise PermanentCustodyError(f"Asset {asset_id} is not a Stellar asset", "bad_asset")
    try:
        return Asset(parts[1], parts[2])
    except Exception:
        raise PermanentCustodyError(
            f"Asset {asset_id} is not a valid Stellar asset", "bad_asset"
        ) from None


def _destination(account: str) -> None:
    try:
        MuxedAccount.from_account(account)
    except Exception:  # the SDK refuses a bad account with various types
        raise PermanentCustodyError(
            f"The destination {account!r} is not a valid Stellar account", "invalid_destination"
        ) from None


def own_payment(record: StellarTransaction | None, order: PayoutOrder) -> StellarTransaction | None:
    """A batched payout's `stellar_transactions[]` entry: the shared transaction with its own
    payment operation only (the operations are the envelope's, in order)."""
    if record is None or order.op_index is None:
        return record
    payments = record.payments
    if order.op_index < len(payments):
        mine = payments[order.op_index]
        if mine.destination_account == order.destination:
            return replace(record, payments=[mine])
    return replace(
        record, payments=[p for p in payments if p.destination_account == order.destination]
    )


# Stellar's limit of operations in one transaction.
MAX_OPS_PER_TX = 100

# int64 stroops: the largest amount a Stellar operation can carry.
MAX_STELLAR_AMOUNT = Decimal("922337203685.4775807")


def stellar_amount(amount: str) -> str:
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise PermanentCustodyError(f"Amount {amount!r} is not a number", "bad_amount") from None
    unit = Decimal("0.0000001")
    too_large = value.is_finite() and value > MAX_STELLAR_AMOUNT
    if too_large or not value.is_finite() or value <= 0 or value.quantize(unit) != value:
        raise PermanentCustodyError(
            f"Amount {amount} cannot be paid on Stellar (positive, at most 7 decimals, at most "
            f"{MAX_STELLAR_AMOUNT})",
            "bad_amount",
        )
    return format(value.quantize(unit), "f")


def stellar_memo(memo: str | None, memo_type: str | None) -> Memo:
    if memo is None or memo == "" or memo_type in (None, "none"):
        return NoneMemo()
    try:
        if memo_type == "text":
            return TextMemo(memo)
        if memo_type == "id":
            return IdMemo(int(memo))
        if memo_type in ("hash", "return"):
            raw = _hash_bytes(memo)
            return HashMemo(raw) if memo_type == "hash" else ReturnHashMemo(raw)
    except PermanentCustodyError:
        raise
    except Exception:
        pass
    else:
        raise PermanentCustodyError(f"Memo type {memo_type!r} is not supported", "bad_memo")
    raise PermanentCustodyError(f"Memo {memo!r} is not a valid {memo_type} memo", "bad_memo")


def _hash_bytes(memo: str) -> bytes:
    """SEP-24 sends hash memos in base64; hex is accepted too. Either way 32 bytes."""
    candidates: list[bytes] = []
    if len(memo) == 64:
        try:
            candidates.append(bytes.fromhex(memo))
        except ValueError:
            pass
    try:
        candidates.append(base64.b64decode(memo, validate=True))
    except (binascii.Error, ValueError):
        pass
    for raw in candidates:
        if len(raw) == 32:
            return raw
    raise PermanentCustodyError(f"Memo {memo!r} is not a 32-byte hash", "bad_memo")


def distribution_secret(settings: Settings, default: str | None = None) -> str:
    """STELLAR_DISTRIBUTION_SECRET, or `default` (the sandbox's own, handed in by the
    composition root on the sandbox network) when nothing is set."""
    if settings.stellar_distribution_secret is not None:
        value = settings.stellar_distribution_secret.get_secret_value()
        if value:
            return value
    if default is not None:
        return default
    raise ConfigError("STELLAR_DISTRIBUTION_SECRET is required when CUSTODY_TYPE=stellar")


def channel_secrets(settings: Settings) -> list[str]:
    """STELLAR_CHANNEL_SECRETS: comma-separated secret seeds (blanks ignored)."""
    raw = settings.stellar_channel_secrets
    if raw is None:
        return []
    return [s.strip() for s in raw.get_secret_value().split(",") if s.strip()]


def build_stellar_signer(
    settings: Settings, ledger: LedgerClient, default_secret: str | None = None
) -> StellarSigner:
    return StellarSigner(
        distribution_secret(settings, default_secret),
        ledger,
        network_passphrase=settings.network_passphrase,
        tx_timeout_s=settings.stellar_tx_timeout_s,
        base_fee=settings.stellar_base_fee,
        max_ops_per_tx=settings.stellar_max_ops_per_tx,
        channel_secrets=channel_secrets(settings),
    )


def _keypair(secret: str, setting: str) -> Keypair:
    try:
        return Keypair.from_secret(secret)
    except Exception:  # the SDK's message could echo the value: say nothing of it
        raise ConfigError(f"{setting} is not a valid Stellar secret seed") from None
