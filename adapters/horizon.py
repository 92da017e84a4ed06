"""The ledger client over plain Horizon REST (real Horizon or the sandbox's Horizon surface).

Error mapping: 404 -> LedgerNotFound; timeouts, connection errors, 429 and 5xx ->
LedgerUnavailable(status); a refused submission (400) is a SubmitResult carrying Horizon's
`extras.result_codes`, never an exception, because the caller decides what a code means.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from stellar_sdk import Asset, TransactionEnvelope
from stellar_sdk.operation import Payment

from anchorpay.adapters.ledger import (
    Account,
    Balance,
    LatestLedger,
    LedgerError,
    LedgerNetwork,
    LedgerNotFound,
    LedgerTransaction,
    LedgerUnavailable,
    ObservedPayment,
    PaymentsPage,
    SubmitResult,
)
from anchorpay.domain.transaction import StellarPayment, StellarTransaction
from anchorpay.http import AsyncClient, HttpTimeout, HttpTransportError, Response, make_client

log = logging.getLogger(__name__)

Json = dict[str, Any]

# Horizon holds a submission open until the transaction is in a ledger (about 30 s at most),
# so a shorter client timeout would turn ordinary waits into "unknown outcome" errors.
MIN_SUBMIT_TIMEOUT_S = 35.0
STROOP = Decimal("0.0000001")
PAYMENT_TYPES = ("payment", "path_payment_strict_receive", "path_payment_strict_send")


class HorizonLedgerClient:
    """LedgerClient over Horizon. `client` may be injected (tests, shared pools); the client
    is closed by `aclose()` only when this object created it."""

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 10.0,
        client: AsyncClient | None = None,
        *,
        submit_timeout_s: float | None = None,
        network_passphrase: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._owns_client = client is None
        self._client = client if client is not None else make_client(self.base_url, timeout_s)
        self._submit_timeout_s = submit_timeout_s or max(timeout_s, MIN_SUBMIT_TIMEOUT_S)
        self._passphrase = network_passphrase  # learnt from GET / when needed

    # --- LedgerClient ----------------------------------------------------------------------

    async def get_account(self, account_id: str) -> Account:
        body = await self._get(f"/accounts/{account_id}", what=f"account {account_id}")
        return Account(
            account_id=str(body["account_id"]),
            sequence=int(body["sequence"]),
            balances=tuple(b for b in map(_balance, body.get("balances", [])) if b is not None),
        )

    async def get_transaction(self, tx_hash: str) -> LedgerTransaction:
        what = f"transaction {tx_hash}"
        body = await self._get(f"/transactions/{tx_hash}", what=what)
        records = await self._records(f"/transactions/{tx_hash}/payments", what)
        created_at = _time(body["created_at"])
        memo_type = str(body.get("memo_type", "none"))
        memo = _memo(body)
        payments = [_stellar_payment(r) for r in records if r.get("type") in PAYMENT_TYPES]
        record = StellarTransaction(
            id=str(body["hash"]),
            created_at=created_at,
            envelope=body.get("envelope_xdr"),
            payments=payments,
            memo=memo,
            memo_type=None if memo_type == "none" else memo_type,
        )
        return LedgerTransaction(
            hash=str(body["hash"]),
            ledger=int(body["ledger"]),
            successful=bool(body.get("successful", True)),
            created_at=created_at,
            envelope_xdr=str(body.get("envelope_xdr", "")),
            memo=memo,
            memo_type=memo_type,
            source_account=str(body["source_account"]),
            record=record,
        )

    async def submit(self, envelope_xdr: str) -> SubmitResult:
        response = await self._send(
            "POST",
            "/transactions",
            "the transaction submission",
            data={"tx": envelope_xdr},
            wait_s=self._submit_timeout_s,
        )
        body = _json(response)
        if response.status_code == 200:
            ledger = body.get("ledger")
            return SubmitResult(
                hash=str(body.get("hash", "")),
                successful=bool(body.get("successful", True)),
                ledger=int(ledger) if ledger is not None else None,
                record=_submitted_record(body, envelope_xdr),
            )
        if response.status_code == 400:
            extras = body.get("extras") or {}
            codes = extras.get("result_codes") or {}
            tx_code = codes.get("transaction")
            if tx_code is None:  # transaction_malformed: Horizon could not decode the envelope
                tx_code = "tx_malformed"
            tx_hash = extras.get("hash") or await self._hash_of(envelope_xdr)
            return SubmitResult(
                hash=str(tx_hash),
                successful=False,
                transaction_code=str(tx_code),
                operation_codes=tuple(str(c) for c in codes.get("operations") or ()),
            )
        raise _unexpected(response, "the transaction submission")

    async def payments(self, account_id: str, cursor: str | None, limit: int = 200) -> PaymentsPage:
        params: dict[str, str | int] = {"order": "asc", "limit": limit, "join": "transactions"}
        if cursor:
            params["cursor"] = cursor
        body = await self._get(
            f"/accounts/{account_id}/payments", what=f"payments of {account_id}", params=params
        )
        records = body.get("_embedded", {}).get("records", [])
        # Every record is returned (also types that are not payments) so the cursor can move
        # past them; callers filter on `type`.
        observed = [_observed(r) for r in records]
        return PaymentsPage(observed, observed[-1].paging_token if observed else None)

    async def latest_ledger(self) -> LatestLedger:
        body = await self._get(
            "/ledgers", what="the latest ledger", params={"order": "desc", "limit": 1}
        )
        records = body.get("_embedded", {}).get("records", [])
        if not records:
            raise LedgerUnavailable("Horizon returned no ledger")
        return LatestLedger(int(records[0]["sequence"]), _time(records[0]["closed_at"]))

    async def network(self) -> LedgerNetwork:
        root = await self._get("/", what="the network")
        passphrase = str(root["network_passphrase"])
        latest = int(root.get("history_latest_ledger") or 0)
        genesis_hash, created_at = root.get("network_id"), None
        # Horizon keeps the genesis ledger only with full history (a sandbox always does).
        if int(root.get("history_elder_ledger") or 0) == 1:
            genesis = await self._get("/ledgers/1", what="the genesis ledger")
            genesis_hash, created_at = str(genesis["hash"]), _time(genesis["closed_at"])
        return LedgerNetwork(
            passphrase, str(genesis_hash) if genesis_hash else None, created_at, latest
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # --- HTTP ------------------------------------------------------------------------------

    async def _send(
        self, method: str, path: str, what: str, wait_s: float | None = None, **kwargs: Any
    ) -> Response:
        extra: dict[str, Any] = {} if wait_s is None else {"timeout": wait_s}
        try:
            response = await self._client.request(method, path, **kwargs, **extra)
        except HttpTimeout:
            raise LedgerUnavailable(f"Horizon did not answer in time for {what}") from None
        except HttpTransportError as exc:
            raise LedgerUnavailable(
                f"Horizon could not be reached for {what}: {type(exc).__name__}"
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise LedgerUnavailable(f"Horizon answered {status} for {what}", status)
        if status == 404:
            raise LedgerNotFound(f"Horizon has no {what}")
        return response

    async def _get(self, path: str, what: str, params: dict[str, str | int] | None = None) -> Json:
        response = await self._send("GET", path, what, params=params)
        if response.status_code != 200:
            raise _unexpected(response, what)
        return _json(response)

    async def _records(self, path: str, what: str) -> list[Json]:
        """All records of a (short) collection, following `next` links while pages are full."""
        out: list[Json] = []
        params: dict[str, str | int] = {"order": "asc", "limit": 200}
        while True:
            body = await self._get(path, what, params)
            records: list[Json] = body.get("_embedded", {}).get("records", [])
            out.extend(records)
            if len(records) < 200:
                return out
            params = {**params, "cursor": str(records[-1]["paging_token"])}

    async def _hash_of(self, envelope_xdr: str) -> str:
        """The envelope's hash, which a 400 does not carry; it needs the network passphrase."""
        try:
            if self._passphrase is None:
                root = await self._get("/", what="the network passphrase")
                self._passphrase = str(root["network_passphrase"])
            return envelope_hash(envelope_xdr, self._passphrase)
        except Exception as exc:  # an undecodable envelope raises anything from the XDR layer
            log.warning("could not compute the hash of a refused envelope: %s", exc)
            return ""


