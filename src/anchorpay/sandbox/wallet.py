"""The sandbox's wallet helper: build and sign a payment the way a wallet would (stellar-sdk,
the source's next sequence number, a time bound), for `POST /sandbox/payments` and
`anchorpay sandbox pay`. The envelope then goes through the ledger's checks like any other.
Bad input raises `WalletInputError` with the sentence for the caller."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from stellar_sdk import Account, Asset, Keypair, TransactionBuilder
from stellar_sdk.exceptions import Ed25519SecretSeedInvalidError

from anchorpay.sandbox.state import BASE_FEE, NATIVE, asset_code, asset_issuer, is_credit_asset_id

VALIDITY_S = 300  # the envelope's time bound: long enough to wait a few ledgers
MEMO_TYPES = ("text", "id", "hash")


class WalletInputError(ValueError):
    """The message is the exact sentence for the caller."""


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    source: Keypair
    to: str
    asset: str  # SEP-38 id
    amount: Decimal
    memo: str | None
    memo_type: str


def _text(body: dict[str, Any], field: str, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise WalletInputError(f"The field '{field}' must be a non-empty string.")
    return value


def parse_request(body: dict[str, Any], secret_of: dict[str, str]) -> PaymentRequest:
    """Read the body; `secret_of` maps the accounts the sandbox created to their secrets."""
    secret, source = body.get("from_secret"), body.get("from")
    if (secret is None) == (source is None):
        raise WalletInputError("Give exactly one of 'from_secret' or 'from' (the payer).")
    if source is not None:
        if not isinstance(source, str) or source not in secret_of:
            raise WalletInputError(
                f"The account {source} was not created by this sandbox (POST /sandbox/accounts);"
                " give its secret as 'from_secret' instead."
            )
        secret = secret_of[source]
    try:
        keypair = Keypair.from_secret(secret if isinstance(secret, str) else "")
    except (Ed25519SecretSeedInvalidError, ValueError):
        raise WalletInputError("The field 'from_secret' must be a secret seed (S…).") from None
    to = _text(body, "to")
    assert to is not None
    try:
        Keypair.from_public_key(to)
    except Exception:
        raise WalletInputError(
            f"The field 'to' must be a Stellar account id (G…), not {to!r}."
        ) from None
    asset = _text(body, "asset")
    assert asset is not None
    if asset != NATIVE and not is_credit_asset_id(asset):
        raise WalletInputError(
            f"The asset {asset!r} is not a Stellar asset id such as stellar:native or "
            "stellar:USDC:G…."
        )
    memo = _text(body, "memo", required=False)
    memo_type = _text(body, "memo_type", required=False) or "text"
    if memo_type not in MEMO_TYPES:
        raise WalletInputError("The field 'memo_type' must be text, id or hash.")
    return PaymentRequest(keypair, to, asset, _amount(body.get("amount")), memo, memo_type)


def _amount(value: Any) -> Decimal:
    sentence = (
        "The field 'amount' must be a positive amount with at most 7 decimals, such as \"10\"."
    )
    if not isinstance(value, str):
        raise WalletInputError(sentence)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise WalletInputError(sentence) from None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or amount <= 0 or (isinstance(exponent, int) and exponent < -7):
        raise WalletInputError(sentence)
    return amount


def sign_payment(request: PaymentRequest, sequence: int, passphrase: str, now: int) -> str:
    """The signed envelope (base64 XDR) of one payment with sequence number `sequence + 1`."""
    account = Account(request.source.public_key, sequence)
    builder = TransactionBuilder(account, passphrase, base_fee=BASE_FEE)
    builder.add_time_bounds(0, now + VALIDITY_S)
    if request.asset == NATIVE:
        asset = Asset.native()
    else:
        asset = Asset(asset_code(request.asset), asset_issuer(request.asset))
    builder.append_payment_op(request.to, asset, f"{request.amount:f}")
    if request.memo is not None:
        try:
            if request.memo_type == "id":
                builder.add_id_memo(int(request.memo))
            elif request.memo_type == "hash":
                builder.add_hash_memo(request.memo)
            else:
                builder.add_text_memo(request.memo)
        except Exception:
            raise WalletInputError(
                f"The memo {request.memo!r} is not a valid {request.memo_type} memo "
                "(id: a 64-bit number; text: up to 28 bytes; hash: 32 bytes in hex)."
            ) from None
    envelope = builder.build()
    envelope.sign(request.source)
    return str(envelope.to_xdr())
