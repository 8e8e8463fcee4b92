"""The pool's geth-shaped limits: a pending section shared fairly, a queue of its own.

Each test names the attack or workload it stands for (docs/mempool.md): a queue jam by many
funded keys, one account sending thousands of consecutive nonces, a full pool trimmed back to
each sender's share, queued transactions that expire, EIP-2681's last nonce.
"""

from __future__ import annotations

import functools

import pytest

from moderntensor.chain.transactions import DynamicFeeTransaction, Transaction, sign_transaction
from moderntensor.crypto import PrivateKey
from moderntensor.mempool import DEV_MEMPOOL, Mempool, MempoolConfig, MempoolRejected
from tests.mempool.helpers import CHAIN_ID, MIN_BASE_FEE, PARAMS, TO, Accounts, addr, make_tx


def rejected(pool: Mempool, tx: Transaction) -> str:
    with pytest.raises(MempoolRejected) as info:
        pool.add(tx)
    return info.value.message


@functools.cache
def key(i: int) -> PrivateKey:
    return PrivateKey((1000 + i).to_bytes(32, "big"))


def signed(i: int, nonce: int, max_fee: int = 20, tip: int = 2) -> Transaction:
    tx = DynamicFeeTransaction(
        chain_id=CHAIN_ID, nonce=nonce, max_priority_fee_per_gas=tip, max_fee_per_gas=max_fee,
        gas=21_000, to=TO, value=0,
    )  # fmt: skip
    return sign_transaction(tx, key(i))


def test_a_queue_jam_by_100_keys_never_keeps_executable_transactions_out() -> None:
    """100 funded keys x 64 gapped transactions at a high price (the review's H2): the queue
    holds at most ``global_queue`` of them, evicts nothing executable, and honest senders at
    a tenth of the attacker's price, and at the minimum, still get in."""
    pool = Mempool(PARAMS, Accounts(balance=10**18), MIN_BASE_FEE, MempoolConfig())
    honest_early = [make_tx(s, 0, max_fee=MIN_BASE_FEE, tip=1) for s in range(4)]
    for tx in honest_early:
        pool.add(tx)
    refusals: dict[str, int] = {}
    for attacker in range(100):
        for nonce in range(1, 65):  # nonce 0 never sent: every one is behind a gap
            try:
                pool.add(signed(attacker, nonce, max_fee=5_000, tip=500))
            except MempoolRejected as exc:
                reason = exc.message.split(":")[0]
                refusals[reason] = refusals.get(reason, 0) + 1
    stats = pool.statistics()
    assert stats.queued == MempoolConfig().global_queue == 1024
    assert set(refusals) == {"txpool is full"}  # refused, or admitted and later trimmed
    assert refusals["txpool is full"] <= 100 * 64 - 1024
    assert all(tx.hash in pool for tx in honest_early), "queued junk evicted executable ones"
    honest_late = [make_tx(s, 0, max_fee=MIN_BASE_FEE, tip=1) for s in range(4, 8)]
    for tx in honest_late:
        pool.add(tx)
    block = pool.best_transactions(MIN_BASE_FEE, PARAMS.gas_limit)
    assert {tx.hash for tx in block} == {tx.hash for tx in honest_early + honest_late}
    # the queue is shared fairly: no attacker holds much more than another
    held = [len(txs) for txs in pool.queued().values()]
    assert max(held) - min(held) <= 1


