"""The transaction pool: a pure core that admits, orders, evicts and re-validates transactions.

No I/O, no clock: account nonces and balances come in through :class:`AccountReader` (a
``StateDB`` or a dict-backed stub); the base fee, the new head's state and the time (for the
queue's lifetime, :meth:`Mempool.expire`) are arguments.

Per sender the pool keeps a map nonce -> transaction and two numbers from the head state: the
account nonce and balance. Transactions with nonces ``nonce, nonce+1, ...`` without a gap are
*pending* (executable in order); the rest are *queued* until the gap fills, when they are
promoted. The two are limited apart, in geth's shape (``MempoolConfig``): pending by
``global_slots`` in all, with ``account_slots`` guaranteed to each sender; queued by
``account_queue`` per sender and ``global_queue`` in all, with a lifetime. Queued transactions
only ever compete with queued ones, so junk that can never execute cannot crowd out, evict or
price out transactions that can.

Rules on entry, in order (the first broken rule wins, with Ethereum's wording):

1. ``already known`` -- the same hash is held.
2. ``oversized data`` -- the encoding exceeds ``max_tx_size``.
3. ``nonce has max value`` -- the nonce is 2**64 - 1 (EIP-2681: it could never be followed).
4. Every rule of :func:`~moderntensor.chain.execution.check_transaction` that does not need the
   exact nonce (chain id, creation/data, gas limit, intrinsic gas, fee ordering, max fee below
   the chain's minimum base fee), then ``transaction underpriced`` for a tip below ``min_tip``,
   ``nonce too low`` and ``insufficient funds for gas * price + value``, where the funds are
   the balance minus what the sender's other held transactions may cost (``gas * max_fee +
   value`` each; a replaced one does not count), so the sum over a sender never exceeds its
   balance (geth's "overdraft" rule).
5. ``replacement transaction underpriced`` -- a same-nonce replacement must raise both the max
   fee and the tip by at least ``price_bump_percent`` (10%, rounded down) and by at least 1.
6. Room. A *queued* newcomer: a sender holding ``account_queue`` queued ones may only add one
   below its highest, which then drops that highest (``account limit exceeded`` otherwise);
   with ``global_queue`` queued in all, the sender holding the most queued ones loses its
   highest, provided it holds at least two more than the newcomer's sender (``txpool is full``
   otherwise). An *executable* newcomer (it extends its sender's run, promoting what it
   unblocks): with ``global_slots`` pending in all, the senders above ``account_slots`` are
   trimmed first, the largest first, from their highest nonce (geth's ``truncatePending``)
   and never below ``account_slots``; a newcomer whose sender is at or above its share gets in
   only by trimming a sender holding at least two more. When nobody is above its share, the
   cheapest pending transaction of another sender, by ``(max_fee, tip)`` and the newest first
   among equals, is evicted for a strictly better newcomer (``transaction underpriced``
   otherwise), together with its sender's later pending ones (they could not execute). So at
   every step pending <= ``global_slots`` and queued <= ``global_queue``.

A sender's queued transactions expire ``queue_lifetime_s`` after its last queued arrival or
promotion (:meth:`Mempool.expire`, time as argument).

Block building (:meth:`Mempool.best_transactions`, in :mod:`._select`) takes pending
transactions by effective tip. On a new head (:meth:`Mempool.on_new_head`) each sender is
re-read: stale nonces are dropped, then, in nonce order, the first transaction the balance no
longer covers and all after it; a head that closes a gap (nonces included from elsewhere) may
promote more than there is room for, and the largest senders are then trimmed as in rule 6
(at the end of each :meth:`Mempool.revalidate` slice).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from moderntensor.chain.execution import (
    TransactionRejected,
    check_sender,
    check_transaction_rules,
)
from moderntensor.chain.transactions import Transaction
from moderntensor.mempool._accounts import AccountReader
from moderntensor.mempool._config import MempoolRejected, MempoolStatistics
from moderntensor.mempool._core import PoolCore
from moderntensor.mempool._select import Selection
from moderntensor.mempool._sender import Sender, compute_cost

__all__ = ["Mempool"]

NONCE_MAX = 2**64 - 1
"""EIP-2681: an account nonce never reaches this, so no transaction may carry it."""


class Mempool(PoolCore, Selection):
    """Valid transactions waiting for a block; not thread-safe (the node serialises access)."""

    # -- reads -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: bytes) -> Transaction | None:
        entry = self._by_hash.get(tx_hash)
        return entry[0] if entry is not None else None

    @property
    def min_tip(self) -> int:
        return self.config.min_tip

    def pending_nonce(self, address: bytes) -> int:
        """The nonce a new transaction from ``address`` should use (eth_getTransactionCount
        at "pending"): past the sender's gap-free run, or the account nonce."""
        sender = self._senders.get(address)
        if sender is not None:
            return sender.pending_end
        return self._state.get_nonce(address)

    def statistics(self) -> MempoolStatistics:
        return MempoolStatistics(
            pending=self._pending, queued=self._queued, senders=len(self._senders),
            bytes=self._bytes,
        )  # fmt: skip

    def pending(self) -> dict[bytes, list[Transaction]]:
        """Executable transactions by sender, in nonce order (txpool_content)."""
        return {
            address: [s.txs[n] for n in range(s.nonce, s.pending_end)]
            for address, s in self._senders.items()
            if s.pending_end > s.nonce
        }

    def queued(self) -> dict[bytes, list[Transaction]]:
        """Transactions behind a nonce gap, by sender, in nonce order (txpool_content)."""
        out = {}
        for address in self._with_queue:
            s = self._senders[address]
            out[address] = [s.txs[n] for n in s.queued_nonces()]
        return out

    def senders(self) -> list[bytes]:
        """Addresses with transactions held (whose accounts :meth:`on_new_head` reads)."""
        return list(self._senders)

    def __iter__(self) -> Iterator[Transaction]:
        return (tx for tx, _ in list(self._by_hash.values()))

    # -- admission ---------------------------------------------------------------------------

    def add(self, tx: Transaction) -> None:
        """Admit a decoded (signature-checked) transaction.

        Raises:
            MempoolRejected: the first rule broken (see the module docstring for the rules
                and their order).
        """
        tx_hash = tx.hash
        if tx_hash in self._by_hash:
            raise MempoolRejected("already known", tx_hash)
        config = self.config
        if len(tx.raw) > config.max_tx_size:
            raise MempoolRejected(
                f"oversized data: transaction size {len(tx.raw)}, limit {config.max_tx_size}",
                tx_hash,
            )
        address = tx.sender
        nonce = tx.nonce
        if nonce >= NONCE_MAX:
            raise MempoolRejected(
                f"nonce has max value: address 0x{address.hex()}, nonce: {nonce}", tx_hash
            )
        sender = self._senders.get(address)
        if sender is None:
            sender = Sender(self._state.get_nonce(address), self._state.get_balance(address),
                            self.now)  # fmt: skip
            old = None
            spent = 0
        else:
            old = sender.txs.get(nonce)
            spent = sender.spent if old is None else sender.spent - compute_cost(old)
        params = self.params
        try:
            check_transaction_rules(tx, params.min_base_fee, params)
            if tx.max_priority_fee_per_gas < config.min_tip:
                raise TransactionRejected(
                    f"transaction underpriced: gas tip cap {tx.max_priority_fee_per_gas}, "
                    f"minimum needed {config.min_tip}",
                    tx_hash,
                )
            balance = sender.balance - spent
            check_sender(max(sender.nonce, nonce), balance if balance > 0 else 0, tx)
        except TransactionRejected as exc:
            raise MempoolRejected(exc.message, tx_hash) from None
        if old is not None:
            self._check_replacement(old, tx)
            self._drop(address, sender, old)
        elif nonce == sender.pending_end:
            if self._pending >= config.global_slots:
                self._room_for_pending(tx, address, sender)
        else:
            if sender.n_queued >= config.account_queue or self._queued >= config.global_queue:
                self._room_for_queued(tx, address, sender)
            sender.beat = self.now
        self._senders[address] = sender  # a removal above may have dropped it
        self._insert(sender, tx)
        txs = sender.txs
        if old is not None:  # the counts are the old ones' (their place is taken again)
            if nonce == sender.pending_end:
                sender.advance()
            self._sync(address, sender)
        elif nonce != sender.pending_end:  # one more queued: the counters directly
            sender.n_queued += 1
            self._queued += 1
            if sender.n_queued == 1:
                self._with_queue.add(address)
        elif nonce + 1 in txs:  # it fills a gap: promotions
            sender.advance()
            sender.beat = self.now
            self._promoted(sender, nonce + 1)
            self._sync(address, sender)
        else:  # one more pending: the counters directly
            sender.pending_end = nonce + 1
            sender.n_pending += 1
            self._pending += 1
            if sender.n_pending == self._account_slots + 1:
                self._above_share.add(address)
        if self._pending > config.global_slots:  # a promotion overfilled it
            self._truncate_pending(fallback=address)
            if tx_hash not in self._by_hash:
                raise MempoolRejected(self._full_pending_message(sender), tx_hash)

    def _check_replacement(self, old: Transaction, tx: Transaction) -> None:
        bump = 100 + self.config.price_bump_percent
        # as geth: strictly more than the held one, and at least the bumped threshold
        need_fee = max(old.max_fee_per_gas * bump // 100, old.max_fee_per_gas + 1)
        need_tip = max(old.max_priority_fee_per_gas * bump // 100, old.max_priority_fee_per_gas + 1)
        if tx.max_fee_per_gas < need_fee or tx.max_priority_fee_per_gas < need_tip:
            raise MempoolRejected(
                f"replacement transaction underpriced: needs max fee >= {need_fee} and tip "
                f">= {need_tip} ({self.config.price_bump_percent}% above the held one)",
                tx.hash,
            )

    # -- time ----------------------------------------------------------------------------------

    def expire(self, now: float) -> list[Transaction]:
        """Advance the pool's time to ``now`` and drop the queued transactions of senders whose
        queue saw no arrival or promotion for ``queue_lifetime_s``.

        Returns:
            The transactions dropped.
        """
        self.now = max(self.now, now)
        lifetime = self.config.queue_lifetime_s
        dropped: list[Transaction] = []
        for address in [a for a in self._with_queue if now - self._senders[a].beat > lifetime]:
            sender = self._senders[address]
            for n in sender.queued_nonces():
                tx = sender.txs[n]
                self._drop(address, sender, tx)
                dropped.append(tx)
            self._sync(address, sender)
        return dropped

    # -- new heads ---------------------------------------------------------------------------

    def on_new_head(self, state: AccountReader, base_fee: int) -> list[Transaction]:
        """Re-validate every held sender against the state of a new head block.

        Drops transactions whose nonce the account has passed (included, or replaced by an
        included one) and, per sender in nonce order, the first one the balance no longer
        covers together with all after it; promotes queued ones whose gap the head closed.
        The same as :meth:`set_head` then :meth:`revalidate` over :meth:`senders`, which the
        node does in slices so that a large pool never holds the event loop for long.

        Returns:
            The transactions dropped, lowest nonce first per sender.
        """
        self.set_head(state, base_fee)
        return self.revalidate(list(self._senders))

    def set_head(self, state: AccountReader, base_fee: int) -> None:
        """Read accounts from ``state`` from now on; senders already held keep the numbers
        of the previous head until :meth:`revalidate` re-reads them."""
        self._state = state
        self.base_fee = base_fee

    def revalidate(self, addresses: Iterable[bytes]) -> list[Transaction]:
        """Re-read these senders' accounts from the current head state (see
        :meth:`on_new_head`); addresses the pool no longer holds are skipped.

        Returns:
            The transactions dropped, lowest nonce first per sender.
        """
        state = self._state
        drop = self._drop
        dropped: list[Transaction] = []
        for address in addresses:
            sender = self._senders.get(address)
            if sender is None:
                continue
            nonce = state.get_nonce(address)
            balance = state.get_balance(address)
            txs = sender.txs
            if nonce == sender.nonce and sender.spent <= balance:
                sender.balance = balance  # the common case: nothing stale, all affordable
                continue
            old_end = sender.pending_end
            gone: list[Transaction] = []
            if nonce > sender.nonce:  # stale: the lowest ones, included (or replaced) elsewhere
                stale = range(sender.nonce, nonce)
                for n in stale if len(stale) <= len(txs) else sorted(txs):
                    if n >= nonce:
                        break
                    if n in txs:
                        gone.append(txs[n])
                for tx in gone:
                    drop(address, sender, tx)
            if sender.spent > balance:  # from the first unaffordable one on, all go
                budget = balance
                cut = len(gone)
                for n in sorted(txs):
                    tx = txs[n]
                    cost = tx.gas * tx.max_fee_per_gas + tx.value
                    if cost > budget:
                        budget = -1
                        gone.append(tx)
                    else:
                        budget -= cost
                for tx in gone[cut:]:
                    drop(address, sender, tx)
            dropped += gone
            sender.nonce, sender.balance = nonce, balance
            sender.pending_end = nonce
            sender.advance()
            if old_end < nonce:
                old_end = nonce
            if sender.pending_end > old_end:  # a head that closed a gap
                self._promoted(sender, old_end)
            self._sync(address, sender)
        if self._pending > self.config.global_slots:
            self._truncate_pending(fallback=None)
        return dropped

    def remove_included(self, txs: Iterable[Transaction]) -> list[Transaction]:
        """Forget transactions a block included, and any other ones they made stale.

        Cheaper than :meth:`on_new_head` (no state reads); balances stay those of the last
        head until the next :meth:`on_new_head`, which the node calls after every block.

        Returns:
            The pool's transactions dropped (included or with a now-stale nonce).
        """
        dropped: list[Transaction] = []
        for included in txs:
            address = included.sender
            sender = self._senders.get(address)
            if sender is None:
                continue
            nonce = included.nonce + 1
            if nonce <= sender.nonce:
                continue
            for n in sorted(sender.txs):
                if n >= nonce:
                    break
                tx = sender.txs[n]
                dropped.append(tx)
                self._drop(address, sender, tx)
            old_end = sender.pending_end
            sender.nonce = nonce
            sender.pending_end = max(sender.pending_end, nonce)
            sender.advance()
            if sender.pending_end > max(old_end, nonce):
                self._promoted(sender, max(old_end, nonce))
            self._sync(address, sender)
        if self._pending > self.config.global_slots:
            self._truncate_pending(fallback=None)
        return dropped
