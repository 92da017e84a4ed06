"""A typed Python client for anchorpay's API, for business backends (README, "Client").

    from anchorpay.client import Client, ApiKey
    with Client("http://localhost:8085", auth=ApiKey(secret)) as api:
        tx = api.do_stellar_payment(tx_id)

`AsyncClient` is the same for asyncio. It imports nothing of the server: a business backend
installs anchorpay for it and uses only this package (httpx, PyJWT)."""

from anchorpay.client._async import AsyncClient
from anchorpay.client._sync import Client
from anchorpay.client.auth import ApiKey, Jwt
from anchorpay.client.batch import Batch, Pending
from anchorpay.client.calls import AssetAmount, Call, Fee, FeeItem, Refund
from anchorpay.client.errors import ClientError, Forbidden, HttpError, RpcError, TransportError
from anchorpay.client.models import (
    Amount,
    FeeDetails,
    Payout,
    RefundPayment,
    Refunds,
    StellarPayment,
    StellarTransaction,
    Transaction,
)

__all__ = [
    "Amount",
    "ApiKey",
    "AssetAmount",
    "AsyncClient",
    "Batch",
    "Call",
    "Client",
    "ClientError",
    "Fee",
    "FeeDetails",
    "FeeItem",
    "Forbidden",
    "HttpError",
    "Jwt",
    "Payout",
    "Pending",
    "Refund",
    "RefundPayment",
    "Refunds",
    "RpcError",
    "StellarPayment",
    "StellarTransaction",
    "Transaction",
    "TransportError",
]