def envelope_hash(envelope_xdr: str, network_passphrase: str) -> str:
    from stellar_sdk import FeeBumpTransactionEnvelope, TransactionEnvelope

    if FeeBumpTransactionEnvelope.is_fee_bump_transaction_envelope(envelope_xdr):
        fee_bump = FeeBumpTransactionEnvelope.from_xdr(envelope_xdr, network_passphrase)
        return str(fee_bump.hash_hex())
    envelope = TransactionEnvelope.from_xdr(envelope_xdr, network_passphrase)
    return str(envelope.hash_hex())


# --- JSON -> values -------------------------------------------------------------------------


def _json(response: Response) -> Json:
    try:
        body = response.json()
    except ValueError:
        raise LedgerUnavailable(
            f"Horizon answered {response.status_code} with a body that is not JSON",
            response.status_code,
        ) from None
    if not isinstance(body, dict):
        raise LedgerUnavailable("Horizon answered with unexpected JSON", response.status_code)
    return body


def _unexpected(response: Response, what: str) -> LedgerError:
    title = ""
    try:
        title = str(response.json().get("title", ""))
    except (ValueError, AttributeError):
        pass
    return LedgerError(f"Horizon answered {response.status_code} {title} for {what}".rstrip())


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _memo(tx: Json) -> str | None:
    memo = tx.get("memo")
    return None if memo is None else str(memo)


