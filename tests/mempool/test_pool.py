"""The mempool's rules one by one: each refusal with its wording, queues, caps, heads, ordering."""

from __future__ import annotations

import pytest

import moderntensor.mempool as mempool_pkg
from moderntensor.chain.constants import STAKING_ADDRESS
from moderntensor.chain.execution import TransactionRejected
from moderntensor.mempool import Mempool, MempoolConfig, MempoolRejected, MempoolStatistics
from tests.mempool.helpers import (
    MIN_BASE_FEE,
    PARAMS,
    Accounts,
    addr,
    make_legacy,
    make_tx,
)


def new_pool(accounts: Accounts | None = None, **limits: int) -> Mempool:
    return Mempool(PARAMS, accounts or Accounts(), MIN_BASE_FEE, MempoolConfig(**limits))


def rejected(pool: Mempool, tx: object) -> str:
    with pytest.raises(MempoolRejected) as info:
        pool.add(tx)  # type: ignore[arg-type]
    return info.value.message


def test_exports_each_name_once() -> None:
    names = mempool_pkg.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(mempool_pkg, name).__module__.startswith("moderntensor.mempool._")


def test_rejection_is_a_transaction_rejected_with_the_hash() -> None:
    pool = new_pool()
    tx = make_tx(0, 0)
    pool.add(tx)
    with pytest.raises(TransactionRejected) as info:
        pool.add(tx)
    assert info.value.message == "already known"
    assert info.value.tx_hash == tx.hash


def test_admitted_transaction_is_readable() -> None:
    pool = new_pool()
    tx = make_tx(0, 0)
    pool.add(tx)
    assert tx.hash in pool
    assert pool.get(tx.hash) == tx
    assert len(pool) == 1
    assert list(pool) == [tx]
    assert pool.get(b"\x00" * 32) is None
    assert pool.statistics() == MempoolStatistics(pending=1, queued=0, senders=1, bytes=len(tx.raw))


@pytest.mark.parametrize(
    ("tx", "wording"),
    [
        (make_tx(0, 0, chain_id=1), "invalid chain id: have 1, want 1337"),
        (make_legacy(0, 0, 20, chain_id=None), "only replay-protected (EIP-155)"),
        (make_tx(0, 0, gas=PARAMS.gas_limit + 1), "exceeds block gas limit"),
        (make_tx(0, 0, gas=20_999), "intrinsic gas too low: have 20999, want 21000"),
        (make_tx(0, 0, max_fee=MIN_BASE_FEE - 1, tip=1), "max fee per gas less than block base"),
        (make_tx(0, 0, to=None, gas=100_000), "contract creation is not supported"),
        (make_tx(0, 0, data=b"\x01", gas=30_000), "contract execution is not supported"),
        (make_tx(0, 0, gas=21_000, to=STAKING_ADDRESS), "intrinsic gas too low"),
    ],
)
def test_rules_of_check_transaction(tx: object, wording: str) -> None:
    assert rejected(new_pool(), tx).startswith(wording)


def test_oversized_data() -> None:
    pool = new_pool(max_tx_size=120)
    tx = make_tx(0, 0)
    assert len(tx.raw) <= 120
    pool.add(tx)
    big = make_tx(0, 1, data=b"\x01" * 80, gas=30_000 + 16 * 80, to=STAKING_ADDRESS)
    assert rejected(pool, big).startswith("oversized data: transaction size")


def test_nonce_too_low() -> None:
    accounts = Accounts()
    accounts.nonces[addr(0)] = 3
    message = rejected(new_pool(accounts), make_tx(0, 2))
    assert message == "nonce too low: next nonce 3, tx nonce 2"


def test_insufficient_funds_counts_the_senders_other_transactions() -> None:
    accounts = Accounts()
    accounts.balances[addr(0)] = 21_000 * 20 * 2 + 5  # two transfers at max fee 20, value 0
    pool = new_pool(accounts)
    pool.add(make_tx(0, 0))
    pool.add(make_tx(0, 1))
    message = rejected(pool, make_tx(0, 2))
    assert message == "insufficient funds for gas * price + value: balance 5, tx cost 420000"
    # a value transfer that alone exceeds the balance
    assert rejected(new_pool(accounts), make_tx(0, 0, value=10**18)).startswith(
        "insufficient funds for gas * price + value"
    )
    # a replacement has its predecessor's cost given back: 5 spare wei pay for a raise of 0
    # in max fee, not for one of 2 per gas
    assert rejected(pool, make_tx(0, 1, max_fee=22, tip=3)).startswith("insufficient funds")
    accounts.balances[addr(0)] += 21_000 * 2
    pool.on_new_head(accounts, MIN_BASE_FEE)
    pool.add(make_tx(0, 1, max_fee=22, tip=3))
    assert make_tx(0, 1).hash not in pool


