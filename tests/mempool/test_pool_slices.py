"""The pool's sliced work: block building one step at a time and re-validation a slice at a time.

The node yields to the event loop between steps of :meth:`Mempool.iter_best_transactions`
(every 1024 transactions) and between slices of :meth:`Mempool.revalidate` (256 senders), so
the pool may change under both. A state machine (STYLE rule 18) interleaves iterator steps
with every kind of mutation and checks each transaction at the moment it is yielded: held,
pending, the sender's next nonce after the last one yielded, within the gas limit; an
iteration that saw no mutation must equal a plain re-implementation of the selection rule.
Re-validation in any slicing must leave the pool exactly as ``on_new_head`` does.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import event, given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.transactions import Transaction
from moderntensor.mempool import (
    AccountSnapshot,
    Mempool,
    MempoolConfig,
    MempoolRejected,
    read_accounts,
)
from moderntensor.state.store import Database
from tests.mempool.helpers import MIN_BASE_FEE, PARAMS, Accounts, addr, make_tx
from tests.mempool.test_pool_chain import USERS, VALIDATOR, genesis_doc, next_base_fee, transfer
from tests.mempool.test_pool_model import Model

SENDERS = 5
STRANGER = addr(7)  # never sends anything: revalidating it must be a no-op
BALANCE = 10_000_000  # about 24 21k-gas transactions at max fee 20

fees = st.sampled_from([10, 11, 12, 15, 20, 20, 30])
# a head may leave a sender nothing, a few cheap transactions' worth, or plenty
balances_at_head = st.lists(
    st.sampled_from([0, 300_000, 700_000, BALANCE, BALANCE, BALANCE]),
    min_size=SENDERS,
    max_size=SENDERS,
)
gases = st.sampled_from([21_000] * 5 + [30_000, 100_000])


def cost(tx: Transaction) -> int:
    return tx.gas * tx.max_fee_per_gas + tx.value


def oracle_best(
    pending: Mapping[bytes, list[Transaction]],
    arrival: Mapping[bytes, int],
    base_fee: int,
    gas_limit: int,
    after: Mapping[bytes, int],
) -> list[Transaction]:
    """The selection rule over plain lists: repeatedly take the best head of any sender."""
    queues = {s: [tx for tx in txs if tx.nonce >= after.get(s, 0)] for s, txs in pending.items()}
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
                -arrival[t.hash],
            ),
        )
        if tx.gas > remaining:
            queues[tx.sender] = []  # a sender whose next one does not fit gives nothing more
            continue
        out.append(tx)
        remaining -= tx.gas
        queues[tx.sender].pop(0)
    return out


class SlicedPoolMachine(RuleBasedStateMachine):
    """One block-building iterator at a time, stepped between arbitrary pool mutations."""

    def __init__(self) -> None:
        super().__init__()
        self.accounts = Accounts()
        for i in range(SENDERS):
            self.accounts.balances[addr(i)] = BALANCE
        config = MempoolConfig(global_slots=12, account_slots=3, global_queue=6, account_queue=5)
        self.pool = Mempool(PARAMS, self.accounts, MIN_BASE_FEE, config)
        self.arrival: dict[bytes, int] = {}  # hash -> the pool's arrival order (its seq)
        self.seq = 0
        self.to_revalidate: list[list[bytes]] = []  # slices of a head not yet applied
        self.it: Iterator[Transaction] | None = None
        self.it_base_fee = 0
        self.it_gas_limit = 0
        self.it_after: dict[bytes, int] = {}
        self.it_last: dict[bytes, int] = {}  # sender -> last nonce yielded
        self.it_gas = 0
        self.it_yielded: list[Transaction] = []
        self.it_expected: list[Transaction] = []
        self.it_untouched = True  # no mutation since the iterator was made

    @initialize(
        runs=st.lists(
            st.lists(st.tuples(fees, st.integers(0, 12)), min_size=1, max_size=4),
            min_size=SENDERS,
            max_size=SENDERS,
        )
    )
    def fill(self, runs: list[list[tuple[int, int]]]) -> None:
        """Start with gap-free runs, so that iterations have something to take."""
        for sender, run in enumerate(runs):
            for nonce, (max_fee, tip) in enumerate(run):
                self.try_add(make_tx(sender, nonce, max_fee, min(tip, max_fee)))

    # -- mutations ---------------------------------------------------------------------------

    def mutated(self) -> None:
        self.it_untouched = False

    def try_add(self, tx: Transaction) -> None:
        before = (sorted(t.hash for t in self.pool), self.pool.statistics())
        try:
            self.pool.add(tx)
        except MempoolRejected as exc:
            event(exc.message.split(":")[0])
            # a refusal changes nothing (so an iteration around it may still be "untouched")
            assert (sorted(t.hash for t in self.pool), self.pool.statistics()) == before
            return
        event("admitted")
        self.seq += 1
        self.arrival[tx.hash] = self.seq
        self.mutated()

    @rule(
        sender=st.integers(0, SENDERS - 1),
        offset=st.integers(-1, 4),
        max_fee=fees,
        tip=st.integers(0, 12),
        value=st.sampled_from([0, 0, 100_000]),
        gas=gases,
    )
    def add(self, sender: int, offset: int, max_fee: int, tip: int, value: int, gas: int) -> None:
        nonce = max(self.accounts.get_nonce(addr(sender)) + offset, 0)
        self.try_add(make_tx(sender, nonce, max_fee, min(tip, max_fee), value=value, gas=gas))

    @rule(sender=st.integers(0, SENDERS - 1), max_fee=fees, tip=st.integers(0, 12), gas=gases)
    def add_next(self, sender: int, max_fee: int, tip: int, gas: int) -> None:
        nonce = self.pool.pending_nonce(addr(sender))
        self.try_add(make_tx(sender, nonce, max_fee, min(tip, max_fee), gas=gas))

    @precondition(lambda self: len(self.pool) > 0)
    @rule(data=st.data(), extra=st.integers(0, 5), gas=gases)
    def replace(self, data: st.DataObject, extra: int, gas: int) -> None:
        held = sorted(self.pool, key=lambda t: self.arrival[t.hash])
        old = data.draw(st.sampled_from(held))
        fee, tip = old.max_fee_per_gas, old.max_priority_fee_per_gas
        new_fee = max(fee * 110 // 100, fee + 1) + extra
        new_tip = min(max(tip * 110 // 100, tip + 1), new_fee)
        sender = next(i for i in range(SENDERS) if addr(i) == old.sender)
        self.try_add(make_tx(sender, old.nonce, new_fee, new_tip, gas=gas))

    @rule(
        advance=st.lists(st.integers(0, 2), min_size=SENDERS, max_size=SENDERS),
        balances=balances_at_head,
        base_fee=st.sampled_from([10, 12, 20]),
    )
    def new_head(self, advance: list[int], balances: list[int], base_fee: int) -> None:
        for i in range(SENDERS):
            self.accounts.nonces[addr(i)] = self.accounts.get_nonce(addr(i)) + advance[i]
            self.accounts.balances[addr(i)] = balances[i]
        self.pool.on_new_head(self.accounts, base_fee)
        self.to_revalidate = []
        self.mutated()

    @rule(
        sender=st.integers(0, SENDERS - 1),
        balance=st.sampled_from([0, 300_000, 700_000, BALANCE]),
        base_fee=st.sampled_from([10, 12, 20]),
    )
    def new_balance(self, sender: int, balance: int, base_fee: int) -> None:
        """A head that changed one account only (it spent elsewhere, or was paid)."""
        self.accounts.balances[addr(sender)] = balance
        self.pool.on_new_head(self.accounts, base_fee)
        self.to_revalidate = []
        self.mutated()

    @rule(
        advance=st.lists(st.integers(0, 2), min_size=SENDERS, max_size=SENDERS),
        balances=balances_at_head,
        size=st.integers(1, 3),
    )
    def start_sliced_head(self, advance: list[int], balances: list[int], size: int) -> None:
        """What the mempool service does: read ahead, ``set_head``, then slices later."""
        for i in range(SENDERS):
            self.accounts.nonces[addr(i)] = self.accounts.get_nonce(addr(i)) + advance[i]
            self.accounts.balances[addr(i)] = balances[i]
        senders = self.pool.senders()
        snapshot = AccountSnapshot(read_accounts(self.accounts, senders), self.accounts)
        self.pool.set_head(snapshot, MIN_BASE_FEE)
        self.to_revalidate = [senders[i : i + size] for i in range(0, len(senders), size)]
        self.mutated()

    @precondition(lambda self: self.to_revalidate)
    @rule()
    def revalidate_slice(self) -> None:
        self.pool.revalidate(self.to_revalidate.pop(0))
        self.mutated()

    @rule(sender=st.integers(0, SENDERS - 1), count=st.integers(1, 3))
    def include_pending(self, sender: int, count: int) -> None:
        """A block elsewhere included the first ``count`` pending transactions of a sender."""
        included = self.pool.pending().get(addr(sender), [])[:count]
        if not included:
            return
        self.accounts.nonces[addr(sender)] = max(
            self.accounts.get_nonce(addr(sender)), included[-1].nonce + 1
        )
        removed = self.pool.remove_included(included)
        assert {tx.hash for tx in included} <= {tx.hash for tx in removed}
        self.mutated()

    @precondition(lambda self: self.it_yielded)
    @rule()
    def include_yielded(self) -> None:
        """Our own block so far was committed: what it took is forgotten."""
        for tx in self.it_yielded:
            nonce = self.accounts.get_nonce(tx.sender)
            self.accounts.nonces[tx.sender] = max(nonce, tx.nonce + 1)
        self.pool.remove_included(self.it_yielded)
        assert not any(tx.hash in self.pool for tx in self.it_yielded)
        self.mutated()

    # -- the iterator ------------------------------------------------------------------------

    @rule(
        base_fee=st.sampled_from([12, 15, 20, 25]),
        gas_limit=st.sampled_from([21_000, 50_000, 100_000, 1_000_000, 1_000_000]),
        after=st.dictionaries(st.integers(0, SENDERS - 1), st.integers(0, 3), max_size=2),
    )
    def take(self, base_fee: int, gas_limit: int, after: dict[int, int]) -> None:
        """One step of the block being built; the parameters start a new block if none is."""
        if self.it is None:
            self.start_iteration(base_fee, gas_limit, after)
        assert self.it is not None
        tx = next(self.it, None)
        if tx is None:
            self.finish()
        else:
            self.check_yielded(tx)

    @precondition(lambda self: self.it is not None)
    @rule()
    def abandon(self) -> None:
        """The producer gives up on its block (the slot passed): the next one starts afresh."""
        self.it = None

    def start_iteration(self, base_fee: int, gas_limit: int, after: dict[int, int]) -> None:
        offsets = {addr(i): self.accounts.get_nonce(addr(i)) + d for i, d in after.items()}
        self.it = self.pool.iter_best_transactions(base_fee, gas_limit, offsets or None)
        self.it_base_fee, self.it_gas_limit, self.it_after = base_fee, gas_limit, offsets
        self.it_last, self.it_gas, self.it_yielded = {}, 0, []
        pending = self.pool.pending()
        self.it_expected = oracle_best(pending, self.arrival, base_fee, gas_limit, offsets)
        best = self.pool.best_transactions(base_fee, gas_limit)
        assert best == oracle_best(pending, self.arrival, base_fee, gas_limit, {})
        assert list(self.pool.iter_best_transactions(base_fee, gas_limit, offsets)) == (
            self.it_expected
        )
        self.it_untouched = True

    def check_yielded(self, tx: Transaction) -> None:
        sender = tx.sender
        assert tx.hash in self.pool, "yielded a transaction the pool no longer holds"
        pending = self.pool.pending().get(sender, [])
        assert tx.hash in {t.hash for t in pending}, "yielded a transaction that is not pending"
        last = self.it_last.get(sender)
        if last is not None:
            assert tx.nonce == last + 1, f"nonce {tx.nonce} after {last}: not consecutive"
        elif self.it_untouched:  # a sender's first: where its pending run (or `after`) starts
            assert tx.nonce == max(pending[0].nonce, self.it_after.get(sender, 0))
        assert tx.nonce >= self.it_after.get(sender, 0), "offered a nonce below `after`"
        assert tx.max_fee_per_gas >= self.it_base_fee, "offered below the base fee"
        self.it_last[sender] = tx.nonce
        self.it_gas += tx.gas
        assert self.it_gas <= self.it_gas_limit
        self.it_yielded.append(tx)
        event("yielded after a mutation" if not self.it_untouched else "yielded untouched")

    def finish(self) -> None:
        if self.it_untouched:
            assert self.it_yielded == self.it_expected
            event("iteration finished untouched")
        else:
            event("iteration finished after mutations")
        self.it = None

    @invariant()
    def counters_match_contents(self) -> None:
        pending = self.pool.pending()
        queued = self.pool.queued()
        stats = self.pool.statistics()
        held = {tx.hash for tx in self.pool}
        assert stats.pending == sum(len(v) for v in pending.values())
        assert stats.queued == sum(len(v) for v in queued.values())
        assert {tx.hash for v in [*pending.values(), *queued.values()] for tx in v} == held
        assert set(self.pool.senders()) == {tx.sender for tx in self.pool}


SlicedPoolMachine.TestCase.settings = settings(
    max_examples=max(settings().max_examples // 2, 10), stateful_step_count=50
)
TestSlicedPoolMachine = SlicedPoolMachine.TestCase


# -- slices of re-validation agree with on_new_head ------------------------------------------

tx_specs = st.lists(
    st.tuples(
        st.integers(0, SENDERS - 1),  # sender
        st.integers(0, 6),  # nonce
        fees,
        st.integers(0, 12),  # tip
        st.sampled_from([0, 0, 100_000, 1_000_000]),  # value
    ),
    max_size=25,
)


Spec = tuple[int, int, int, int, int]  # sender, nonce, max fee, tip, value


def spec_tx(spec: Spec) -> Transaction:
    sender, nonce, fee, tip, value = spec
    return make_tx(sender, nonce, fee, min(tip, fee), value=value)


def filled_pool(specs: list[Spec], accounts: Accounts) -> Mempool:
    pool = Mempool(PARAMS, accounts, MIN_BASE_FEE, MempoolConfig(account_queue=8))
    for spec in specs:
        with contextlib.suppress(MempoolRejected):
            pool.add(spec_tx(spec))
    return pool


def contents(pool: Mempool) -> tuple[object, ...]:
    return (
        {a: [tx.hash for tx in txs] for a, txs in pool.pending().items()},
        {a: [tx.hash for tx in txs] for a, txs in pool.queued().items()},
        pool.statistics(),
        [tx.hash for tx in pool],
        pool.senders(),
        [pool.pending_nonce(addr(i)) for i in range(8)],
        pool.base_fee,
    )


@settings(max_examples=max(settings().max_examples, 50))
@given(
    specs=tx_specs,
    advance=st.lists(st.integers(0, 4), min_size=SENDERS, max_size=SENDERS),
    balances=st.lists(st.integers(0, BALANCE), min_size=SENDERS, max_size=SENDERS),
    base_fee=st.sampled_from([10, 13, 20]),
    data=st.data(),
)
def test_revalidate_in_slices_equals_on_new_head(
    specs: list[Spec],
    advance: list[int],
    balances: list[int],
    base_fee: int,
    data: st.DataObject,
) -> None:
    before = Accounts()
    for i in range(SENDERS):
        before.balances[addr(i)] = BALANCE
    whole, sliced = filled_pool(specs, before), filled_pool(specs, before)
    assert contents(whole) == contents(sliced)
    head = Accounts()
    for i in range(SENDERS):
        head.nonces[addr(i)] = advance[i]
        head.balances[addr(i)] = balances[i]

    expected_dropped = whole.on_new_head(head, base_fee)

    senders = sliced.senders()
    # read ahead for some senders only: the rest fall back to the head state itself
    read_ahead = data.draw(st.lists(st.sampled_from([*senders, STRANGER]), unique=True))
    unchanged = contents(sliced)[:5]
    sliced.set_head(AccountSnapshot(read_accounts(head, read_ahead), head), base_fee)
    assert contents(sliced)[:5] == unchanged, "set_head alone must not touch held senders"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(senders)), max_size=4)))
    bounds = [0, *cuts, len(senders)]
    dropped: list[Transaction] = []
    for lo, hi in itertools.pairwise(bounds):
        chunk = senders[lo:hi]
        if data.draw(st.booleans()):
            chunk = [*chunk, STRANGER]  # not held: skipped
        dropped += sliced.revalidate(chunk)
    event(f"{len(bounds) - 1} slices")
    event("dropped some" if dropped else "dropped none")

    assert [tx.hash for tx in dropped] == [tx.hash for tx in expected_dropped]
    assert contents(sliced) == contents(whole)
    # and both are what the plain model of test_pool_model keeps
    model = Model(before, MempoolConfig(account_queue=8))
    for spec in specs:
        model.add(spec_tx(spec))
    model.accounts = head
    model.on_new_head()
    assert {tx.hash for tx in sliced} == set(model.held)
    assert sliced.best_transactions(base_fee, 10**6) == whole.best_transactions(base_fee, 10**6)
    assert sliced.revalidate(sliced.senders()) == [], "a second pass finds nothing to drop"
    assert contents(sliced) == contents(whole)


def test_revalidate_drops_stale_and_unaffordable_per_slice() -> None:
    """The slice boundary is visible in between: re-read senders move, the others wait."""
    accounts = Accounts()
    for i in range(3):
        accounts.balances[addr(i)] = BALANCE
    pool = Mempool(PARAMS, accounts, MIN_BASE_FEE)
    txs = {(s, n): make_tx(s, n) for s in range(3) for n in range(3)}
    for tx in txs.values():
        pool.add(tx)
    head = Accounts()
    head.nonces[addr(0)] = 1  # its nonce 0 was included elsewhere
    head.balances[addr(0)] = BALANCE
    head.balances[addr(1)] = cost(txs[1, 0])  # only its first is still affordable
    head.balances[addr(2)] = BALANCE
    pool.set_head(head, 12)
    assert pool.base_fee == 12
    assert pool.revalidate([addr(0)]) == [txs[0, 0]]
    assert [tx.nonce for tx in pool.pending()[addr(0)]] == [1, 2]
    assert len(pool.pending()[addr(1)]) == 3, "not re-read yet: the previous head's numbers"
    assert pool.revalidate([addr(1), addr(2)]) == [txs[1, 1], txs[1, 2]]
    assert [tx.nonce for tx in pool.pending()[addr(1)]] == [0]
    assert pool.revalidate([addr(0), addr(1), addr(2)]) == []


def test_iterator_skips_what_was_dropped_or_included_between_steps() -> None:
    """Deterministic companions to the state machine: the common mid-block mutations."""
    pool = Mempool(PARAMS, Accounts(), MIN_BASE_FEE)
    a = [make_tx(0, n, 30, 5) for n in range(3)]  # best tip: taken first
    b = [make_tx(1, n, 30, 3) for n in range(3)]
    for tx in [*a, *b]:
        pool.add(tx)
    it = pool.iter_best_transactions(MIN_BASE_FEE, 10**6)
    assert next(it) == a[0]
    pool.remove_included([a[0], a[1]])  # a block elsewhere took a[0] and a[1]
    # a[2] after a[0] would skip a nonce: the sender gives nothing more to this block
    assert next(it) == b[0]
    assert a[2] in pool.pending()[addr(0)]
    head = Accounts()
    head.nonces[addr(0)] = 2
    head.balances[addr(1)] = 0  # b can pay for nothing any more
    assert pool.on_new_head(head, MIN_BASE_FEE) == b
    assert next(it, None) is None
    assert pool.best_transactions(MIN_BASE_FEE, 10**6) == [a[2]]


def test_iterator_never_yields_below_the_base_fee() -> None:
    """A sender dropped mid-block and re-added at the same nonce with a lower fee: the old
    heap entry must not offer the cheaper newcomer (it would take gas the block cannot use)."""
    accounts = Accounts()
    pool = Mempool(PARAMS, accounts, MIN_BASE_FEE)
    first, rich = make_tx(0, 0, 30, 9), make_tx(1, 0, 30, 1)
    pool.add(first)
    pool.add(rich)
    it = pool.iter_best_transactions(20, 10**6)
    assert next(it) == first
    accounts.balances[addr(1)] = 0
    pool.on_new_head(accounts, MIN_BASE_FEE)  # rich dropped
    accounts.balances[addr(1)] = 10**18
    pool.add(make_tx(1, 0, 10, 1))  # same nonce, max fee 10 < 20
    assert next(it, None) is None


def test_iterator_without_mutation_equals_best_transactions() -> None:
    pool = Mempool(PARAMS, Accounts(), MIN_BASE_FEE)
    for s in range(4):
        for n in range(4):
            pool.add(make_tx(s, n, 20 + s, 1 + (n * 3 + s) % 5, gas=21_000 + 1_000 * s))
    for base_fee in (10, 18, 21, 22, 30):
        for gas_limit in (0, 21_000, 100_000, 10**6):
            best = pool.best_transactions(base_fee, gas_limit)
            assert list(pool.iter_best_transactions(base_fee, gas_limit)) == best
            assert sum(tx.gas for tx in best) <= gas_limit


# -- AccountSnapshot and read_accounts --------------------------------------------------------


def test_snapshot_prefers_read_ahead_and_falls_back_to_the_state() -> None:
    state = Accounts(balance=7)
    state.nonces[addr(0)] = 3
    state.nonces[addr(1)] = 9
    snapshot = AccountSnapshot({addr(0): (5, 100)}, state)
    assert (snapshot.get_nonce(addr(0)), snapshot.get_balance(addr(0))) == (5, 100)
    assert (snapshot.get_nonce(addr(1)), snapshot.get_balance(addr(1))) == (9, 7)
    state.nonces[addr(1)] = 10  # the fallback is read live, the read-ahead is not
    state.nonces[addr(0)] = 4
    assert snapshot.get_nonce(addr(1)) == 10
    assert snapshot.get_nonce(addr(0)) == 5
    # a zero nonce and balance read ahead are facts, not misses
    zero = AccountSnapshot({addr(2): (0, 0)}, state)
    assert (zero.get_nonce(addr(2)), zero.get_balance(addr(2))) == (0, 0)


def test_read_accounts_gives_nonce_then_balance_from_a_real_state(tmp_path: Path) -> None:
    with Database.open(tmp_path / "db") as db:
        chain = Chain(db, parse_genesis(genesis_doc()))
        sender, receiver, nobody = USERS[0].address, USERS[1].address, b"\x99" * 20
        tx = transfer(0, 0, 10**9)
        genesis_state = chain.state_at(chain.head)
        pool = Mempool(chain.params, genesis_state, next_base_fee(chain))
        pool.add(tx)
        pool.add(transfer(0, 1, 10**9))
        chain.commit(chain.build_block(chain.head, 1, VALIDATOR, [tx]))
        state = chain.state_at(chain.head)
        accounts = read_accounts(state, [sender, receiver, nobody])
        assert list(accounts) == [sender, receiver, nobody]
        assert accounts[sender] == (1, state.get_balance(sender))
        assert accounts[receiver] == (0, 10**21 + tx.value)
        assert accounts[nobody] == (0, 0)
        assert accounts[sender][1] < 10**21 - tx.value, "the fee was paid"
        assert read_accounts(state, []) == {}
        # a pool re-validated through a snapshot of it drops the included nonce
        snapshot = AccountSnapshot(read_accounts(state, pool.senders()), state)
        assert pool.on_new_head(snapshot, next_base_fee(chain)) == [tx]
        assert pool.pending_nonce(sender) == 2
