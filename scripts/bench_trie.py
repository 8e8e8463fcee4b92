"""Benchmark the state trie: build, per-block updates with hashing, commit and reload.

Run: ``python scripts/bench_trie.py [--keys 100000] [--blocks 300] [--cold-blocks 100]
[--per-block 1000] [--gc-freeze] [--pytrie]``. Every loop is bounded; the defaults finish
in well under a minute on one core. Figures are printed, never asserted.

Rates use the process's CPU time (``time.process_time``), so other processes sharing the
machine disturb them less than wall time; wall time is printed alongside.

What is measured (random 32-byte keys through :class:`SecureTrie`, 32..100-byte values):

1. build: insert ``--keys`` keys into an empty trie, then one ``root_hash`` and ``commit``;
2. warm blocks: ``--blocks`` blocks of ``--per-block`` updates (80% existing keys, 20% new),
   each followed by ``root_hash`` and ``commit`` (the rate includes both);
3. cold blocks: a trie reopened from a RocksDB ``Database`` holding the built trie (every
   node read and decoded on first touch) runs ``--cold-blocks`` blocks, writing each
   block's nodes in one batch;
4. with ``--pytrie``: py-trie (``pip install trie``; ``PYTHONPATH`` to a ``--target`` dir
   works too) doing updates with per-block root hashing on a 20,000-key trie, beside ours on
   the same keys.

``--gc-freeze`` calls ``gc.freeze()`` after the build (what a node can do after loading its
state) to show how much of the update cost is the cyclic garbage collector's.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import tempfile
import time
from collections.abc import Callable

from moderntensor.crypto import keccak256
from moderntensor.state.store import Database
from moderntensor.state.trie import EMPTY_ROOT, HexaryTrie, MemoryNodeStore, SecureTrie

Block = list[tuple[bytes, bytes]]


def _plan(rng: random.Random, keys: list[bytes], blocks: int, per_block: int) -> list[Block]:
    plan = []
    for _ in range(blocks):
        block = []
        for _ in range(per_block):
            key = rng.choice(keys) if rng.random() < 0.8 else rng.randbytes(32)
            block.append((key, rng.randbytes(rng.randint(32, 100))))
        plan.append(block)
    return plan


def _timed(label: str, count: int, fn: Callable[[], object]) -> float:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    print(f"{label:<56} cpu {cpu:7.3f} s  wall {wall:7.3f} s  {count / cpu:>10,.0f} /s")
    return cpu


class _Splits:
    """CPU time per phase of a block (updates, root hashing, commit+write)."""

    def __init__(self) -> None:
        self.set = self.root = self.commit = 0.0
        self.updates = 0
        self.blocks = 0

    def report(self) -> None:
        n = self.updates
        print(
            f"  per update: set {1e6 * self.set / n:.1f} us, root {1e6 * self.root / n:.1f} us,"
            f" commit+store {1e6 * self.commit / n:.1f} us;"
            f" root per block {1e3 * self.root / self.blocks:.2f} ms"
        )


def _run_blocks(
    trie: HexaryTrie, plan: list[Block], sink: Callable[[dict[bytes, bytes]], None]
) -> _Splits:
    splits = _Splits()
    clock = time.process_time
    for block in plan:
        t0 = clock()
        for key, value in block:
            trie.set(key, value)
        t1 = clock()
        trie.root_hash  # noqa: B018
        t2 = clock()
        sink(trie.commit())
        t3 = clock()
        splits.set += t1 - t0
        splits.root += t2 - t1
        splits.commit += t3 - t2
        splits.updates += len(block)
        splits.blocks += 1
    return splits


def _pytrie(rng: random.Random, per_block: int) -> None:
    try:
        from trie import HexaryTrie as PyTrie  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print("py-trie: not installed (pip install trie) -- skipped")
        return
    n, blocks = 20_000, 5
    keys = [keccak256(rng.randbytes(32)) for _ in range(n)]  # hashed, as a secure trie would
    plan = _plan(rng, keys, blocks, per_block)
    count = blocks * per_block
    print(f"-- py-trie 4 vs ours: {n:,}-key trie, {blocks} blocks x {per_block} updates")

    ours = HexaryTrie(MemoryNodeStore())

    def build() -> None:
        for key in keys:
            ours.set(key, key)

    _timed("ours: build", n, build)
    ours.commit()
    _timed(
        "ours: blocks (root+commit per block)",
        count,
        lambda: _run_blocks(ours, plan, lambda nodes: None),
    )

    py = PyTrie({}, EMPTY_ROOT)
    _timed("py-trie: build", n, lambda: [py.set(k, k) for k in keys])

    def py_blocks() -> None:
        for block in plan:
            for key, value in block:
                py.set(key, value)
            py.root_hash  # noqa: B018

    _timed("py-trie: blocks (root per block)", count, py_blocks)
    if ours.root_hash != py.root_hash:
        raise SystemExit("py-trie and ours disagree on the root")
    print("  same root as py-trie")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=300)
    parser.add_argument("--cold-blocks", type=int, default=100)
    parser.add_argument("--per-block", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the build")
    parser.add_argument("--pytrie", action="store_true", help="also time py-trie if installed")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    sample = bytes(532)  # a full branch node's size
    _timed(
        "calibration: keccak256 of 532 bytes x 100,000",
        100_000,
        lambda: [keccak256(sample) for _ in range(100_000)],
    )
    if args.pytrie:  # first, while the heap is small (a big heap slows the GC for both)
        _pytrie(random.Random(args.seed + 1), args.per_block)
    keys = [rng.randbytes(32) for _ in range(args.keys)]
    values = [rng.randbytes(rng.randint(32, 100)) for _ in range(args.keys)]
    plan = _plan(rng, keys, max(args.blocks, args.cold_blocks), args.per_block)

    store = MemoryNodeStore()
    trie = SecureTrie(store)

    def build() -> None:
        for key, value in zip(keys, values, strict=True):
            trie.set(key, value)

    print(f"-- {args.keys:,} random keys (SecureTrie), values 32..100 bytes")
    _timed("build (updates only)", args.keys, build)
    _timed("root_hash of the built trie (every node)", args.keys, lambda: trie.root_hash)
    _timed("commit of the built trie", args.keys, lambda: store.put_nodes(trie.commit()))
    base_root = trie.root_hash
    print(f"  {len(store):,} nodes")
    if args.gc_freeze:
        gc.collect()
        gc.freeze()

    warm_plan = plan[: args.blocks]
    updates = args.blocks * args.per_block
    splits = _Splits()

    def warm() -> None:
        nonlocal splits
        splits = _run_blocks(trie, warm_plan, store.put_nodes)

    _timed(f"warm: {args.blocks} blocks x {args.per_block} updates, root+commit", updates, warm)
    splits.report()

    cold_plan = plan[: args.cold_blocks]
    check = SecureTrie(MemoryNodeStore(store.nodes), base_root)
    _run_blocks(check, cold_plan, lambda nodes: None)
    expected_cold_root = check.root_hash
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "db")
        with Database.open(path) as db:
            batch = db.batch()
            batch.put_nodes(store.nodes)
            _timed(
                f"RocksDB: write {len(store):,} nodes in one batch",
                len(store),
                lambda: db.write(batch),
            )
        with Database.open(path) as db:
            cold = SecureTrie(db, base_root)

            def to_db(nodes: dict[bytes, bytes]) -> None:
                batch = db.batch()
                batch.put_nodes(nodes)
                db.write(batch, sync=False)

            def run_cold() -> None:
                nonlocal splits
                splits = _run_blocks(cold, cold_plan, to_db)

            count = args.cold_blocks * args.per_block
            _timed(
                f"cold: {args.cold_blocks} blocks on a trie reopened from RocksDB", count, run_cold
            )
            splits.report()
            if cold.root_hash != expected_cold_root:
                raise SystemExit("the reopened trie reached a different root")


if __name__ == "__main__":
    main()
