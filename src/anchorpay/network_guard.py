"""The ledger network this database follows, and the refusal to follow another.

The observer's cursors are paging tokens of one network, and a payout's "not on the ledger"
is only proof on the network it was sent to. So the first start records the network (its
passphrase and genesis hash, `ledger_network`), and every start of `anchorpay serve` and
`anchorpay worker` compares: another network (a wiped or replaced sandbox, a reset testnet,
HORIZON_URL pointed elsewhere) stops the process with one line saying what changed and how to
start over, instead of silently missing payments. The observer also stops at each run when
the ledger is behind what it already processed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.ledger import LedgerNetwork
from anchorpay.settings import ConfigError
from anchorpay.store import ledger_network as store

RESET = (
    "to start over on it (transactions are kept, the old network's ledger cursors are "
    "forgotten), stop anchorpay and run: anchorpay sandbox reset"
)


class NetworkChanged(ConfigError):
    """The ledger is not the network this database follows; one line, reset included."""

    PREFIX = "the ledger network changed: "

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.PREFIX}{reason}; {RESET}")


def _id(genesis_hash: str | None) -> str:
    return genesis_hash[:12] if genesis_hash else "?"


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def went_back(observed: int, latest: int, source: str) -> NetworkChanged:
    return NetworkChanged(
        f"the observer processed ledger {observed} but {source} is at ledger {latest}"
    )


async def check(
    sessions: async_sessionmaker[AsyncSession],
    current: LedgerNetwork,
    source: str,
    now: datetime,
) -> None:
    """Record `current` when the database follows no network yet; raise NetworkChanged when
    it follows another one. `source` names the ledger in the message ("the sandbox (state
    ./data/sandbox.db)", "Horizon at …")."""
    async with sessions() as session:  # read only: a refusal writes nothing
        stored = await store.get(session)
        if stored is not None and stored.passphrase != current.passphrase:
            raise NetworkChanged(
                f"the database follows the network {stored.passphrase!r} but {source} is "
                f"{current.passphrase!r}"
            )
        if stored is not None and stored.genesis_hash and current.genesis_hash:
            if stored.genesis_hash != current.genesis_hash:
                raise NetworkChanged(
                    f"the database follows network {_id(stored.genesis_hash)} but {source} is "
                    f"network {_id(current.genesis_hash)}, a new one (was its state deleted or "
                    "replaced?)"
                )
        if stored is None and current.created_at is not None:
            # No record yet (a database older than this check): transactions made before the
            # network existed were made on another one.
            first = await store.first_transaction_at(session)
            if first is not None and first < current.created_at:
                raise NetworkChanged(
                    f"the database holds transactions since {_when(first)} but {source} is "
                    f"network {_id(current.genesis_hash)}, created {_when(current.created_at)}"
                )
        observed = await store.observed_ledger(session)
        if observed is not None and current.latest_ledger < observed:
            raise went_back(observed, current.latest_ledger, source)
        if stored is not None and stored.genesis_hash == current.genesis_hash:
            return
    # Its own transaction, a write first: on SQLite a read-then-write transaction would fail
    # (busy snapshot) when another process starting at the same time wrote in between.
    async with sessions() as session, session.begin():
        await store.record(
            session, current.passphrase, current.genesis_hash, current.created_at, now
        )
