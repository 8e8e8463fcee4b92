"""The pool's bookkeeping and its room-making rules (rule 6 of :mod:`._pool`), under
:class:`~._pool.Mempool`: held transactions by hash and by sender, the totals of pending and
queued, the small sets of senders above their share or with a queue, and the lazy eviction
heap. Kept apart from the public surface so that each module stays small."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from moderntensor.chain.execution import ChainParams
from moderntensor.chain.transactions import Transaction
from moderntensor.mempool._accounts import AccountReader
from moderntensor.mempool._config import MempoolConfig, MempoolRejected
from moderntensor.mempool._sender import Sender, compute_cost

__all__ = ["PoolCore"]


class PoolCore:
    """State and the private steps :class:`~._pool.Mempool` is built from."""

    def __init__(
        self,
        params: ChainParams,
        state: AccountReader,
        base_fee: int,
        config: MempoolConfig | None = None,
        now: float = 0.0,
    ) -> None:
        self.params = params
        self.config = config if config is not None else MempoolConfig()
        self.base_fee = base_fee
        self.now = now
        """The latest time given to :meth:`expire` (stamps queued arrivals)."""
        self._state = state
        self._senders: dict[bytes, Sender] = {}
        self._by_hash: dict[bytes, tuple[Transaction, int]] = {}  # hash -> (tx, arrival seq)
        self._heap: list[tuple[int, int, int, bytes]] = []  # (max_fee, tip, -seq, hash), lazy
        self._seq = 0
        self._bytes = 0
        self._pending = 0
        self._queued = 0
        self._above_share: set[bytes] = set()  # senders with more pending than account_slots
        self._with_queue: set[bytes] = set()  # senders with queued transactions
        self._account_slots = self.config.account_slots

    def _full_pending_message(self, sender: Sender) -> str:
        config = self.config
        return (
            f"txpool is full: {self._pending} executable transactions held (global_slots "
            f"{config.global_slots}); this sender holds {sender.n_pending} (account_slots "
            f"{config.account_slots})"
        )

    def _room_for_pending(self, tx: Transaction, address: bytes, sender: Sender) -> None:
        """Make room for one more executable transaction in a full pending section (rule
        6), or refuse it."""
        config = self.config
        mine = sender.n_pending
        largest = self._largest(self._above_share, address)
        if largest is not None and (
            mine < config.account_slots or self._senders[largest].n_pending > mine + 1
        ):
            self._trim_one(largest)
            return
        if mine >= config.account_slots:
            raise MempoolRejected(self._full_pending_message(sender), tx.hash)
        self._evict_cheapest_pending(tx, address, sender)

    def _room_for_queued(self, tx: Transaction, address: bytes, sender: Sender) -> None:
        """Make room for one more gapped transaction (rule 6), or refuse it."""
        config = self.config
        if sender.n_queued >= config.account_queue:
            highest = max(sender.txs)
            if tx.nonce > highest:
                raise MempoolRejected(
                    f"account limit exceeded: {sender.n_queued} queued (nonce-gap) "
                    f"transactions held (account_queue {config.account_queue})",
                    tx.hash,
                )
            self._drop(address, sender, sender.txs[highest])
            self._sync(address, sender)
            return
        if self._queued < config.global_queue:
            return
        largest = self._largest(self._with_queue, None, queued=True)
        if (
            largest is None
            or largest == address
            or (self._senders[largest].n_queued < sender.n_queued + 2)
        ):
            raise MempoolRejected(
                f"txpool is full: {self._queued} queued (nonce-gap) transactions held "
                f"(global_queue {config.global_queue})",
                tx.hash,
            )
        victim = self._senders[largest]
        self._drop(largest, victim, victim.txs[max(victim.txs)])
        self._sync(largest, victim)

    def _largest(
        self, among: Iterable[bytes], skip: bytes | None, *, queued: bool = False
    ) -> bytes | None:
        """The sender in ``among`` (other than ``skip``) holding the most pending (or queued)
        transactions, the highest address among equals (a fixed order, whatever the set's);
        ``among`` is one of the small sets kept for this."""
        best: tuple[int, bytes] | None = None
        senders = self._senders
        for address in among:
            if address == skip:
                continue
            s = senders[address]
            key = (s.n_queued if queued else s.n_pending, address)
            if best is None or key > best:
                best = key
        return best[1] if best is not None else None

    def _trim_one(self, address: bytes) -> None:
        """Drop the highest pending transaction of ``address`` (geth's truncatePending)."""
        sender = self._senders[address]
        self._drop(address, sender, sender.txs[sender.pending_end - 1])
        self._sync(address, sender)

    def _truncate_pending(self, fallback: bytes | None) -> None:
        """Bring pending back to ``global_slots``: senders above their share first, then
        ``fallback`` (the sender whose promotion overfilled the pool), or, with none, the
        largest sender (a head that jumped nonces promoted more than there was room for)."""
        while self._pending > self.config.global_slots:
            victim = self._largest(self._above_share, None)
            if victim is None:
                if fallback is not None and fallback in self._senders:
                    victim = fallback
                else:
                    victim = self._largest(self._senders, None)
            if victim is None or self._senders[victim].n_pending == 0:
                return
            self._trim_one(victim)

    def _evict_cheapest_pending(self, tx: Transaction, address: bytes, sender: Sender) -> None:
        """Make room by evicting the cheapest pending transaction of another sender, and its
        sender's later pending ones (they could not execute without it)."""
        heap = self._heap
        skipped = []
        victim: Transaction | None = None
        while heap:
            entry = heapq.heappop(heap)
            held = self._by_hash.get(entry[3])
            if held is None or held[1] != -entry[2]:
                continue  # stale entry: removed or replaced since
            candidate = held[0]
            owner = self._senders[candidate.sender]
            if candidate.nonce >= owner.pending_end:
                continue  # queued: parked off the heap until promoted (see _promoted)
            skipped.append(entry)
            if candidate.sender == address:
                continue  # never the newcomer's own
            victim = candidate
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        if victim is None:
            raise MempoolRejected(self._full_pending_message(sender), tx.hash)
        offered = (tx.max_fee_per_gas, tx.max_priority_fee_per_gas)
        floor = (victim.max_fee_per_gas, victim.max_priority_fee_per_gas)
        if offered <= floor:
            raise MempoolRejected(
                f"transaction underpriced: pool is full and its cheapest executable "
                f"transaction pays max fee {floor[0]}, tip {floor[1]}",
                tx.hash,
            )
        owner_address = victim.sender
        owner = self._senders[owner_address]
        for n in range(owner.pending_end - 1, victim.nonce - 1, -1):
            self._drop(owner_address, owner, owner.txs[n])
        self._sync(owner_address, owner)

    def _insert(self, sender: Sender, tx: Transaction) -> None:
        seq = self._seq = self._seq + 1
        tx_hash = tx.hash
        self._by_hash[tx_hash] = (tx, seq)
        sender.txs[tx.nonce] = tx
        sender.spent += compute_cost(tx)
        self._bytes += len(tx.raw)
        heap = self._heap
        heapq.heappush(heap, (tx.max_fee_per_gas, tx.max_priority_fee_per_gas, -seq, tx_hash))
        if len(heap) > 2 * len(self._by_hash) + 1024:
            self._rebuild_heap()

    def _promoted(self, sender: Sender, old_end: int) -> None:
        """Put back on the eviction heap the transactions a promotion made pending (an
        eviction parks the queued ones it meets off the heap; duplicates are harmless)."""
        heap, by_hash = self._heap, self._by_hash
        for n in range(max(old_end, sender.nonce), sender.pending_end):
            tx = sender.txs[n]
            seq = by_hash[tx.hash][1]
            heapq.heappush(heap, (tx.max_fee_per_gas, tx.max_priority_fee_per_gas, -seq, tx.hash))

    def _drop(self, address: bytes, sender: Sender, tx: Transaction) -> None:
        """Forget one held transaction (its heap entry goes stale); a gap it opens demotes the
        later ones. The caller then calls :meth:`_sync`."""
        del self._by_hash[tx.hash]
        del sender.txs[tx.nonce]
        sender.spent -= compute_cost(tx)
        self._bytes -= len(tx.raw)
        if sender.nonce <= tx.nonce < sender.pending_end:
            sender.pending_end = tx.nonce

    def _sync(self, address: bytes, sender: Sender) -> None:
        """Bring the totals and the small sets up to date with one sender's change; forget
        an emptied sender. (On every admission and every re-validated sender: the sets are
        touched only when a count crosses its threshold.)"""
        txs = sender.txs
        pending = sender.pending_end - sender.nonce
        queued = len(txs) - pending
        was_pending, was_queued = sender.n_pending, sender.n_queued
        if pending != was_pending:
            self._pending += pending - was_pending
            sender.n_pending = pending
            slots = self._account_slots
            if (pending > slots) != (was_pending > slots):
                if pending > slots:
                    self._above_share.add(address)
                else:
                    self._above_share.discard(address)
        if queued != was_queued:
            self._queued += queued - was_queued
            sender.n_queued = queued
            if not was_queued:
                self._with_queue.add(address)
            elif not queued:
                self._with_queue.discard(address)
        if not txs:
            self._senders.pop(address, None)

    def _rebuild_heap(self) -> None:
        self._heap = [
            (tx.max_fee_per_gas, tx.max_priority_fee_per_gas, -seq, h)
            for h, (tx, seq) in self._by_hash.items()
        ]
        heapq.heapify(self._heap)
