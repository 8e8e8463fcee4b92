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

    def __init__(self, accounts: Accounts, max_total: int, max_per_sender: int) -> None:
        self.accounts = accounts
        self.max_total = max_total
        self.max_per_sender = max_per_sender
        self.held: dict[bytes, tuple[Transaction, int]] = {}  # hash -> (tx, seq)
        self.seq = 0

    def of(self, sender: bytes) -> dict[int, Transaction]:
        return {tx.nonce: tx for tx, _ in self.held.values() if tx.sender == sender}

    def pending_end(self, sender: bytes) -> int:
        txs, n = self.of(sender), self.accounts.get_nonce(sender)
        while n in txs:
            n += 1
        return n

    def add(self, tx: Transaction) -> str | None:
        """None if admitted, else the start of the expected refusal."""
        if tx.hash in self.held:
            return "already known"
        if tx.gas > PARAMS.gas_limit:
            return "exceeds block gas limit"
        if tx.max_fee_per_gas < MIN_BASE_FEE:
            return "max fee per gas less than block base fee"
        sender = tx.sender
        if tx.nonce < self.accounts.get_nonce(sender):
            return "nonce too low"
        mine = self.of(sender)
        others = sum(cost(t) for n, t in mine.items() if n != tx.nonce)
        if others + cost(tx) > self.accounts.get_balance(sender):
            return "insufficient funds for gas * price + value"
        old = mine.get(tx.nonce)
        if old is not None:
            fee, tip = old.max_fee_per_gas, old.max_priority_fee_per_gas
            if tx.max_fee_per_gas < max(fee * (100 + BUMP) // 100, fee + 1) or (
                tx.max_priority_fee_per_gas < max(tip * (100 + BUMP) // 100, tip + 1)
            ):
                return "replacement transaction underpriced"
            del self.held[old.hash]
        elif len(mine) >= self.max_per_sender:
            if tx.nonce > max(mine):
                return "account limit exceeded"
            del self.held[mine[max(mine)].hash]
        elif len(self.held) >= self.max_total:
            eligible = [
                (t.max_fee_per_gas, t.max_priority_fee_per_gas, -seq, t)
                for t, seq in self.held.values()
                if not (t.sender == sender and t.nonce < tx.nonce)
            ]
            if not eligible:
                return "txpool is full"
            fee, tip, _, victim = min(eligible, key=lambda e: e[:3])
            if (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) <= (fee, tip):
                return "transaction underpriced"
            del self.held[victim.hash]
        self.seq += 1
        self.held[tx.hash] = (tx, self.seq)
        return None

    def on_new_head(self) -> None:
        for sender in {tx.sender for tx, _ in self.held.values()}:
            nonce, budget = self.accounts.get_nonce(sender), self.accounts.get_balance(sender)
            broke = False
            for n, tx in sorted(self.of(sender).items()):
                if n >= nonce and not broke and cost(tx) <= budget:
                    budget -= cost(tx)
                    continue
                broke = broke or n >= nonce
                del self.held[tx.hash]

    def best(self, base_fee: int, gas_limit: int) -> list[Transaction]:
        seqs = {h: seq for h, (_, seq) in self.held.items()}
        queues = {}
        for sender in {tx.sender for tx, _ in self.held.values()}:
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
    """Caps where the per-sender limit binds before the global one."""

    MAX_TOTAL = 7
    MAX_PER_SENDER = 3

    def __init__(self) -> None:
        super().__init__()
        self.accounts = Accounts()
        for i in range(SENDERS):
            self.accounts.balances[addr(i)] = 4_000_000
        config = MempoolConfig(max_transactions=self.MAX_TOTAL, max_per_sender=self.MAX_PER_SENDER)
        self.pool = Mempool(PARAMS, self.accounts, MIN_BASE_FEE, config)
        self.model = Model(self.accounts, self.MAX_TOTAL, self.MAX_PER_SENDER)

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
            assert len(mine) <= self.MAX_PER_SENDER
        assert (stats.pending, stats.queued) == (pending, len(self.model.held) - pending)
        assert stats.bytes == sum(len(tx.raw) for tx, _ in self.model.held.values())
        assert len(self.pool) <= self.MAX_TOTAL

    @invariant()
    def best_is_consecutive_from_the_account_nonce(self) -> None:
        nxt: dict[bytes, int] = {}
        for tx in self.pool.best_transactions(MIN_BASE_FEE, PARAMS.gas_limit):
            expected = nxt.get(tx.sender, self.accounts.get_nonce(tx.sender))
            assert tx.nonce == expected
            nxt[tx.sender] = expected + 1


class TightPoolMachine(PoolMachine):
    """Caps where the pool fills before any sender does (so "txpool is full" can happen)."""

    MAX_TOTAL = 3
    MAX_PER_SENDER = 4


# a third of the profile's examples per machine (ci: 50 each), 40 steps: about a second each
_settings = settings(
    max_examples=max(settings.default.max_examples // 3, 5), stateful_step_count=40
)
PoolMachine.TestCase.settings = _settings
TightPoolMachine.TestCase.settings = _settings
TestPoolMachine = PoolMachine.TestCase
TestTightPoolMachine = TightPoolMachine.TestCase
