#!/usr/bin/env python3
"""Benchmark: a dev node fed pre-signed transfers at full speed through its in-process submit
path (``ChainService.submit_raw_transactions``: decode and sender recovery in a worker thread,
then mempool admission -- the path a JSON-RPC batch of eth_sendRawTransaction takes), in
batches of 500.

Reports finalized transfers/s, p50/p99 submit-to-finalized latency, the longest event-loop
stall (a 1 ms heartbeat task measures how late it wakes) and peak RSS. One process; block
building and execution run in a worker thread, so the event loop keeps answering.

The chain is the dev chain with more senders and a larger gas limit: at 30M gas a block holds
at most 1,428 transfers, which caps any node at 1,428 transfers/s with 1-second slots.

Usage: python scripts/bench_node.py [--transfers 20000] [--senders 2000]
                                     [--slot-duration 1.0] [--gas-limit 150000000]
                                     [--batch 500]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moderntensor.chain.chain import ExecutedBlock
from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.crypto import PrivateKey, checksum_address, keccak256
from moderntensor.mempool import MempoolConfig
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import dev_genesis_doc, dev_keys

GWEI = 10**9


def sender_key(i: int) -> PrivateKey:
    return PrivateKey(keccak256(b"bench-node-sender" + i.to_bytes(4, "big")))


async def heartbeat(stalls: list[float]) -> None:
    """Sleep 1 ms at a time; record how late each wake-up is (the loop's stall)."""
    while True:
        before = trio.current_time()
        await trio.sleep(0.001)
        stalls.append(trio.current_time() - before - 0.001)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    keys = dev_keys()
    senders = [sender_key(i) for i in range(args.senders)]
    doc = dev_genesis_doc(int(time.time()), args.slot_duration, keys)
    doc["block"]["gas_limit"] = args.gas_limit
    for k in senders:
        doc["alloc"][checksum_address(k.address)] = {"balance": str(10**21)}
    genesis = parse_genesis(doc, "bench genesis")
    per_sender = -(-args.transfers // args.senders)
    t0 = time.perf_counter()
    raws: list[bytes] = []
    for n in range(per_sender):
        for k in senders:
            if len(raws) == args.transfers:
                break
            tx = DynamicFeeTransaction(
                chain_id=genesis.chain_id, nonce=n, max_priority_fee_per_gas=GWEI,
                max_fee_per_gas=20 * GWEI, gas=21_000, to=keys.accounts[n % 10].address, value=1,
            )  # fmt: skip
            raws.append(sign_transaction(tx, k).raw)
    print(f"signed {len(raws)} transfers in {time.perf_counter() - t0:.1f} s", flush=True)
    pool = MempoolConfig(global_slots=len(raws) + 1, account_slots=per_sender + 1)
    submitted_at: dict[bytes, float] = {}
    finalized_at: dict[bytes, float] = {}
    stalls: list[float] = []
    block_sizes: list[int] = []
    with tempfile.TemporaryDirectory(prefix="mt-bench-node-") as tmp:
        settings = NodeSettings(
            Path(tmp), genesis, keys.validator.consensus, rpc=None, mempool=pool
        )
        async with trio.open_nursery() as nursery:
            node: NodeHandle = await nursery.start(open_node, settings)
            service = node.service
            committed_blocks: trio.MemorySendChannel[ExecutedBlock]
            committed_blocks, committed = trio.open_memory_channel[ExecutedBlock](1024)
            notify = service.on_block_committed

            def on_block_committed(executed: ExecutedBlock) -> None:
                notify(executed)  # the service's own fan-out, then ours (hashes are cached)
                committed_blocks.send_nowait(executed)

            service.on_block_committed = on_block_committed  # type: ignore[method-assign]
            while node.chain.head.number < 1:  # let the first slot pass before pushing
                await trio.sleep(0.05)
            nursery.start_soon(heartbeat, stalls)
            start = trio.current_time()
            with trio.fail_after(args.timeout):
                for i in range(0, len(raws), args.batch):
                    batch = raws[i : i + args.batch]
                    submitted = trio.current_time()
                    for result in await node.service.submit_raw_transactions(batch):
                        if not isinstance(result, bytes):
                            raise SystemExit(f"transfer refused: {result}")
                        submitted_at[result] = submitted
                push_seconds = trio.current_time() - start
                async for executed in committed:
                    if executed.block.transactions:
                        block_sizes.append(len(executed.block.transactions))
                    now = trio.current_time()
                    for tx in executed.block.transactions:
                        finalized_at[tx.hash] = now
                    if len(finalized_at) >= len(raws):
                        break
            end = max(finalized_at.values())
            nursery.cancel_scope.cancel()  # stops the node and the heartbeat
    latencies = sorted(finalized_at[h] - submitted_at[h] for h in submitted_at)
    return {
        "transfers": len(raws),
        "finalized_per_s": round(len(raws) / (end - start)),
        "accepted_per_s": round(len(raws) / push_seconds),
        "p50_latency_s": round(statistics.median(latencies), 3),
        "p99_latency_s": round(latencies[int(len(latencies) * 0.99) - 1], 3),
        "max_loop_stall_ms": round(max(stalls) * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "block_sizes": block_sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--senders", type=int, default=2_000)
    parser.add_argument("--slot-duration", type=float, default=1.0)
    parser.add_argument("--gas-limit", type=int, default=150_000_000)
    parser.add_argument("--batch", type=int, default=500, help="transfers per submission")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    from moderntensor.node._logging import setup_logging

    setup_logging("warning")
    result = trio.run(bench, args)
    print(
        f"{result['transfers']} transfers, {args.slot_duration} s slots, gas limit "
        f"{args.gas_limit:,}: {result['finalized_per_s']} finalized transfers/s "
        f"(accepted {result['accepted_per_s']}/s); submit->finalized p50 "
        f"{result['p50_latency_s']} s, p99 {result['p99_latency_s']} s; longest event-loop "
        f"stall {result['max_loop_stall_ms']} ms; peak RSS {result['peak_rss_mb']} MB "
        f"({platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()})"
    )
    print(f"transfers per block: {result['block_sizes']}")


if __name__ == "__main__":
    main()
