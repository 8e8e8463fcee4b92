"""The transaction pool: a pure core that admits, orders, evicts and re-validates transactions.

No I/O, no clock: account nonces and balances come in through :class:`AccountReader` (a
``StateDB`` or a dict-backed stub), the base fee and the new head's state are arguments.

Per sender the pool keeps a map nonce -> transaction and two numbers from the head state: the
account nonce and balance. Transactions with nonces ``nonce, nonce+1, ...`` without a gap are
*pending* (executable in order); the rest are *queued* until the gap fills. Rules on entry, in
order (the first broken rule wins, with Ethereum's wording):

1. ``already known`` -- the same hash is held.
2. ``oversized data`` -- the encoding exceeds ``max_tx_size``.
3. Every rule of :func:`~moderntensor.chain.execution.check_transaction` that does not need the
   exact nonce (chain id, creation/data, gas limit, intrinsic gas, fee ordering, max fee below
   the chain's minimum base fee), then ``nonce too low`` and ``insufficient funds for gas *
   price + value``, where the funds are the balance minus what the sender's other held
   transactions may cost (``gas * max_fee + value`` each; a replaced one does not count), so
   the sum over a sender never exceeds its balance (geth's "overdraft" rule).
4. ``replacement transaction underpriced`` -- a same-nonce replacement must raise both the max
   fee and the tip by at least ``price_bump_percent`` (10%, rounded down) and by at least 1.
5. Caps. A sender holding ``max_per_sender`` transactions may only add one below its highest
   nonce, which then drops that highest one (a lower nonce always executes first, so it is the
   more useful of the two); otherwise ``account limit exceeded``. A pool holding
   ``max_transactions`` evicts its cheapest transaction, by ``(max_fee, tip)`` and the newest
   first among equals, but only for a strictly better one (``transaction underpriced``); it
   never evicts the incoming sender's lower nonces (that would strand the newcomer), and when
   nothing else is left it answers ``txpool is full``. An eviction that opens a gap turns the
   sender's later transactions into queued ones.

Block building (:meth:`Mempool.best_transactions`) takes pending transactions by effective tip
``min(tip, max_fee - base_fee)`` across senders, earliest arrival first among equals, nonce
order within a sender, skipping senders whose next transaction does not fit or pays less than
the base fee. On a new head (:meth:`Mempool.on_new_head`) each sender is re-read: stale nonces
are dropped, then, in nonce order, the first transaction the balance no longer covers and all
after it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping

from moderntensor.chain.execution import (
    ChainParams,
    TransactionRejected,
    check_account,
    check_transaction_rules,
)
from moderntensor.chain.transactions import Transaction
from moderntensor.mempool._accounts import AccountReader
from moderntensor.mempool._config import MempoolConfig, MempoolRejected, MempoolStatistics
from moderntensor.state.account import Account

__all__ = ["Mempool"]

_MIN_TX_GAS = 21_000  # no transaction needs less: stop filling a block below this


class _Sender:
    """One sender's held transactions and its account at the current head (mutable, internal)."""

    __slots__ = ("balance", "nonce", "pending_end", "spent", "txs")

    def __init__(self, nonce: int, balance: int) -> None:
        self.nonce = nonce
        self.balance = balance
        self.txs: dict[int, Transaction] = {}
        self.pending_end = nonce  # first nonce >= self.nonce not held: pending is [nonce, end)
        self.spent = 0  # sum of _cost over txs

    def advance(self) -> None:
        end = self.pending_end
        txs = self.txs
        while end in txs:
            end += 1
        self.pending_end = end


def _cost(tx: Transaction) -> int:
    return tx.gas * tx.max_fee_per_gas + tx.value


