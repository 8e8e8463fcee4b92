"""The pool's limits, its statistics and its rejection error."""

from __future__ import annotations

import attrs

from moderntensor.chain.execution import TransactionRejected
from moderntensor.chain.transactions import MAX_TX_SIZE

__all__ = ["DEV_MEMPOOL", "MempoolConfig", "MempoolRejected", "MempoolStatistics"]


class MempoolRejected(TransactionRejected):
    """The pool refuses a transaction; ``message`` is in Ethereum's (geth's) wording."""


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def _not_negative(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative integer, got {value!r}")


@attrs.frozen(slots=True)
class MempoolConfig:
    """Limits; the ``[mempool]`` section of node.toml (geth's ``--txpool.*`` defaults).

    Executable (pending) and gapped (queued) transactions are limited apart, so junk that can
    never execute can never crowd out transactions that can (docs/mempool.md).
    """

    global_slots: int = attrs.field(default=5_120, validator=_positive)
    """Executable transactions held, all senders (geth: 5,120)."""
    account_slots: int = attrs.field(default=16, validator=_positive)
    """Executable transactions a sender is guaranteed room for (geth: 16). Not a cap: a sender
    may hold more while the pool has room, and is trimmed back to this when it fills."""
    global_queue: int = attrs.field(default=1_024, validator=_positive)
    """Gapped transactions held, all senders (geth: 1,024)."""
    account_queue: int = attrs.field(default=64, validator=_positive)
    """Gapped transactions of one sender (geth: 64)."""
    queue_lifetime_s: int = attrs.field(default=3 * 3600, validator=_positive)
    """A sender's gapped transactions are dropped after this long without a new one or a
    promotion (geth: 3 h)."""
    max_tx_size: int = attrs.field(default=MAX_TX_SIZE, validator=_positive)
    """Largest network encoding accepted, in bytes (geth: 128 KiB)."""
    price_bump_percent: int = attrs.field(default=10, validator=_positive)
    """Minimum raise of max fee and tip for a same-nonce replacement (geth: 10)."""
    min_tip: int = attrs.field(default=1, validator=_not_negative)
    """Smallest priority fee (wei) admitted, and the floor of the node's tip suggestion
    (geth's ``--txpool.pricelimit``: 1 wei)."""
    journal: bool = True
    """Keep transactions sent to this node's RPC in ``<data_dir>/transactions.journal`` and
    re-admit them after a restart (geth's ``--txpool.journal``); the pool core ignores it."""
    journal_max_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_positive)
    """The journal is compacted to what is still pooled when it grows past this."""


DEV_MEMPOOL = MempoolConfig(
    global_slots=200_000,
    account_slots=10_000,
    global_queue=50_000,
    account_queue=10_000,
    min_tip=0,
)
"""``--dev``: generous limits, as Anvil has none to speak of, and any tip (Anvil takes 0)."""


@attrs.frozen(slots=True)
class MempoolStatistics:
    pending: int
    queued: int
    senders: int
    bytes: int
