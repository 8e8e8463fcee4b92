"""``bench_net.py sync``: range sync of a long chain over real WebSocket.

The chain: a one-validator genesis (the dev validator, epoch length 900 like a testnet) whose
``--blocks`` blocks each carry ``--txs`` transfers from ``--senders`` accounts (each sender
many nonces per block). It is built straight through the chain API, the way the node's
producer and committer do it: ``Chain.build_block`` (execute, hash the state, sign the
seal), a FINALIZE vote of the validator made into the block's finalization certificate,
and ``Chain.commit`` with the certificate written in the same batch (``_finality``). It is
cached under ``--cache``/<parameters>; later runs copy it (the node may write to its data
directory) instead of building again.

The run: the cached chain served by a full node as its own OS process
(``python -m moderntensor.node``, no RPC, p2p on 127.0.0.1); a fresh non-validator node in
this process dials it and range-syncs (``node/_sync.py``: ranges of up to 128 blocks, each
range's certificates verified, its blocks re-executed in a worker thread and committed).
Reported: blocks/s and re-executed transfers/s from the moment sync started (the node's
``RangeSync.syncing``) to the head reaching the source's, and the whole time from start.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from _bench_net_common import print_table, sender_key, sign_transfers

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import Genesis, parse_genesis
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.chain.votes import VoteKind, sign_vote
from moderntensor.consensus import build_certificate
from moderntensor.crypto import PrivateKey, checksum_address, keccak256
from moderntensor.keys import NodeKey, write_key_file
from moderntensor.network import make_multiaddr
from moderntensor.node._journal import ConsensusJournal
from moderntensor.node._network import network_config
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import dev_genesis_doc, dev_keys
from moderntensor.state.store import Database

FORMAT = 1
"""Bumped when the cached chain's layout changes (old caches are then rebuilt)."""
SOURCE_KEY = PrivateKey(keccak256(b"bench-net-sync-source"))
SYNC_KEY = PrivateKey(keccak256(b"bench-net-sync-late"))


def add_arguments(p: Any) -> None:
    p.add_argument("--blocks", type=int, default=5_000, help="blocks in the synced chain")
    p.add_argument("--txs", dest="block_txs", type=int, default=100, help="transfers per block")
    p.add_argument("--senders", dest="sync_senders", type=int, default=20)
    p.add_argument("--epoch-length", type=int, default=900)
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mt-bench-net",
                   help="where built chains are kept")  # fmt: skip
    p.add_argument("--p2p-port", type=int, default=0, help="the source node's port (0: free)")
    p.add_argument("--sync-timeout", type=float, default=1800.0)
    p.add_argument("--live", action="store_true",
                   help="the source node validates: the chain grows by a block a slot while "
                        "the fresh node syncs, which must reach the moving head")  # fmt: skip


def build_chain(directory: Path, blocks: int, txs: int, senders: int, epoch_length: int) -> None:
    """Build the chain into ``directory`` (``genesis.json``, ``data/chaindb``)."""
    keys = dev_keys()
    validator = keys.validator.consensus
    genesis_time = int(time.time()) - blocks - 60  # every slot in the past
    doc = dev_genesis_doc(genesis_time, 1.0, keys)
    doc["consensus"]["epoch_length"] = epoch_length
    doc["block"]["gas_limit"] = max(30_000_000, 2 * 21_000 * txs)
    accounts = [sender_key(i) for i in range(senders)]
    for k in accounts:
        doc["alloc"][checksum_address(k.address)] = {"balance": str(10**24)}
    genesis = parse_genesis(doc, "bench sync genesis")
    per_block = -(-txs // senders)  # nonces per sender per block
    directory.mkdir(parents=True, exist_ok=True)
    db = Database.open(directory / "data" / "chaindb")
    started = time.perf_counter()
    try:
        chain = Chain(db, genesis)
        journal = ConsensusJournal(db)
        for number in range(1, blocks + 1):
            rounds = sign_transfers(genesis.chain_id, accounts, per_block,
                                    first_nonce=(number - 1) * per_block)  # fmt: skip
            raws = [raw for row in rounds for raw in row][:txs]
            candidates = [_decode(raw) for raw in raws]
            executed = chain.build_block(chain.head, number, validator, candidates)
            if len(executed.block.transactions) != len(candidates):
                raise RuntimeError(f"block {number} left transactions out")
            epoch = compute_block_epoch(number, epoch_length)
            vote = sign_vote(validator, genesis.chain_id, chain.genesis_hash, VoteKind.FINALIZE,
                             epoch, number, executed.block.hash)  # fmt: skip
            cert = build_certificate(VoteKind.FINALIZE, epoch, number, executed.block.hash,
                                     [vote])  # fmt: skip
            chain.commit(executed, finalized=True,
                         extra=[journal.finalization_write(number, cert)])  # fmt: skip
            if number % 500 == 0 or number == blocks:
                rate = number / (time.perf_counter() - started)
                print(f"  built {number}/{blocks} blocks ({rate:.0f} blocks/s)", flush=True)
    finally:
        db.close()
    (directory / "genesis.json").write_text(json.dumps(doc, indent=2) + "\n")
    (directory / "complete").write_text("")


def _decode(raw: bytes) -> Any:
    from moderntensor.chain.transactions import decode_transaction

    return decode_transaction(raw)


def cached_chain(args: Any) -> Path:
    """The chain for these parameters, built if not cached yet."""
    key = (f"chain-v{FORMAT}-b{args.blocks}-t{args.block_txs}-s{args.sync_senders}"
           f"-e{args.epoch_length}")  # fmt: skip
    directory = args.cache / key
    if not (directory / "complete").exists():
        shutil.rmtree(directory, ignore_errors=True)
        print(f"building {args.blocks} blocks of {args.block_txs} transfers into {directory}",
              flush=True)  # fmt: skip
        t0 = time.perf_counter()
        build_chain(directory, args.blocks, args.block_txs, args.sync_senders, args.epoch_length)
        print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)
    return directory