class Mempool:
    """Valid transactions waiting for a block; not thread-safe (the node serialises access)."""

    def __init__(
        self,
        params: ChainParams,
        state: AccountReader,
        base_fee: int,
        config: MempoolConfig | None = None,
    ) -> None:
        self.params = params
        self.config = config if config is not None else MempoolConfig()
        self.base_fee = base_fee
        self._state = state
        self._senders: dict[bytes, _Sender] = {}
        self._by_hash: dict[bytes, tuple[Transaction, int]] = {}  # hash -> (tx, arrival seq)
        self._heap: list[tuple[int, int, int, bytes]] = []  # (max_fee, tip, -seq, hash), lazy
        self._seq = 0
        self._bytes = 0

    # -- reads -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: bytes) -> Transaction | None:
        entry = self._by_hash.get(tx_hash)
        return entry[0] if entry is not None else None

    def pending_nonce(self, address: bytes) -> int:
        """The nonce a new transaction from ``address`` should use (eth_getTransactionCount
        at "pending"): past the sender's gap-free run, or the account nonce."""
        sender = self._senders.get(address)
        if sender is not None:
            return sender.pending_end
        return self._state.get_nonce(address)

    def statistics(self) -> MempoolStatistics:
        pending = sum(s.pending_end - s.nonce for s in self._senders.values())
        return MempoolStatistics(
            pending=pending,
            queued=len(self._by_hash) - pending,
            senders=len(self._senders),
            bytes=self._bytes,
        )

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
        for address, s in self._senders.items():
            held = sorted(n for n in s.txs if n >= s.pending_end)
            if held:
                out[address] = [s.txs[n] for n in held]
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
        sender = self._senders.get(address)
        if sender is None:
            nonce, balance, spent = (
                self._state.get_nonce(address),
                self._state.get_balance(address),
                0,
            )
        else:
            nonce, balance, spent = sender.nonce, sender.balance, sender.spent
        old = sender.txs.get(tx.nonce) if sender is not None else None
        if old is not None:
            spent -= _cost(old)
        try:
            check_transaction_rules(tx, self.params.min_base_fee, self.params)
            check_account(Account(max(nonce, tx.nonce), max(balance - spent, 0)), tx)
        except TransactionRejected as exc:
            raise MempoolRejected(exc.message, tx_hash) from None
        if sender is None:
            if len(self._by_hash) >= config.max_transactions:
                self._evict_for(tx, address)
        elif old is not None:
            self._check_replacement(old, tx)
            self._remove(address, sender, old)
        elif len(sender.txs) >= config.max_per_sender:
            highest = max(sender.txs)
            if tx.nonce > highest:
                raise MempoolRejected(
                    f"account limit exceeded: {len(sender.txs)} transactions held "
                    f"(max_per_sender {config.max_per_sender})",
                    tx_hash,
                )
            self._remove(address, sender, sender.txs[highest])
        elif len(self._by_hash) >= config.max_transactions:
            self._evict_for(tx, address)
        sender = self._senders.get(address)  # a removal above may have emptied and dropped it
        if sender is None:
            sender = self._senders[address] = _Sender(nonce, balance)
        self._insert(sender, tx)

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

    def _evict_for(self, tx: Transaction, address: bytes) -> None:
        """Make room for ``tx`` in a full pool by dropping the cheapest other transaction."""
        heap = self._heap
        skipped = []
        victim: Transaction | None = None
        while heap:
            entry = heapq.heappop(heap)
            held = self._by_hash.get(entry[3])
            if held is None or held[1] != -entry[2]:
                continue  # stale entry: removed or replaced since
            candidate = held[0]
            skipped.append(entry)
            if candidate.nonce < tx.nonce and candidate.sender == address:
                continue  # evicting it would leave the newcomer behind a gap it made
            victim = candidate
            break
        for entry in skipped:
            heapq.heappush(heap, entry)
        if victim is None:
            raise MempoolRejected("txpool is full", tx.hash)
        offered = (tx.max_fee_per_gas, tx.max_priority_fee_per_gas)
        floor = (victim.max_fee_per_gas, victim.max_priority_fee_per_gas)
        if offered <= floor:
            raise MempoolRejected(
                f"transaction underpriced: pool is full and its cheapest transaction pays "
                f"max fee {floor[0]}, tip {floor[1]}",
                tx.hash,
            )
        victim_sender = victim.sender
        self._remove(victim_sender, self._senders[victim_sender], victim)

    def _insert(self, sender: _Sender, tx: Transaction) -> None:
        seq = self._seq = self._seq + 1
        tx_hash = tx.hash
        self._by_hash[tx_hash] = (tx, seq)
        sender.txs[tx.nonce] = tx
        sender.spent += _cost(tx)
        if tx.nonce == sender.pending_end:
            sender.advance()
        self._bytes += len(tx.raw)
        heap = self._heap
        heapq.heappush(heap, (tx.max_fee_per_gas, tx.max_priority_fee_per_gas, -seq, tx_hash))
        if len(heap) > 2 * len(self._by_hash) + 1024:
            self._rebuild_heap()

    def _remove(self, address: bytes, sender: _Sender, tx: Transaction) -> None:
        """Drop one held transaction (its heap entry goes stale); a gap demotes later ones."""
        del self._by_hash[tx.hash]
        del sender.txs[tx.nonce]
        sender.spent -= _cost(tx)
        self._bytes -= len(tx.raw)
        if sender.nonce <= tx.nonce < sender.pending_end:
            sender.pending_end = tx.nonce
        if not sender.txs:
            del self._senders[address]

    def _rebuild_heap(self) -> None:
        self._heap = [
            (tx.max_fee_per_gas, tx.max_priority_fee_per_gas, -seq, h)
            for h, (tx, seq) in self._by_hash.items()
        ]
        heapq.heapify(self._heap)

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
        dropped: list[Transaction] = []
        for address in addresses:
            sender = self._senders.get(address)
            if sender is None:
                continue
            nonce = state.get_nonce(address)
            balance = state.get_balance(address)
            sender.nonce, sender.balance = nonce, balance
            budget = balance
            gone = []
            for n in sorted(sender.txs):
                tx = sender.txs[n]
                if n < nonce:
                    gone.append(tx)
                    continue
                cost = _cost(tx)
                if cost > budget:
                    budget = -1  # this one and every later one are dropped
                    gone.append(tx)
                    continue
                budget -= cost
            for tx in gone:
                self._drop_quietly(sender, tx)
            dropped += gone
            sender.pending_end = nonce
            sender.advance()
            if not sender.txs:
                del self._senders[address]
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
                self._drop_quietly(sender, tx)
            sender.nonce = nonce
            sender.pending_end = max(sender.pending_end, nonce)
            sender.advance()
            if not sender.txs:
                del self._senders[address]
        return dropped

    def _drop_quietly(self, sender: _Sender, tx: Transaction) -> None:
        del self._by_hash[tx.hash]
        del sender.txs[tx.nonce]
        sender.spent -= _cost(tx)
        self._bytes -= len(tx.raw)

    # -- block building ----------------------------------------------------------------------

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
