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

The secrets are read once into Keypairs and never logged, returned or shown by `repr`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from stellar_sdk import (
    Account,
    Asset,
    HashMemo,
    IdMemo,
    Keypair,
    Memo,
    NoneMemo,
    ReturnHashMemo,
    TextMemo,
    TransactionBuilder,
)

from anchorpay.adapters.custody import (
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
    LedgerUnavailable,
    SubmitResult,
)
from anchorpay.clock import SYSTEM
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
        self._clock = clock or SYSTEM.now

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

    # --- prepare ---------------------------------------------------------------------------

    async def prepare(self, order: PayoutOrder) -> PayoutUpdate:
        asset = stellar_asset(order.asset)
        memo = stellar_memo(order.memo, order.memo_type)
        amount = stellar_amount(order.amount)
        lanes = self.source_accounts
        # The lane the worker claimed; a lane no longer configured falls back to the first
        # (at worst a sequence race, which is transient).
        source = order.source_account if order.source_account in lanes else lanes[0]
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
        try:
            builder = TransactionBuilder(
                Account(source, account.sequence),
                network_passphrase=self._passphrase,
                base_fee=self._base_fee,
            )
            builder.append_payment_op(
                order.destination,
                asset,
                amount,
                source=self.source_account if channel is not None else None,
            )
            builder.add_memo(memo)
            builder.add_time_bounds(0, max_time)
            envelope = builder.build()
        except Exception as exc:  # the SDK refuses a bad destination with various types
            raise PermanentCustodyError(
                f"The destination {order.destination!r} is not a valid Stellar account ({exc})",
                "invalid_destination",
            ) from None
        envelope.sign(self._keypair)
        if channel is not None:
            envelope.sign(channel)
        return PayoutUpdate(
            envelope_xdr=envelope.to_xdr(),
            tx_hash=envelope.hash_hex(),
            source_sequence=account.sequence + 1,
            valid_until=datetime.fromtimestamp(max_time, UTC),
        )

    # --- submit ----------------------------------------------------------------------------

    async def submit(self, order: PayoutOrder) -> SubmitOutcome:
        if not order.envelope_xdr or not order.tx_hash:
            raise ValueError(f"payout {order.id} has no prepared envelope")
        try:
            result = await self._ledger.submit(order.envelope_xdr)
        except LedgerUnavailable as exc:
            raise TransientCustodyError(
                f"Horizon did not confirm the submission of {order.tx_hash} ({exc}); "
                "it will be looked up and the same envelope resubmitted",
                "timeout" if exc.status is None else str(exc.status),
            ) from None
        except LedgerError as exc:
            raise TransientCustodyError(f"Submission of {order.tx_hash} failed: {exc}") from None
        if result.successful:
            return Confirmed(
                hash=result.hash or order.tx_hash, ledger=result.ledger, record=result.record
            )
        if result.transaction_code == "tx_failed" or result.operation_codes:
            # Applied now and failed: the sequence is consumed, nothing was paid, and this
            # envelope cannot have been applied before (its sequence would be gone).
            applied = self.explain(order, result)
            if applied is not None:
                return applied
        # Rejected before applying. A resubmission of an envelope that did land earlier is
        # refused the same way (tx_bad_seq / tx_too_late), so ask the ledger before deciding.
        found = await self.lookup(order)
        if isinstance(found, Confirmed | Failed):
            return found
        failure = self.explain(order, result)
        if failure is None:
            raise TransientCustodyError(
                f"The network refused {order.tx_hash} for now ({result.transaction_code}); "
                "retrying",
                result.transaction_code,
            )
        return failure

    def explain(self, order: PayoutOrder, result: SubmitResult) -> Failed | None:
        """A sentence for a refused submission, or None when the refusal is transient."""
        tx_code = result.transaction_code or "unknown"
        op_code = result.operation_codes[0] if result.operation_codes else None
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
        found = await self._find(order.tx_hash)
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
        found = await self._find(order.tx_hash)
        if found is not None:
            return found
        return NotFound(
            dead=True,
            detail=f"{order.tx_hash} is not on the ledger and expired at "
            f"{order.valid_until.isoformat()}",
        )

    async def _find(self, tx_hash: str) -> Confirmed | Failed | None:
        tx = await find_transaction(self._ledger, tx_hash)
        if tx is None:
            return None
        if tx.successful:
            return Confirmed(hash=tx.hash, ledger=tx.ledger, record=tx.record)
        return Failed(
            f"The payment transaction {tx.hash} failed on the ledger (ledger {tx.ledger}); "
            "nothing was paid",
            "tx_failed",
        )

    # --- trustline -------------------------------------------------------------------------

    async def check_trustline(self, account: str, asset: str) -> bool:
        return await read_trustline(self._ledger, account, asset)

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
        channel_secrets=channel_secrets(settings),
    )


def _keypair(secret: str, setting: str) -> Keypair:
    try:
        return Keypair.from_secret(secret)
    except Exception:  # the SDK's message could echo the value: say nothing of it
        raise ConfigError(f"{setting} is not a valid Stellar secret seed") from None
