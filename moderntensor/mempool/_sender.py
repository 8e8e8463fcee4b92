"""One sender's held transactions: the bookkeeping under :class:`~._pool.Mempool`."""

from __future__ import annotations

from moderntensor.chain.transactions import Transaction

__all__ = ["Sender", "compute_cost"]


def compute_cost(tx: Transaction) -> int:
    """The most ``tx`` can take from its sender's balance: ``gas * max_fee + value``."""
    return tx.gas * tx.max_fee_per_gas + tx.value


class Sender:
    """A sender's transactions and its account at the current head (mutable, internal).

    Every held nonce is at least ``nonce``; ``[nonce, pending_end)`` are all held (the
    executable run), the rest are queued behind a gap. ``n_pending`` and ``n_queued`` are the
    counts the pool last added to its totals (the pool's ``_sync`` brings them up to date).
    """

    __slots__ = ("balance", "beat", "n_pending", "n_queued", "nonce", "pending_end", "spent", "txs")

    def __init__(self, nonce: int, balance: int, now: float) -> None:
        self.nonce = nonce
        self.balance = balance
        self.txs: dict[int, Transaction] = {}
        self.pending_end = nonce  # first nonce >= self.nonce not held: pending is [nonce, end)
        self.spent = 0  # sum of compute_cost over txs
        self.n_pending = 0
        self.n_queued = 0
        self.beat = now  # last queued arrival or promotion (the queue's lifetime runs from it)

    def advance(self) -> None:
        """Extend the executable run over held nonces (promotes queued ones a gap hid)."""
        end = self.pending_end
        txs = self.txs
        while end in txs:
            end += 1
        self.pending_end = end

    def queued_nonces(self) -> list[int]:
        end = self.pending_end
        return sorted(n for n in self.txs if n >= end)
