"""What the background jobs need of the workflow's `Services`: one Protocol for all of them,
so tests can pass a small stand-in and no job imports the RPC side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from anchorpay.adapters.ledger import LedgerClient
from anchorpay.clock import Clock
from anchorpay.domain.assets import AssetList
from anchorpay.metrics import Metrics
from anchorpay.settings import Settings

if TYPE_CHECKING:
    from anchorpay.adapters.fireblocks.config import FireblocksConfig


class JobServices(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def assets(self) -> AssetList: ...
    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def ledger(self) -> LedgerClient: ...
    @property
    def fireblocks(self) -> FireblocksConfig | None: ...
    @property
    def distribution_secret_default(self) -> str | None: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def metrics(self) -> Metrics: ...
