"""Benchmark the state trie: build, per-block updates with hashing, commit and reload.

Run: ``python scripts/bench_trie.py [--keys 100000] [--blocks 100] [--per-block 1000]
[--pytrie]``. Every loop is bounded; the defaults finish in well under a minute on one core.
Figures are printed, never asserted (timing belongs here, not in tests).

What is measured (random 32-byte keys through :class:`SecureTrie`, 32..100-byte values):

1. build: insert ``--keys`` keys into an empty trie, then one ``root_hash``;
2. blocks: ``--blocks`` blocks of ``--per-block`` updates (80% existing keys, 20% new),
   each block followed by ``root_hash`` and ``commit`` -- updates/s includes the hashing;
3. the same blocks on a trie reopened from a RocksDB ``Database`` written in step 2's
   commits (cold start: every node is read and decoded on first touch), committing each
   block's nodes in one write batch;
4. optionally py-trie (``pip install trie``) doing the same block updates, for comparison.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable

from moderntensor.state.store import Database
from moderntensor.state.trie import EMPTY_ROOT, MemoryNodeStore, SecureTrie


def _blocks(rng: random.Random, keys: list[bytes], blocks: int, per_block: int) -> list:
    plan = []
    for _ in range(blocks):
        batch = []
        for _ in range(per_block):
            key = rng.choice(keys) if rng.random() < 0.8 else rng.randbytes(32)
            batch.append((key, rng.randbytes(rng.randint(32, 100))))
        plan.append(batch)
    return plan


def _timed(label: str, count: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    print(f"{label:<58} {elapsed:8.3f} s  {count / elapsed:>10,.0f} /s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--per-block", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pytrie", action="store_true", help="also time py-trie if installed")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    keys = [rng.randbytes(32) for _ in range(args.keys)]
    values = [rng.randbytes(rng.randint(32, 100)) for _ in range(args.keys)]
    plan = _blocks(rng, keys, args.blocks, args.per_block)
    updates = args.blocks * args.per_block

    store = MemoryNodeStore()
    trie = SecureTrie(store)

    def build() -> None:
        for key, value in zip(keys, values, strict=True):
            trie.set(key, value)

    _timed(f"build {args.keys:,} keys (no hashing)", args.keys, build)
    _timed("  root_hash of the built trie (all nodes)", args.keys, lambda: trie.root_hash)
    _timed("  commit of the built trie", args.keys, lambda: store.put_nodes(trie.commit()))
    base_root = trie.root_hash

    root_times: list[float] = []

    def run_blocks(t: SecureTrie, sink: Callable[[dict[bytes, bytes]], None]) -> None:
        for batch in plan:
            for key, value in batch:
                t.set(key, value)
            start = time.perf_counter()
            t.root_hash  # noqa: B018
            root_times.append(time.perf_counter() - start)
            sink(t.commit())

    _timed(
        f"{args.blocks} blocks x {args.per_block} updates, root+commit per block (warm)",
        updates,
        lambda: run_blocks(trie, store.put_nodes),
    )
    print(f"  root_hash per block: mean {1000 * sum(root_times) / len(root_times):.2f} ms")
    warm_root = trie.root_hash

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "db")
        with Database.open(path) as db:
            batch = db.batch()
            batch.put_nodes(store.nodes)
            _timed(
                f"write {len(store.nodes):,} nodes to RocksDB", len(store), lambda: db.write(batch)
            )
        with Database.open(path) as db:
            cold = SecureTrie(db, base_root)
            root_times.clear()

            def to_db(nodes: dict[bytes, bytes]) -> None:
                b = db.batch()
                b.put_nodes(nodes)
                db.write(b, sync=False)

            _timed(
                "same blocks on a trie reopened from RocksDB (cold)",
                updates,
                lambda: run_blocks(cold, to_db),
            )
            print(f"  root_hash per block: mean {1000 * sum(root_times) / len(root_times):.2f} ms")
            if cold.root_hash != warm_root:
                raise SystemExit("reopened trie reached a different root")

    if args.pytrie:
        try:
            from trie import HexaryTrie as PyTrie  # type: ignore[import-not-found]
        except ImportError:
            print("py-trie not installed (pip install trie)")
            return
        from moderntensor.crypto import keccak256

        db: dict[bytes, bytes] = {}
        py = PyTrie(db, EMPTY_ROOT)
        n = min(args.keys, 20_000)
        _timed(
            f"py-trie: build {n:,} keys",
            n,
            lambda: [py.set(keccak256(k), v) for k, v in zip(keys[:n], values[:n], strict=True)],
        )
        few = plan[: max(1, min(len(plan), 10))]
        count = sum(len(b) for b in few)

        def py_blocks() -> None:
            for b in few:
                with py.squash_changes() as squashed:
                    for key, value in b:
                        squashed[keccak256(key)] = value
                py.root_hash  # noqa: B018

        _timed(f"py-trie: {len(few)} blocks of updates (squashed)", count, py_blocks)


if __name__ == "__main__":
    main()