def test_replacement_needs_ten_percent_on_fee_and_tip() -> None:
    pool = new_pool()
    held = make_tx(0, 0, max_fee=100, tip=50)
    pool.add(held)
    for fee, tip in [(109, 55), (110, 54), (100, 51), (200, 50)]:
        message = rejected(pool, make_tx(0, 0, max_fee=fee, tip=tip))
        assert message.startswith("replacement transaction underpriced"), (fee, tip)
    assert pool.get(held.hash) == held
    better = make_tx(0, 0, max_fee=110, tip=55)
    pool.add(better)
    assert held.hash not in pool
    assert pool.get(better.hash) == better
    assert len(pool) == 1
    # tiny fees still need a strict raise (10% of 5 rounds down to nothing)
    pool.add(make_tx(1, 0, max_fee=12, tip=1))
    assert rejected(pool, make_tx(1, 0, max_fee=13, tip=1)).startswith("replacement")
    pool.add(make_tx(1, 0, max_fee=14, tip=2))


def test_gapped_transactions_wait_queued_until_the_gap_fills() -> None:
    pool = new_pool()
    pool.add(make_tx(0, 2))
    pool.add(make_tx(0, 3))
    assert pool.statistics().queued == 2
    assert pool.pending_nonce(addr(0)) == 0
    assert pool.best_transactions(MIN_BASE_FEE, 10**6) == []
    assert pool.queued() == {addr(0): [make_tx(0, 2), make_tx(0, 3)]}
    pool.add(make_tx(0, 0))
    assert pool.statistics().pending == 1
    pool.add(make_tx(0, 1))
    stats = pool.statistics()
    assert (stats.pending, stats.queued) == (4, 0)
    assert pool.pending_nonce(addr(0)) == 4
    assert pool.pending() == {addr(0): [make_tx(0, n) for n in range(4)]}
    assert pool.best_transactions(MIN_BASE_FEE, 10**6) == [make_tx(0, n) for n in range(4)]


def test_pending_nonce_of_an_unknown_sender_is_its_account_nonce() -> None:
    accounts = Accounts()
    accounts.nonces[addr(5)] = 7
    assert new_pool(accounts).pending_nonce(addr(5)) == 7


def test_per_sender_queue_cap() -> None:
    pool = new_pool(account_queue=2)
    for nonce in (0, 2, 3):
        pool.add(make_tx(0, nonce))
    assert rejected(pool, make_tx(0, 4)).startswith("account limit exceeded: 2 queued")
    pool.add(make_tx(0, 1))  # fills the gap: 2 and 3 are promoted, the queue is empty again
    assert pool.pending() == {addr(0): [make_tx(0, n) for n in range(4)]}
    pool.add(make_tx(0, 6))
    pool.add(make_tx(0, 7))
    pool.add(make_tx(0, 5))  # below the highest queued: the highest (7) gives way
    assert make_tx(0, 7).hash not in pool
    assert pool.queued() == {addr(0): [make_tx(0, 5), make_tx(0, 6)]}


def test_full_pending_evicts_the_cheapest_only_for_a_better_one() -> None:
    pool = new_pool(global_slots=3, account_slots=1)
    pool.add(make_tx(0, 0, max_fee=30, tip=3))
    pool.add(make_tx(1, 0, max_fee=20, tip=2))
    pool.add(make_tx(2, 0, max_fee=40, tip=1))
    assert rejected(pool, make_tx(3, 0, max_fee=20, tip=2)).startswith("transaction underpriced")
    assert rejected(pool, make_tx(3, 0, max_fee=19, tip=9)).startswith("transaction underpriced")
    pool.add(make_tx(3, 0, max_fee=20, tip=3))
    assert make_tx(1, 0, max_fee=20, tip=2).hash not in pool
    assert len(pool) == 3


def test_full_pending_never_evicts_the_newcomers_own() -> None:
    pool = new_pool(global_slots=2, account_slots=2)
    pool.add(make_tx(0, 0, max_fee=11, tip=1))
    pool.add(make_tx(0, 1, max_fee=11, tip=1))
    assert rejected(pool, make_tx(0, 2, max_fee=50, tip=5)).startswith("txpool is full")
    pool.add(make_tx(1, 0, max_fee=50, tip=5))  # another sender may push the cheapest out
    assert make_tx(0, 1, max_fee=11, tip=1).hash not in pool  # newest of the two equals


def test_an_evicted_pending_transaction_takes_its_later_ones_with_it() -> None:
    pool = new_pool(global_slots=3, account_slots=3)
    pool.add(make_tx(0, 0, max_fee=30, tip=3))
    pool.add(make_tx(0, 1, max_fee=11, tip=1))
    pool.add(make_tx(0, 2, max_fee=30, tip=3))
    pool.add(make_tx(1, 0, max_fee=30, tip=3))
    stats = pool.statistics()
    assert (stats.pending, stats.queued) == (2, 0)  # nonce 2 could not execute without 1
    assert pool.pending_nonce(addr(0)) == 1
    assert [tx.sender for tx in pool.best_transactions(MIN_BASE_FEE, 10**6)].count(addr(0)) == 1


