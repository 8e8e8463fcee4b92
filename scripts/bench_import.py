#!/usr/bin/env python3
"""Benchmark: the CPU one plain ETH transfer costs a node, stage by stage.

Two chains on real RocksDB in a temp dir, from the dev genesis with ``--senders`` funded
senders and real signatures. For ``--blocks`` blocks of ``--block-txs`` transfers each:

* ``decode``: decoding and sender recovery of the raw transactions, uncached (what a node
  does once per transaction it first sees, from JSON-RPC or gossip);
* ``admit``: mempool admission of the decoded transactions (``Mempool.add``);
* ``select``: taking the block's worth from the pool (``iter_best_transactions``);
* ``build``: the leader drafting, sealing and committing the block
  (``Chain.draft_block`` + ``seal_block`` + ``commit``);
* ``pool_head``: the pool re-validated on the new head (``Mempool.on_new_head``: what the
  node's pool service does after each block), which drops the included transactions;
* ``wire``: the block encoded, then decoded at a follower that never saw its transactions
  (a syncing node: every sender recovered again) -- ``wire_warm`` for one that got them by
  gossip first;
* ``import``: the follower's ``Chain.execute_block`` (header and root checks, re-execution,
  state root) and ``Chain.commit`` -- what ``node._sync`` and ``node._driver`` run.

``build`` and ``import`` are broken down by wrapping the functions they call (execution,
roots, state hashing, the RocksDB batch). Reported in CPU microseconds per transfer: thread
time of the measuring thread and process time (which includes RocksDB's own threads), the
median over the blocks. Every loop is bounded by the arguments.

Usage: python scripts/bench_import.py [--senders 200] [--block-txs 3000] [--blocks 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moderntensor.chain import _tx_decode, chaindb
from moderntensor.chain import chain as chain_mod
from moderntensor.chain.blocks import decode_block, encode_block
from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.crypto import PrivateKey, checksum_address, keccak256
from moderntensor.mempool import Mempool, MempoolConfig
from moderntensor.node.devnet import dev_genesis_doc, dev_keys
from moderntensor.state import statedb
from moderntensor.state.store import Database

GWEI = 10**9
Times = dict[str, list[float]]


class Clock:
    """Accumulates (thread, process) CPU seconds per named stage of the current block."""

    def __init__(self) -> None:
        self.thread: dict[str, float] = {}
        self.process: dict[str, float] = {}
        self.top = ""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name.startswith("."):
            name = self.top + name  # a sub-stage: charged to its stage's breakdown
        else:
            self.top = name
        t0, p0 = time.thread_time(), time.process_time()
        try:
            yield
        finally:
            t, p = time.thread_time() - t0, time.process_time() - p0
            self.thread[name] = self.thread.get(name, 0.0) + t
            self.process[name] = self.process.get(name, 0.0) + p


CLOCK = Clock()


def wrap(owner: Any, attr: str, name: str) -> None:
    """Replace ``owner.attr`` by a version that charges its CPU to the ``name`` sub-stage."""
    fn: Callable[..., Any] = getattr(owner, attr)

    def timed(*args: Any, **kwargs: Any) -> Any:
        with CLOCK.stage(name):
            return fn(*args, **kwargs)

    setattr(owner, attr, timed)


def instrument() -> None:
    wrap(chain_mod, "execute_transactions", ".execute_txs")
    wrap(chain_mod, "compute_transactions_root", ".tx_root")
    wrap(chain_mod, "ordered_trie_root", ".receipts_root")
    wrap(chain_mod.Chain, "_check_header", ".header_check")
    wrap(statedb.StateDB, "commit", ".state_commit")
    wrap(chaindb.ChainDB, "commit_block", ".db_write")


def sender_key(i: int) -> PrivateKey:
    return PrivateKey(keccak256(b"bench-import-sender" + i.to_bytes(4, "big")))


def bench(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    keys = dev_keys()
    senders = [sender_key(i) for i in range(args.senders)]
    doc = dev_genesis_doc(1_700_000_000, 1.0, keys)
    doc["block"]["gas_limit"] = max(30_000_000, 21_000 * args.block_txs)
    for k in senders:
        doc["alloc"][checksum_address(k.address)] = {"balance": str(10**21)}
    genesis = parse_genesis(doc, "bench genesis")
    per_block = -(-args.block_txs // args.senders)
    raws: list[list[bytes]] = []
    for b in range(args.blocks):
        block_raws: list[bytes] = []
        for n in range(b * per_block, (b + 1) * per_block):
            for i, k in enumerate(senders):
                if len(block_raws) == args.block_txs:
                    break
                tx = DynamicFeeTransaction(
                    chain_id=genesis.chain_id, nonce=n, max_priority_fee_per_gas=GWEI,
                    max_fee_per_gas=20 * GWEI, gas=21_000,
                    to=keccak256(b"to" + i.to_bytes(4, "big"))[:20] if i % 2 else
                    keys.accounts[n % 10].address, value=1 + n,
                )  # fmt: skip
                block_raws.append(sign_transaction(tx, k).raw)
        raws.append(block_raws)
    proposer = keys.validator.consensus
    leader = Chain(Database.open(Path(tmp) / "leader"), genesis)
    follower = Chain(Database.open(Path(tmp) / "follower"), genesis)
    instrument()
    per_block_thread: list[dict[str, float]] = []
    per_block_process: list[dict[str, float]] = []
    for b, block_raws in enumerate(raws):
        CLOCK.thread, CLOCK.process = {}, {}
        _tx_decode._recent.clear()
        with CLOCK.stage("decode"):
            txs = [_tx_decode._decode_uncached(raw) for raw in block_raws]
        head = leader.head
        base_fee = leader.next_env(head, head.slot + 1, b"").base_fee
        pool = Mempool(
            leader.params,
            leader.state_at(head),
            base_fee,
            MempoolConfig(global_slots=len(txs) + 1, account_slots=per_block + 1),
        )
        with CLOCK.stage("admit"):
            for tx in txs:
                pool.add(tx)
        with CLOCK.stage("select"):
            candidates = list(pool.iter_best_transactions(base_fee, leader.params.gas_limit))
        with CLOCK.stage("build"):
            executed = leader.build_block(head, head.slot + 1, proposer, candidates)
            leader.commit(executed)
        with CLOCK.stage("pool_head"):
            head = leader.head
            dropped = pool.on_new_head(
                leader.state_at(head), leader.next_env(head, head.slot + 1, b"").base_fee
            )
        if len(dropped) != len(block_raws) or len(pool):
            raise SystemExit(f"the new head dropped {len(dropped)}, left {len(pool)}")
        if len(executed.block.transactions) != len(block_raws):
            raise SystemExit(f"block {b} holds {len(executed.block.transactions)} transfers")
        _tx_decode._recent.clear()
        with CLOCK.stage("wire"):
            received = decode_block(encode_block(executed.block))
        with CLOCK.stage("wire_warm"):
            decode_block(encode_block(executed.block))
        with CLOCK.stage("import"):
            imported = follower.execute_block(received)
            follower.commit(imported)
        if follower.head.hash != leader.head.hash:
            raise SystemExit("the follower's head differs from the leader's")
        per_block_thread.append(dict(CLOCK.thread))
        per_block_process.append(dict(CLOCK.process))
    leader.db.close()
    follower.db.close()

    def table(rows: list[dict[str, float]]) -> dict[str, float]:
        return {
            name: round(statistics.median(r[name] for r in rows) / args.block_txs * 1e6, 1)
            for name in rows[0]
        }

    return {
        "block_txs": args.block_txs,
        "senders": args.senders,
        "blocks": args.blocks,
        "us_per_transfer_thread": table(per_block_thread),
        "us_per_transfer_process": table(per_block_process),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--senders", type=int, default=200)
    parser.add_argument("--block-txs", type=int, default=3000)
    parser.add_argument("--blocks", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mt-bench-import-") as tmp:
        result = bench(args, tmp)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
