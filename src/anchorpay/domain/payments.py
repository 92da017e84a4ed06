"""A payment seen on the ledger, as a plain value.

Here, in the domain, so the ledger client that reads payments and the store that records
the unmatched ones share the type without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ObservedPayment:
    """One payment to or from a watched account: an entry of Horizon's `/payments` stream
    (its paging token is the cursor), or a custodian's transfer in the same terms."""

    id: str
    paging_token: str
    transaction_hash: str
    type: str  # "payment" | "path_payment_strict_receive" | "path_payment_strict_send" | ...
    source_account: str
    destination_account: str
    asset: str  # SEP-38 id
    amount: str
    memo: str | None
    memo_type: str
    successful: bool
    created_at: datetime