def _source_toml(port: int, live: bool) -> str:
    validator = ["[validator]", 'key_file = "validator.key.json"', ""] if live else []
    return "\n".join([
        "[node]", 'data_dir = "data"', 'genesis = "genesis.json"', 'log_level = "warning"', "",
        *validator,
        "[rpc]", "enabled = false", "",
        "[p2p]", 'listen_addr = "127.0.0.1"', f"port = {port}", 'node_key_file = "node.key.json"',
        "",
    ])  # fmt: skip


async def run(args: Any) -> dict[str, Any]:
    cached = cached_chain(args)
    genesis: Genesis = parse_genesis(json.loads((cached / "genesis.json").read_text()), "cache")
    with tempfile.TemporaryDirectory(prefix="mt-bench-sync-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "source"
        t0 = time.perf_counter()
        shutil.copytree(cached, source)
        print(f"copied the cached chain in {time.perf_counter() - t0:.1f} s", flush=True)
        port = args.p2p_port or _free_port()
        write_key_file(source / "node.key.json", NodeKey(SOURCE_KEY).to_json())
        if args.live:
            write_key_file(source / "validator.key.json", dev_keys().validator.to_json())
        (source / "node.toml").write_text(_source_toml(port, args.live))
        log = open(source / "node.log", "wb")  # noqa: SIM115
        command = [sys.executable, "-m", "moderntensor.node", "--config", str(source / "node.toml")]
        addr = make_multiaddr("127.0.0.1", port, SOURCE_KEY.public_key_bytes.hex())
        result: dict[str, Any] = {"blocks": args.blocks, "txs_per_block": args.block_txs}
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(_run_process, command, log)
                p2p = network_config(genesis, listen_addr="127.0.0.1", port=0, bootstrap=[addr])
                settings = NodeSettings(tmp / "late", genesis, None, rpc=None, p2p=p2p,
                                        node_key=SYNC_KEY)  # fmt: skip
                started = trio.current_time()
                late: NodeHandle = await nursery.start(open_node, settings)
                assert late.range_sync is not None
                sync_start: float | None = None
                shown = trio.current_time()
                target = args.blocks

                def source_head() -> int:  # what the source told us last (live: it grows)
                    heads = [p.status.head_number for p in late.network.peers.peers.values()
                             if p.status is not None] if late.network else []  # fmt: skip
                    return max([args.blocks, *heads])

                with trio.fail_after(args.sync_timeout):
                    while late.chain.head.number < target or (
                        args.live and late.chain.head.number < source_head() - 1
                    ):
                        target = max(target, source_head()) if args.live else target
                        if trio.current_time() - shown >= 10:
                            shown = trio.current_time()
                            print(f"  {shown - started:.0f} s: head {late.chain.head.number}",
                                  flush=True)  # fmt: skip
                        if sync_start is None and (late.range_sync.syncing or
                                                   late.chain.head.number > 0):  # fmt: skip
                            sync_start = trio.current_time()
                        await trio.sleep(0.01)
                end = trio.current_time()
                assert sync_start is not None
                seconds = end - sync_start
                result.update(
                    sync_seconds=seconds,
                    total_seconds=end - started,
                    blocks_per_s=late.chain.head.number / seconds,
                    transfers_per_s=args.blocks * args.block_txs / seconds,
                    head=late.chain.head.number,
                    grew=late.chain.head.number - args.blocks,
                    by_range=late.range_sync.synced_blocks,
                    refused=late.range_sync.refused,
                )
                nursery.cancel_scope.cancel()
        finally:
            log.close()
    return result


async def _run_process(
    command: list[str], log: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    proc = await trio.lowlevel.open_process(command, stdout=log, stderr=subprocess.STDOUT)
    task_status.started()
    try:
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.terminate()
            with trio.move_on_after(5) as scope:
                scope.shield = True
                await proc.wait()
            if proc.returncode is None:
                proc.kill()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def report(result: dict[str, Any]) -> None:
    print_table(f"range sync of {result['blocks']:,} blocks of {result['txs_per_block']} "
                "transfers (source: a node process; syncing node: this process)", [
        ("blocks synced by range", result["by_range"]),
        ("head reached (the source's, as it grew)", result.get("head", result["blocks"])),
        ("ranges refused", result["refused"]),
        ("sync time (s)", result["sync_seconds"]),
        ("time from node start (s)", result["total_seconds"]),
        ("blocks/s", result["blocks_per_s"]),
        ("re-executed transfers/s", result["transfers_per_s"]),
    ])  # fmt: skip