def test_new_head_drops_stale_and_unaffordable_and_promotes() -> None:
    accounts = Accounts()
    pool = new_pool(accounts)
    for nonce in (0, 1, 2, 4):
        pool.add(make_tx(0, nonce))
    pool.add(make_tx(1, 0))
    pool.add(make_tx(1, 1))
    accounts.nonces[addr(0)] = 2  # 0 and 1 were included
    accounts.balances[addr(1)] = 21_000 * 20  # covers only sender 1's nonce 0
    dropped = pool.on_new_head(accounts, 12)
    assert set(dropped) == {make_tx(0, 0), make_tx(0, 1), make_tx(1, 1)}
    assert pool.base_fee == 12
    assert pool.pending() == {addr(0): [make_tx(0, 2)], addr(1): [make_tx(1, 0)]}
    accounts.nonces[addr(0)] = 4  # nonce 3 came from elsewhere: 4 is now executable
    pool.on_new_head(accounts, 12)
    assert pool.pending()[addr(0)] == [make_tx(0, 4)]
    accounts.nonces[addr(0)] = 5
    accounts.nonces[addr(1)] = 1
    pool.on_new_head(accounts, 12)
    assert len(pool) == 0
    assert pool.statistics() == MempoolStatistics(0, 0, 0, 0)


def test_remove_included() -> None:
    pool = new_pool()
    for nonce in (0, 1, 3):
        pool.add(make_tx(0, nonce))
    other = make_tx(0, 0, max_fee=40, tip=4)  # included elsewhere instead of ours
    dropped = pool.remove_included([other, make_tx(0, 1)])
    assert dropped == [make_tx(0, 0), make_tx(0, 1)]
    assert pool.pending_nonce(addr(0)) == 2
    assert pool.statistics().queued == 1
    assert pool.remove_included([make_tx(0, 2)]) == []
    assert pool.pending() == {addr(0): [make_tx(0, 3)]}


def test_best_transactions_orders_by_effective_tip_and_keeps_nonce_order() -> None:
    pool = new_pool()
    pool.add(make_tx(0, 0, max_fee=100, tip=5))
    pool.add(make_tx(0, 1, max_fee=100, tip=50))
    pool.add(make_tx(1, 0, max_fee=12, tip=12))  # tip 12 but only 2 above base fee 10 ...
    pool.add(make_tx(2, 0, max_fee=100, tip=3))
    best = pool.best_transactions(10, 10**6)
    assert best == [
        make_tx(0, 0, max_fee=100, tip=5),
        make_tx(0, 1, max_fee=100, tip=50),
        make_tx(2, 0, max_fee=100, tip=3),
        make_tx(1, 0, max_fee=12, tip=12),
    ]
    # ... and at base fee 13 it cannot pay at all
    assert make_tx(1, 0, max_fee=12, tip=12) not in pool.best_transactions(13, 10**6)


def test_best_transactions_respects_the_gas_limit() -> None:
    pool = new_pool()
    pool.add(make_tx(0, 0, tip=9, gas=50_000))
    pool.add(make_tx(0, 1, tip=9))
    pool.add(make_tx(1, 0, tip=5))
    pool.add(make_tx(1, 1, tip=5))
    # sender 0 pays best but its first transaction does not fit: it gives way entirely
    assert pool.best_transactions(MIN_BASE_FEE, 40_000) == [make_tx(1, 0, tip=5)]
    assert pool.best_transactions(MIN_BASE_FEE, 71_000) == [
        make_tx(0, 0, tip=9, gas=50_000),
        make_tx(0, 1, tip=9),
    ]
    assert pool.best_transactions(MIN_BASE_FEE, 20_000) == []


def test_config_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="account_slots must be a positive integer"):
        MempoolConfig(account_slots=0)
    with pytest.raises(ValueError, match="min_tip must be a non-negative integer"):
        MempoolConfig(min_tip=-1)


def test_new_head_drops_everything_after_the_first_unaffordable_nonce() -> None:
    accounts = Accounts()
    pool = new_pool(accounts)
    pool.add(make_tx(0, 0, max_fee=30))  # costs 630,000
    pool.add(make_tx(0, 1, max_fee=11))  # costs 231,000
    accounts.balances[addr(0)] = 300_000  # would cover nonce 1 alone, but nonce 0 comes first
    assert pool.on_new_head(accounts, MIN_BASE_FEE) == [
        make_tx(0, 0, max_fee=30),
        make_tx(0, 1, max_fee=11),
    ]
    assert len(pool) == 0
