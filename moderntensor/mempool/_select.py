"""Block building over the pool: pending transactions by effective tip (a mixin of
:class:`~._pool.Mempool`, kept apart so that each module stays small).

Transactions are taken by effective tip ``min(tip, max_fee - base_fee)`` across senders,
earliest arrival first among equals, nonce order within a sender, skipping senders whose next
transaction does not fit or pays less than the base fee.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping

from moderntensor.chain.transactions import Transaction
from moderntensor.mempool._sender import Sender

__all__ = ["Selection"]

_MIN_TX_GAS = 21_000  # no transaction needs less: stop filling a block below this


class Selection:
    """What block building reads of the pool."""

    _senders: dict[bytes, Sender]
    _by_hash: dict[bytes, tuple[Transaction, int]]

    def best_transactions(self, base_fee: int, gas_limit: int) -> list[Transaction]:
        """Pending transactions for a block at ``base_fee``, best effective tip first.

        Within a sender nonce order is kept; a sender whose next transaction pays less than
        ``base_fee`` or no longer fits in ``gas_limit`` (counting each transaction's full gas
        limit) contributes nothing more.
        """
        return list(self.iter_best_transactions(base_fee, gas_limit))

    def iter_best_transactions(
        self, base_fee: int, gas_limit: int, after: Mapping[bytes, int] | None = None
    ) -> Iterator[Transaction]:
        """:meth:`best_transactions`, one at a time.

        The pool may change between two steps (the node yields to the event loop while it
        takes a block's worth): each transaction is checked to be still held, pending and
        paying at least ``base_fee`` when its turn comes. Senders that arrived after the
        first step are not offered; a replacement, or a held sender's next nonce admitted
        meanwhile, may be.

        Args:
            after: per sender, the next nonce after blocks the pool has not seen yet (a
                parent not yet committed): transactions below it are not offered again.
        """
        heap: list[tuple[int, int, int, bytes]] = []
        by_hash = self._by_hash
        for address, sender in self._senders.items():
            start = sender.nonce
            if after is not None:
                start = max(start, after.get(address, 0))
            if start < sender.pending_end:
                tx = sender.txs[start]
                if tx.max_fee_per_gas >= base_fee:
                    tip = min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee)
                    heap.append((-tip, by_hash[tx.hash][1], start, address))
        heapq.heapify(heap)
        remaining = gas_limit
        while heap and remaining >= _MIN_TX_GAS:
            _, _, nonce, address = heapq.heappop(heap)
            held = self._senders.get(address)
            if held is None or not held.nonce <= nonce < held.pending_end:
                continue  # dropped or included since the last step
            tx = held.txs[nonce]
            if tx.max_fee_per_gas < base_fee:
                continue  # replaced or re-added since it was queued here
            if tx.gas > remaining:
                continue
            remaining -= tx.gas
            yield tx
            nonce += 1
            held = self._senders.get(address)
            if held is not None and held.nonce <= nonce < held.pending_end:
                tx = held.txs[nonce]
                if tx.max_fee_per_gas >= base_fee:
                    tip = min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee)
                    heapq.heappush(heap, (-tip, by_hash[tx.hash][1], nonce, address))