def test_one_sender_may_send_2000_consecutive_nonces_while_there_is_room() -> None:
    """A load test or an Anvil user: one account, 2,000 nonces in a row, default limits."""
    pool = Mempool(PARAMS, Accounts(balance=10**18), MIN_BASE_FEE, MempoolConfig())
    txs = [make_tx(0, n) for n in range(2000)]
    for tx in txs:
        pool.add(tx)
    assert pool.statistics().pending == 2000
    assert pool.pending_nonce(addr(0)) == 2000
    block = pool.best_transactions(MIN_BASE_FEE, PARAMS.gas_limit)
    assert block == txs[: PARAMS.gas_limit // 21_000]


def test_a_full_pool_trims_senders_above_their_share_first_never_below_it() -> None:
    config = MempoolConfig(global_slots=40, account_slots=4)
    pool = Mempool(PARAMS, Accounts(balance=10**18), MIN_BASE_FEE, config)
    for n in range(25):
        pool.add(make_tx(0, n))
    for n in range(15):
        pool.add(make_tx(1, n))
    assert pool.statistics().pending == 40
    # a newcomer within its share gets in; the largest sender gives up its highest nonce
    pool.add(make_tx(2, 0))
    assert pool.pending_nonce(addr(0)) == 24
    for n in range(1, 4):
        pool.add(make_tx(2, n))
    assert [pool.pending_nonce(addr(i)) for i in range(3)] == [21, 15, 4]
    # a sender at its share may still grow by trimming one holding two more than it
    pool.add(make_tx(2, 4))
    assert [pool.pending_nonce(addr(i)) for i in range(3)] == [20, 15, 5]
    # fill with senders at their share: the two large ones are trimmed down to it, no further
    for sender in range(3, 8):
        for n in range(4):
            pool.add(make_tx(sender, n))
    counts = {a: len(txs) for a, txs in pool.pending().items()}
    assert sum(counts.values()) == 40
    assert all(c >= 4 for c in counts.values())
    # everyone at or near its share and the pool full: a sender above it cannot grow
    assert rejected(pool, make_tx(0, counts[addr(0)])).startswith("txpool is full")


def test_gapped_transactions_never_crowd_out_executable_ones() -> None:
    config = MempoolConfig(global_slots=4, account_slots=1, global_queue=3, account_queue=2)
    pool = Mempool(PARAMS, Accounts(balance=10**18), MIN_BASE_FEE, config)
    for sender in range(3):
        pool.add(make_tx(sender, 5, max_fee=1000, tip=100))  # queued, well paid
    assert rejected(pool, make_tx(4, 5, max_fee=1000, tip=100)).startswith("txpool is full")
    for sender in range(4, 8):  # executable, at the minimum: all of them admitted
        pool.add(make_tx(sender, 0, max_fee=MIN_BASE_FEE, tip=1))
    assert (pool.statistics().pending, pool.statistics().queued) == (4, 3)


def test_a_queued_transaction_is_promoted_when_its_gap_fills() -> None:
    pool = Mempool(PARAMS, Accounts(), MIN_BASE_FEE, MempoolConfig())
    pool.add(make_tx(0, 0))
    pool.add(make_tx(0, 2))
    pool.add(make_tx(0, 3))
    assert (pool.statistics().pending, pool.statistics().queued) == (1, 2)
    pool.add(make_tx(0, 1))
    assert (pool.statistics().pending, pool.statistics().queued) == (4, 0)
    assert [tx.nonce for tx in pool.best_transactions(MIN_BASE_FEE, 10**6)] == [0, 1, 2, 3]


def test_queued_transactions_expire_after_their_lifetime() -> None:
    config = MempoolConfig(queue_lifetime_s=100)
    pool = Mempool(PARAMS, Accounts(), MIN_BASE_FEE, config, now=1000.0)
    pool.add(make_tx(0, 0))
    pool.add(make_tx(0, 5))
    pool.add(make_tx(1, 3))
    assert pool.expire(1050.0) == []
    pool.add(make_tx(1, 4))  # a new queued arrival restarts sender 1's clock
    assert pool.expire(1100.0) == []
    assert pool.expire(1100.5) == [make_tx(0, 5)]
    assert make_tx(0, 0).hash in pool, "pending ones never expire"
    assert pool.expire(1150.5) == [make_tx(1, 3), make_tx(1, 4)]
    assert (pool.statistics().pending, pool.statistics().queued) == (1, 0)


def test_a_promotion_restarts_the_queue_lifetime() -> None:
    config = MempoolConfig(queue_lifetime_s=100)
    pool = Mempool(PARAMS, Accounts(), MIN_BASE_FEE, config, now=0.0)
    pool.add(make_tx(0, 1))
    pool.add(make_tx(0, 4))
    pool.expire(90.0)
    pool.add(make_tx(0, 0))  # promotes nonce 1; nonce 4 is still queued, its clock restarted
    assert pool.expire(150.0) == []
    assert pool.expire(190.5) == [make_tx(0, 4)]


def test_nonce_max_value_is_refused_eip_2681() -> None:
    pool = Mempool(PARAMS, Accounts(), MIN_BASE_FEE, MempoolConfig())
    message = rejected(pool, make_tx(0, 2**64 - 1))
    assert message == f"nonce has max value: address 0x{addr(0).hex()}, nonce: {2**64 - 1}"
    pool.add(make_tx(0, 2**64 - 2))  # the one below is merely queued
    assert pool.statistics().queued == 1


def test_tips_below_the_minimum_are_refused() -> None:
    pool = Mempool(PARAMS, Accounts(), MIN_BASE_FEE, MempoolConfig(min_tip=3))
    assert rejected(pool, make_tx(0, 0, tip=2)) == (
        "transaction underpriced: gas tip cap 2, minimum needed 3"
    )
    pool.add(make_tx(0, 0, tip=3))
    dev = Mempool(PARAMS, Accounts(), MIN_BASE_FEE, DEV_MEMPOOL)
    dev.add(make_tx(0, 0, tip=0))  # --dev takes any tip, as Anvil does
