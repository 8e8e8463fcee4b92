"""The account index's bounds and its reorganisation handling, on digests built by hand."""

from __future__ import annotations

import random

from moderntensor.explorer import AccountIndex
from moderntensor.explorer._index import BlockDigest, IndexedTx

A = b"\xaa" * 20
B = b"\xbb" * 20
C = b"\xcc" * 20


def _hash(number: int, fork: int = 0) -> bytes:
    return bytes([fork]) + number.to_bytes(31, "big")


def _chain(
    low: int, high: int, txs: int = 1, fork: int = 0, base_fork: int = 0
) -> list[BlockDigest]:
    """Blocks ``high`` down to ``low`` (newest first, as the walk reads them); block ``low``'s
    parent is on ``base_fork``."""
    out = []
    for n in range(high, low - 1, -1):
        parent = _hash(n - 1, base_fork if n == low else fork)
        items = tuple(
            IndexedTx(bytes([fork, i]) + n.to_bytes(30, "big"), A, B if i % 2 == 0 else C, n, i)
            for i in range(txs)
        )
        out.append(BlockDigest(n, _hash(n, fork), parent, 1_700_000_000 + n, items))
    return out


def test_lookup_is_newest_first_and_limited() -> None:
    index = AccountIndex(max_blocks=100, max_transactions=1000)
    index.add_newer(_chain(1, 10, txs=2))
    to_b = index.lookup(B, 3)
    assert [(t["blockNumber"], t["index"]) for t in to_b] == [(10, 0), (9, 0), (8, 0)]
    assert len(index.lookup(A, 100)) == 20  # the sender of every one
    assert index.lookup(b"\x01" * 20, 10) == []
    assert [t["blockNumber"] for t in index.recent(3)] == [10, 10, 9]


def test_blocks_and_transactions_are_bounded() -> None:
    index = AccountIndex(max_blocks=5, max_transactions=1000)
    index.add_newer(_chain(1, 12))
    assert len(index) == 5 and index.coverage()["fromBlock"] == 8
    index = AccountIndex(max_blocks=100, max_transactions=7)
    index.add_newer(_chain(1, 12, txs=2))
    assert index.transactions <= 7 and index.coverage()["toBlock"] == 12
    assert not index.wants_older()


def test_backfill_extends_downwards_within_the_bounds() -> None:
    index = AccountIndex(max_blocks=8, max_transactions=1000)
    index.add_newer(_chain(20, 24))
    assert index.wants_older()
    index.add_older(_chain(10, 19))  # more than fits: the newest of them are kept
    assert index.coverage()["fromBlock"] == 17 and len(index) == 8
    index.add_older(_chain(1, 5))  # not below the lowest: ignored
    assert len(index) == 8


def test_a_reorganisation_replaces_the_orphaned_blocks() -> None:
    index = AccountIndex(max_blocks=100, max_transactions=1000)
    index.add_newer(_chain(1, 10))
    # blocks 9 and 10 replaced by fork 1 (built on block 8 of fork 0), then 11 on top
    index.add_newer(_chain(9, 11, fork=1, base_fork=0))
    assert index.has(9, _hash(9, 1)) and not index.has(9, _hash(9, 0))
    assert index.coverage() == {**index.coverage(), "fromBlock": 1, "toBlock": 11}
    hashes = {t["hash"] for t in index.lookup(A, 100)}
    assert len(hashes) == 11 and all(
        bytes.fromhex(h[2:])[0] == 1 for h in hashes if int(h[-8:], 16) >= 9
    )


def test_a_gap_restarts_the_index_from_the_head() -> None:
    index = AccountIndex(max_blocks=100, max_transactions=1000)
    index.add_newer(_chain(1, 10))
    index.add_newer(_chain(50, 60))  # the walk gave up before reaching block 10
    assert index.coverage()["fromBlock"] == 50 and index.restarts == 1
    assert index.wants_older()


def _brute(index: AccountIndex, address: bytes, limit: int) -> list[dict[str, object]]:
    """The reference: every indexed block scanned, newest first."""
    out = []
    for digest in reversed(list(index._blocks.values())):
        for tx in reversed(digest.txs):
            if tx.sender == address or tx.to == address:
                out.append(tx.to_json(digest.number, digest.timestamp))
    return out[:limit]


def test_address_lists_agree_with_a_full_scan_through_every_edit() -> None:
    rng = random.Random(7)
    people = [bytes([i]) * 20 for i in range(1, 6)]

    def chain(low: int, high: int, fork: int, base_fork: int) -> list[BlockDigest]:
        out = []
        for n in range(high, low - 1, -1):
            parent = _hash(n - 1, base_fork if n == low else fork)
            txs = tuple(
                IndexedTx(
                    bytes([fork, i]) + n.to_bytes(30, "big"),
                    rng.choice(people),
                    rng.choice([*people, None]),
                    n,
                    i,
                )
                for i in range(rng.randrange(0, 4))
            )
            out.append(BlockDigest(n, _hash(n, fork), parent, n, txs))
        return out

    index = AccountIndex(max_blocks=30, max_transactions=40)
    index.add_newer(chain(41, 50, 0, 0))
    for _ in range(5):  # backfill down in chunks until a bound stops it
        if index.wants_older():
            low = index.coverage()["fromBlock"]
            index.add_older(chain(max(1, low - 7), low - 1, 0, 0))
    checks = 0
    for step in range(40):  # new heads, with a reorganisation now and then
        high = index.coverage()["toBlock"]
        fork = step % 3
        if step % 5 == 4:
            below = high - 2
            below_fork = int.from_bytes(index._blocks[below].hash[:1], "big")
            index.add_newer(chain(below + 1, high + 1, fork + 10, below_fork))
        else:
            top_fork = int.from_bytes(index._blocks[high].hash[:1], "big")
            index.add_newer(chain(high + 1, high + 1, top_fork, top_fork))
        assert len(index) <= 30 and index.transactions <= 40
        for person in people:
            assert index.lookup(person, 6) == _brute(index, person, 6)
            checks += 1
    assert checks == 200 and index.restarts == 0
