"""The transaction pool (DESIGN.md §2, layer 4): a pure core, see :mod:`._pool` for the rules."""

from __future__ import annotations

from moderntensor.mempool._accounts import AccountReader, AccountSnapshot, read_accounts
from moderntensor.mempool._config import (
    DEV_MEMPOOL,
    MempoolConfig,
    MempoolRejected,
    MempoolStatistics,
)
from moderntensor.mempool._pool import Mempool

__all__ = [
    "DEV_MEMPOOL",
    "AccountReader",
    "AccountSnapshot",
    "Mempool",
    "MempoolConfig",
    "MempoolRejected",
    "MempoolStatistics",
    "read_accounts",
]