def _asset_id(record: Json, prefix: str = "") -> str:
    """SEP-38 id of the asset described by `{prefix}asset_type/_code/_issuer`."""
    if record.get(f"{prefix}asset_type") == "native":
        return "stellar:native"
    return f"stellar:{record[f'{prefix}asset_code']}:{record[f'{prefix}asset_issuer']}"


def _balance(entry: Json) -> Balance | None:
    if entry.get("asset_type") not in ("native", "credit_alphanum4", "credit_alphanum12"):
        return None  # liquidity pool shares are not assets anchorpay pays in
    try:
        amount = Decimal(str(entry["balance"]))
    except (KeyError, InvalidOperation):
        return None
    return Balance(_asset_id(entry), amount, bool(entry.get("is_authorized", True)))


def _sdk_asset(asset_id: str) -> str:
    """`stellar:native` -> `native`, `stellar:CODE:ISSUER` -> `CODE:ISSUER` (SDK notation)."""
    return asset_id.removeprefix("stellar:")


def _submitted_record(body: Json, envelope_xdr: str) -> StellarTransaction | None:
    """The `stellar_transactions[]` entry of a transaction Horizon just applied, from its
    answer and the envelope that was sent: what a second read of `/transactions/{hash}` and
    its payments would give, without that read. Operation ids follow Horizon's TOID: the
    transaction's paging token plus the operation's position. None when the answer lacks
    what it takes (an older Horizon): the caller then reads the ledger."""
    try:
        token = int(str(body["paging_token"]))
        created_at = _time(str(body["created_at"]))
        envelope = TransactionEnvelope.from_xdr(envelope_xdr, "")
    except (KeyError, ValueError, TypeError):
        return None
    tx = envelope.transaction
    payments = [
        StellarPayment(
            id=str(token + index + 1),
            amount=format(Decimal(op.amount).quantize(STROOP), "f"),
            asset=_sdk_asset(_op_asset_id(op.asset)),
            payment_type="payment",
            source_account=(op.source or tx.source).account_id,
            destination_account=op.destination.account_id,
        )
        for index, op in enumerate(tx.operations)
        if isinstance(op, Payment)
    ]
    memo_type = str(body.get("memo_type", "none"))
    return StellarTransaction(
        id=str(body.get("hash", "")),
        created_at=created_at,
        envelope=str(body.get("envelope_xdr") or envelope_xdr),
        payments=payments,
        memo=_memo(body),
        memo_type=None if memo_type == "none" else memo_type,
    )


def _op_asset_id(asset: Asset) -> str:
    return "stellar:native" if asset.is_native() else f"stellar:{asset.code}:{asset.issuer}"


def _stellar_payment(r: Json) -> StellarPayment:
    return StellarPayment(
        id=str(r["id"]),
        amount=str(r["amount"]),
        asset=_sdk_asset(_asset_id(r)),
        payment_type="payment" if r["type"] == "payment" else "path_payment",
        source_account=str(r.get("from", r.get("source_account", ""))),
        destination_account=str(r.get("to", "")),
    )


def _observed(r: Json) -> ObservedPayment:
    kind = str(r.get("type", ""))
    tx = r.get("transaction") or {}
    if kind == "create_account":
        source, dest = r.get("funder", ""), r.get("account", "")
        asset, amount = "stellar:native", r.get("starting_balance", "0")
    elif kind == "account_merge":  # the merged amount is not in the record
        source, dest, asset, amount = r.get("account", ""), r.get("into", ""), "stellar:native", "0"
    else:
        source, dest = r.get("from", r.get("source_account", "")), r.get("to", "")
        asset, amount = _asset_id(r) if "asset_type" in r else "stellar:native", r.get("amount")
    return ObservedPayment(
        id=str(r["id"]),
        paging_token=str(r["paging_token"]),
        transaction_hash=str(r.get("transaction_hash", "")),
        type=kind,
        source_account=str(source),
        destination_account=str(dest),
        asset=asset,
        amount=str(amount if amount is not None else "0"),
        memo=_memo(tx),
        memo_type=str(tx.get("memo_type", "none")),
        successful=bool(r.get("transaction_successful", True)),
        created_at=_time(str(r["created_at"])),
    )


__all__ = ["HorizonLedgerClient", "envelope_hash"]
