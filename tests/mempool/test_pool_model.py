"""The mempool beside a naive model (STYLE rule 18): every answer, eviction and block must agree.

The model keeps a flat dict of held transactions and recomputes everything by scanning it; the
pool keeps per-sender queues, a lazy eviction heap and incremental counters. Heads advance
nonces and change balances, blocks are built from ``best_transactions`` and executed against
the model's accounts (every selected transaction must be executable and affordable).
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import event, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from moderntensor.chain.transactions import Transaction
from moderntensor.mempool import Mempool, MempoolConfig, MempoolRejected
from tests.mempool.helpers import MIN_BASE_FEE, PARAMS, Accounts, addr, make_tx

SENDERS = 4
BUMP = 10


def cost(tx: Transaction) -> int:
    return tx.gas * tx.max_fee_per_gas + tx.value


class Model:
    """The rules written as plainly as possible, over a flat list of held transactions."""

    def __init__(self, accounts: Accounts, config: MempoolConfig) -> None:
        self.accounts = accounts
        self.config = config
        self.held: dict[bytes, tuple[Transaction, int]] = {}  # hash -> (tx, seq)
        self.seq = 0
        self.now = 0.0
        self.beat: dict[bytes, float] = {}  # sender -> last queued arrival or promotion

    def of(self, sender: bytes) -> dict[int, Transaction]:
        return {tx.nonce: tx for tx, _ in self.held.values() if tx.sender == sender}

    def senders(self) -> set[bytes]:
        return {tx.sender for tx, _ in self.held.values()}

    def pending_end(self, sender: bytes) -> int:
        txs, n = self.of(sender), self.accounts.get_nonce(sender)
        while n in txs:
            n += 1
        return n

    def n_pending(self, sender: bytes) -> int:
        return self.pending_end(sender) - self.accounts.get_nonce(sender)

    def n_queued(self, sender: bytes) -> int:
        return len(self.of(sender)) - self.n_pending(sender)

    def total_pending(self) -> int:
        return sum(self.n_pending(s) for s in self.senders())

    def total_queued(self) -> int:
        return len(self.held) - self.total_pending()

    def largest(self, among: set[bytes], queued: bool = False) -> bytes | None:
        count = self.n_queued if queued else self.n_pending
        return max(among, key=lambda s: (count(s), s), default=None)

    def drop(self, tx: Transaction) -> None:
        del self.held[tx.hash]
        if not self.of(tx.sender):
            self.beat.pop(tx.sender, None)

    def trim(self, sender: bytes) -> None:
        self.drop(self.of(sender)[self.pending_end(sender) - 1])

    def add(self, tx: Transaction) -> str | None:
        """None if admitted, else the start of the expected refusal."""
        config = self.config
        if tx.hash in self.held:
            return "already known"
        if tx.nonce >= 2**64 - 1:
            return "nonce has max value"
        if tx.gas > PARAMS.gas_limit:
            return "exceeds block gas limit"
        if tx.max_fee_per_gas < MIN_BASE_FEE:
            return "max fee per gas less than block base fee"
        if tx.max_priority_fee_per_gas < config.min_tip:
            return "transaction underpriced: gas tip cap"
        sender = tx.sender
        if tx.nonce < self.accounts.get_nonce(sender):
            return "nonce too low"
        mine = self.of(sender)
        others = sum(cost(t) for n, t in mine.items() if n != tx.nonce)
        if others + cost(tx) > self.accounts.get_balance(sender):
            return "insufficient funds for gas * price + value"
        old = mine.get(tx.nonce)
        if not mine:
            self.beat[sender] = self.now
        executable = tx.nonce == self.pending_end(sender)
        if old is not None:
            fee, tip = old.max_fee_per_gas, old.max_priority_fee_per_gas
            if tx.max_fee_per_gas < max(fee * (100 + BUMP) // 100, fee + 1) or (
                tx.max_priority_fee_per_gas < max(tip * (100 + BUMP) // 100, tip + 1)
            ):
                return "replacement transaction underpriced"
            del self.held[old.hash]
        elif executable:
            refused = self.room_for_pending(tx)
            if refused:
                return refused
        else:
            if self.n_queued(sender) >= config.account_queue:
                if tx.nonce > max(mine):
                    return "account limit exceeded"
                self.drop(mine[max(mine)])
            elif self.total_queued() >= config.global_queue:
                victim = self.largest({s for s in self.senders() if self.n_queued(s)}, True)
                if (
                    victim is None
                    or victim == sender
                    or self.n_queued(victim) < self.n_queued(sender) + 2
                ):
                    return "txpool is full"
                theirs = self.of(victim)
                self.drop(theirs[max(theirs)])
            self.beat[sender] = self.now
        self.seq += 1
        self.held[tx.hash] = (tx, self.seq)
        if old is None and executable and self.pending_end(sender) > tx.nonce + 1:
            self.beat[sender] = self.now  # a promotion
        self.truncate(fallback=sender)
        return None if tx.hash in self.held else "txpool is full"

    def room_for_pending(self, tx: Transaction) -> str | None:
        config, sender = self.config, tx.sender
        if self.total_pending() < config.global_slots:
            return None
        mine = self.n_pending(sender)
        above = {s for s in self.senders() - {sender} if self.n_pending(s) > config.account_slots}
        largest = self.largest(above)
        if largest is not None and (
            mine < config.account_slots or self.n_pending(largest) > mine + 1
        ):
            self.trim(largest)
            return None
        if mine >= config.account_slots:
            return "txpool is full"
        eligible = [
            (t.max_fee_per_gas, t.max_priority_fee_per_gas, -seq, t)
            for t, seq in self.held.values()
            if t.sender != sender and t.nonce < self.pending_end(t.sender)
        ]
        if not eligible:
            return "txpool is full"
        fee, tip, _, victim = min(eligible, key=lambda e: e[:3])
        if (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) <= (fee, tip):
            return "transaction underpriced"
        theirs = self.of(victim.sender)
        for n in range(self.pending_end(victim.sender) - 1, victim.nonce - 1, -1):
            self.drop(theirs[n])
        return None

    def truncate(self, fallback: bytes | None) -> None:
        config = self.config
        while self.total_pending() > config.global_slots:
            above = {s for s in self.senders() if self.n_pending(s) > config.account_slots}
            victim = self.largest(above)
            if victim is None:
                if fallback is not None and fallback in self.senders():
                    victim = fallback
                else:
                    victim = self.largest(self.senders())
            if victim is None or self.n_pending(victim) == 0:
                return
            self.trim(victim)

    def expire(self, now: float) -> set[bytes]:
        self.now = max(self.now, now)
        gone = set()
        for sender in self.senders():
            if self.n_queued(sender) and now - self.beat[sender] > self.config.queue_lifetime_s:
                end = self.pending_end(sender)
                for n, tx in self.of(sender).items():
                    if n >= end:
                        gone.add(tx.hash)
                        self.drop(tx)
        return gone

    def on_new_head(self) -> None:
        for sender in self.senders():
            nonce, budget = self.accounts.get_nonce(sender), self.accounts.get_balance(sender)
            broke = False
            for n, tx in sorted(self.of(sender).items()):
                if n >= nonce and not broke and cost(tx) <= budget:
                    budget -= cost(tx)
                    continue
                broke = broke or n >= nonce
                self.drop(tx)
        self.truncate(fallback=None)

    def best(self, base_fee: int, gas_limit: int) -> list[Transaction]:
        seqs = {h: seq for h, (_, seq) in self.held.items()}
        queues = {}
        for sender in self.senders():
            txs, start = self.of(sender), self.accounts.get_nonce(sender)
            queues[sender] = [txs[n] for n in range(start, self.pending_end(sender))]
        out: list[Transaction] = []
        remaining = gas_limit
        while remaining >= 21_000:
            heads = [q[0] for q in queues.values() if q and q[0].max_fee_per_gas >= base_fee]
            if not heads:
                break
            tx = max(
                heads,
                key=lambda t: (
                    min(t.max_priority_fee_per_gas, t.max_fee_per_gas - base_fee),
                    -seqs[t.hash],
                ),
            )
            if tx.gas > remaining:
                queues[tx.sender] = []
                continue
            out.append(tx)
            remaining -= tx.gas
            queues[tx.sender].pop(0)
        return out


fees = st.sampled_from([9, 10, 10, 11, 12, 12, 14, 20, 20, 30])


class PoolMachine(RuleBasedStateMachine):
    """Room for a few senders above their share of pending, and a small queue."""

    CONFIG = MempoolConfig(
        global_slots=6, account_slots=2, global_queue=3, account_queue=2, queue_lifetime_s=50
    )

    def __init__(self) -> None:
        super().__init__()
        self.accounts = Accounts()
        for i in range(SENDERS):
            self.accounts.balances[addr(i)] = 4_000_000
        self.pool = Mempool(PARAMS, self.accounts, MIN_BASE_FEE, self.CONFIG)
        self.model = Model(self.accounts, self.CONFIG)
        self.now = 0.0

    @rule(
        sender=st.integers(0, SENDERS - 1),
        offset=st.integers(-1, 4),
        max_fee=fees,
        tip=st.integers(0, 12),
        value=st.sampled_from([0, 0, 100_000]),
        gas=st.sampled_from([21_000] * 6 + [30_000, PARAMS.gas_limit + 1]),
    )
    def add(self, sender: int, offset: int, max_fee: int, tip: int, value: int, gas: int) -> None:
        nonce = max(self.accounts.get_nonce(addr(sender)) + offset, 0)
        self.check_add(make_tx(sender, nonce, max_fee, min(tip, max_fee), value=value, gas=gas))

    @rule(sender=st.integers(0, SENDERS - 1), max_fee=fees, tip=st.integers(0, 12))
    def add_next(self, sender: int, max_fee: int, tip: int) -> None:
        """The common case: a sender's next nonce, which fills the pool up to its caps."""
        nonce = self.model.pending_end(addr(sender))
        self.check_add(make_tx(sender, nonce, max_fee, min(tip, max_fee)))

    @rule(sender=st.integers(0, SENDERS - 1), gap=st.integers(1, 3), max_fee=fees)
    def add_gapped(self, sender: int, gap: int, max_fee: int) -> None:
        """Behind a nonce gap: fills the queue, which must never touch pending."""
        nonce = self.model.pending_end(addr(sender)) + gap
        self.check_add(make_tx(sender, nonce, max_fee, 1))

    def check_add(self, tx: Transaction) -> None:
        expected = self.model.add(tx)
        event(expected or "admitted")
        try:
            self.pool.add(tx)
        except MempoolRejected as exc:
            assert expected is not None, f"pool refused what the model took: {exc.message}"
            assert exc.message.startswith(expected), (exc.message, expected)
        else:
            assert expected is None, f"pool took what the model refused: {expected}"

    @rule(
        advance=st.lists(st.integers(0, 2), min_size=SENDERS, max_size=SENDERS),
        balances=st.lists(st.integers(0, 5_000_000), min_size=SENDERS, max_size=SENDERS),
        base_fee=st.sampled_from([10, 12, 20]),
    )
    def new_head(self, advance: list[int], balances: list[int], base_fee: int) -> None:
        """A head made elsewhere: nonces move on, balances change arbitrarily."""
        for i in range(SENDERS):
            self.accounts.nonces[addr(i)] = self.accounts.get_nonce(addr(i)) + advance[i]
            self.accounts.balances[addr(i)] = balances[i]
        before = set(self.model.held)
        dropped = self.pool.on_new_head(self.accounts, base_fee)
        self.model.on_new_head()
        assert {tx.hash for tx in dropped} == before - set(self.model.held)

    @rule(
        base_fee=st.sampled_from([10, 11, 15, 20]),
        gas_limit=st.sampled_from([21_000, 42_000, 60_000, 1_000_000]),
        cleanup=st.booleans(),
    )
    def build_block(self, base_fee: int, gas_limit: int, cleanup: bool) -> None:
        best = self.pool.best_transactions(base_fee, gas_limit)
        assert best == self.model.best(base_fee, gas_limit)
        assert sum(tx.gas for tx in best) <= gas_limit
        for tx in best:  # execute as the chain would: nonce in order, fees and value paid
            sender = tx.sender
            assert tx.nonce == self.accounts.get_nonce(sender), "stale or gapped nonce"
            assert tx.max_fee_per_gas >= base_fee
            price = min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)
            balance = self.accounts.get_balance(sender) - 21_000 * price - tx.value
            assert balance >= 0, "selected a transaction its sender cannot pay for"
            self.accounts.balances[sender] = balance
            self.accounts.nonces[sender] = tx.nonce + 1
        if cleanup:
            removed = self.pool.remove_included(best)
            assert set(best) <= set(removed)
        self.pool.on_new_head(self.accounts, base_fee)
        self.model.on_new_head()

    @precondition(lambda self: len(self.model.held) > 0)
    @rule(data=st.data())
    def resubmit_held(self, data: st.DataObject) -> None:
        tx, _ = data.draw(st.sampled_from(sorted(self.model.held.values(), key=lambda e: e[1])))
        assert self.model.add(tx) == "already known"
        try:
            self.pool.add(tx)
        except MempoolRejected as exc:
            assert exc.message == "already known"
        else:
            raise AssertionError("a duplicate was admitted")

    @invariant()
    def same_contents(self) -> None:
        assert {tx.hash for tx in self.pool} == set(self.model.held)
        assert len(self.pool) == len(self.model.held)
        stats = self.pool.statistics()
        pending = 0
        for i in range(SENDERS):
            sender = addr(i)
            end = self.model.pending_end(sender)
            assert self.pool.pending_nonce(sender) == end
            pending += end - self.accounts.get_nonce(sender)
            mine = self.model.of(sender)
            assert sum(cost(t) for t in mine.values()) <= self.accounts.get_balance(sender)
            assert all(n >= self.accounts.get_nonce(sender) for n in mine)
            assert self.model.n_queued(sender) <= self.CONFIG.account_queue
        assert (stats.pending, stats.queued) == (pending, len(self.model.held) - pending)
        assert stats.bytes == sum(len(tx.raw) for tx, _ in self.model.held.values())
        assert stats.pending <= self.CONFIG.global_slots
        assert stats.queued <= self.CONFIG.global_queue
        queued = self.pool.queued()
        for sender, txs in self.pool.pending().items():
            start = self.accounts.get_nonce(sender)
            assert [tx.nonce for tx in txs] == list(range(start, start + len(txs)))
            assert all(tx.nonce > txs[-1].nonce + 1 for tx in queued.get(sender, []))

    @rule(seconds=st.sampled_from([1, 10, 30, 51]))
    def tick(self, seconds: int) -> None:
        """Time passes: queues without news for longer than their lifetime go."""
        self.now += seconds
        dropped = self.pool.expire(self.now)
        assert {tx.hash for tx in dropped} == self.model.expire(self.now)

    @invariant()
    def best_is_consecutive_from_the_account_nonce(self) -> None:
        nxt: dict[bytes, int] = {}
        for tx in self.pool.best_transactions(MIN_BASE_FEE, PARAMS.gas_limit):
            expected = nxt.get(tx.sender, self.accounts.get_nonce(tx.sender))
            assert tx.nonce == expected
            nxt[tx.sender] = expected + 1


class TightPoolMachine(PoolMachine):
    """Pending fills at once (so trimming, price eviction and "txpool is full" happen)."""

    CONFIG = MempoolConfig(
        global_slots=3, account_slots=1, global_queue=2, account_queue=4, queue_lifetime_s=50
    )


# a third of the profile's examples per machine (ci: 50 each), 40 steps: about a second each
_settings = settings(
    max_examples=max(settings.default.max_examples // 3, 5), stateful_step_count=40
)
PoolMachine.TestCase.settings = _settings
TightPoolMachine.TestCase.settings = _settings
TestPoolMachine = PoolMachine.TestCase
TestTightPoolMachine = TightPoolMachine.TestCase
