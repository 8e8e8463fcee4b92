"""The pool's limits, its statistics and its rejection error."""

from __future__ import annotations

import attrs

from moderntensor.chain.execution import TransactionRejected
from moderntensor.chain.transactions import MAX_TX_SIZE

__all__ = ["MempoolConfig", "MempoolRejected", "MempoolStatistics"]


class MempoolRejected(TransactionRejected):
    """The pool refuses a transaction; ``message`` is in Ethereum's (geth's) wording."""


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


@attrs.frozen(slots=True)
class MempoolConfig:
    """Limits; the ``[mempool]`` section of node.toml (geth's defaults in comments)."""

    max_transactions: int = attrs.field(default=5_000, validator=_positive)
    """Pending plus queued, all senders (geth: 5,120 slots + 1,024 queued)."""
    max_per_sender: int = attrs.field(default=64, validator=_positive)
    """Pending plus queued of one sender (geth: 16 pending slots, 64 queued)."""
    max_tx_size: int = attrs.field(default=MAX_TX_SIZE, validator=_positive)
    """Largest network encoding accepted, in bytes (geth: 128 KiB)."""
    price_bump_percent: int = attrs.field(default=10, validator=_positive)
    """Minimum raise of max fee and tip for a same-nonce replacement (geth: 10)."""


@attrs.frozen(slots=True)
class MempoolStatistics:
    pending: int
    queued: int
    senders: int
    bytes: int
