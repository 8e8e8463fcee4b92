"""``bench_net.py localnet``: a localnet's finalized transfers/s and submit-to-finalized latency
at every node.

1. Pre-sign ``--transfers`` transfers from ``--senders`` accounts (nonce rounds: every
   sender's nonce 0, then 1, ...) before anything starts.
2. ``moderntensor testnet init --validators N --slot-duration 1`` into a temporary directory,
   then the genesis gets ``--gas-limit`` (150M: at 30M a block holds at most 1,428 transfers)
   and the senders' balances, and every node.toml a ``[mempool]`` large enough for the
   transfers in flight.
3. The bootnode and the validators start, each as its own OS process
   (``python -m moderntensor.node --config``), as ``scripts/localnet`` runs them.
4. This process subscribes to ``newHeads`` over each node's JSON-RPC WebSocket. A node
   commits only finalized blocks, so a head notification is the moment that node has the
   block final; the arrival time is stamped here, on one monotonic clock.
5. Once every node finalized a few blocks: one feeder per validator sends JSON-RPC batches of
   ``eth_sendRawTransaction`` (``--batch``) to that validator for ``--seconds``, each
   validator owning a disjoint quarter of the senders (so each sender's nonces reach one
   node in order; gossip spreads them). At most ``--window`` transfers are in flight
   (submitted, not yet final at the first node): a closed loop at full speed, which keeps
   the pools below their caps instead of measuring rejections. ``--rate`` caps the offered
   load instead (a fixed load, for comparing the nodes' CPU per transfer between versions).
6. Then the feeders stop, the remaining transfers are waited for, and the hashes of every
   block are read back once (``eth_getBlockByNumber``), to map each transfer to its block.

Figures, per node: finalized transfers/s = transfers in the blocks that became final at that
node between ``--warmup`` seconds after the feed started and the feed's end, over that span
(a block holds ``gasUsed / 21,000`` transfers: all are plain transfers); latency = arrival of
the transfer's block at that node minus the moment its batch was sent (p50, p99).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import trio
import trio_websocket
from _bench_net_common import console, median, percentile, print_table, sender_key
from _bench_net_common import sign_transfers as sign_rounds

from moderntensor.crypto import checksum_address, keccak256

CHAIN_ID = 7777
NODE_MAIN = (
    "import faulthandler, runpy, signal, sys; "
    "faulthandler.register(signal.SIGUSR1, all_threads=True); "  # kill -USR1: stacks to the log
    "runpy.run_module('moderntensor.node', run_name='__main__', alter_sys=True)"
)
"""``python -m moderntensor.node``, able to print every thread's stack on SIGUSR1."""
TRANSFER_GAS = 21_000


def add_arguments(p: Any) -> None:
    p.add_argument("--seconds", type=float, default=30.0, help="how long to feed transfers")
    p.add_argument("--warmup", type=float, default=5.0,
                   help="seconds of feed not counted in the rate")  # fmt: skip
    p.add_argument("--validators", type=int, default=4)
    p.add_argument("--transfers", type=int, default=150_000, help="pre-signed (an upper bound)")
    p.add_argument("--localnet-senders", dest="senders_ln", type=int, default=2_000)
    p.add_argument("--gas-limit", type=int, default=150_000_000)
    p.add_argument("--batch", type=int, default=500, help="transfers per JSON-RPC batch")
    p.add_argument("--window", type=int, default=8_000, help="transfers in flight at most")
    p.add_argument("--rate", type=float, default=None,
                   help="offer this many transfers/s at most, all feeders together (a fixed "
                        "load: compare the nodes' CPU per transfer between versions)")  # fmt: skip
    p.add_argument("--pool", type=int, default=30_000, help="each node's mempool cap")
    p.add_argument("--rpc-port", type=int, default=28545, help="the bootnode's RPC port")
    p.add_argument("--localnet-p2p-port", dest="p2p_port_ln", type=int, default=38303)
    p.add_argument("--start-in", type=int, default=12, help="genesis time = now + this")
    p.add_argument("--node-log-level", default="info", help="the nodes' log level")
    p.add_argument("--keep", type=Path, default=None, help="use this directory and keep it")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="run each node under cProfile (main thread only), DIR/<node>.prof",
    )
    p.add_argument("--node-env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment for the node processes (e.g. profiling)")  # fmt: skip


class Heads:
    """One node's finalized blocks as they arrive: number -> (arrival, transfers)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.blocks: dict[int, tuple[float, int]] = {}
        self.top = 0


async def follow_heads(url: str, heads: Heads, *, task_status: Any) -> None:
    """Subscribe to newHeads and stamp each arrival (trio.current_time)."""
    host, port = url.removeprefix("http://").split(":")
    with trio.fail_after(60):
        while True:  # the node's RPC listens once it started
            try:
                stream = await trio.open_tcp_stream(host, int(port))
            except OSError:
                await trio.sleep(0.2)
                continue
            await stream.aclose()
            break
    async with trio_websocket.open_websocket(host, int(port), "/", use_ssl=False) as ws:
        await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                          "params": ["newHeads"]}))  # fmt: skip
        task_status.started()
        while True:
            message = orjson.loads(await ws.get_message())
            now = trio.current_time()
            if message.get("method") != "eth_subscription":
                continue
            header = message["params"]["result"]
            number = int(header["number"], 16)
            heads.blocks[number] = (now, int(header["gasUsed"], 16) // TRANSFER_GAS)
            heads.top = max(heads.top, number)


def rpc_call(conn: http.client.HTTPConnection, payload: Any) -> Any:
    conn.request("POST", "/", orjson.dumps(payload), {"Content-Type": "application/json"})
    return orjson.loads(conn.getresponse().read())


class Feed:
    """Shared state of the feeders."""

    def __init__(self, window: int, heads: Heads) -> None:
        self.window = window
        self.heads = heads  # in flight is counted against the first node's finalized blocks
        self.base = 0  # transfers finalized before the feed started (none: a fresh chain)
        self.submitted_at: dict[bytes, float] = {}
        self.rejected = 0
        self.errors: dict[str, int] = {}
        self.stop = False

    def finalized(self) -> int:
        return sum(n for _, n in self.heads.blocks.values()) - self.base

    def in_flight(self) -> int:
        return len(self.submitted_at) - self.finalized()


async def feeder(url: str, batches: list[list[bytes]], feed: Feed, rate: float | None) -> None:
    """Send ``batches`` while the window allows, at most ``rate`` transfers/s if given."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    due = trio.current_time()
    try:
        for batch in batches:
            while feed.in_flight() + len(batch) > feed.window and not feed.stop:
                await trio.sleep(0.01)
            if rate is not None:
                await trio.sleep_until(due)
                due = max(due, trio.current_time() - 1.0) + len(batch) / rate
            if feed.stop:
                return
            payload = [{"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction",
                        "params": ["0x" + raw.hex()]} for i, raw in enumerate(batch)]  # fmt: skip
            sent = trio.current_time()
            answers = await trio.to_thread.run_sync(rpc_call, conn, payload)
            for raw, answer in zip(batch, sorted(answers, key=lambda a: a["id"]), strict=True):
                if "result" in answer:
                    feed.submitted_at[keccak256(raw)] = sent
                else:
                    feed.rejected += 1
                    reason = str(answer.get("error", {}).get("message", "?"))[:60]
                    feed.errors[reason] = feed.errors.get(reason, 0) + 1
    finally:
        conn.close()


def make_testnet(args: Any, root: Path, senders: list[Any]) -> dict[str, Any]:
    """``testnet init``, then the gas limit, the senders' balances and each [mempool]."""
    command = [sys.executable, "-m", "moderntensor.cli", "testnet", "init",
               "--validators", str(args.validators), "--out", str(root), "--slot-duration", "1",
               "--start-in", str(args.start_in), "--rpc-port", str(args.rpc_port),
               "--p2p-port", str(args.p2p_port_ln), "--chain-id", str(CHAIN_ID)]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    doc = json.loads((root / "genesis.json").read_text())
    doc["block"]["gas_limit"] = args.gas_limit
    for k in senders:
        doc["alloc"][checksum_address(k.address)] = {"balance": hex(10**21)}
    (root / "genesis.json").write_text(json.dumps(doc, indent=2) + "\n")
    summary: dict[str, Any] = json.loads((root / "testnet.json").read_text())
    for node in summary["nodes"]:
        toml = Path(node["config"]).read_text()
        toml = toml.replace(
            'genesis = "../genesis.json"\n',
            f'genesis = "../genesis.json"\nlog_level = "{args.node_log_level}"\n',
        )
        Path(node["config"]).write_text(toml)
        with open(node["config"], "a") as f:
            f.write(f"\n[mempool]\nglobal_slots = {args.pool}\n"
                    f"account_slots = {args.pool}\n")  # fmt: skip
    return summary


async def run_node(command: list[str], log: Path, env: dict[str, str], *, task_status: Any) -> None:
    import os

    with open(log, "wb") as out:
        proc = await trio.lowlevel.open_process(command, stdout=out, stderr=subprocess.STDOUT,
                                                env={**os.environ, **env})  # fmt: skip
        task_status.started(proc)
        try:
            await proc.wait()
            raise RuntimeError(f"{command[-1]}: the node exited ({proc.returncode}); see {log}")
        finally:
            if proc.returncode is None:
                proc.terminate()  # SIGTERM: the node stops cleanly (a profile gets written)
                with trio.move_on_after(10) as scope:
                    scope.shield = True
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()


async def run(args: Any) -> dict[str, Any]:
    senders = [sender_key(i) for i in range(args.senders_ln)]
    per_sender = -(-args.transfers // len(senders))
    t0 = time.perf_counter()
    rounds = sign_rounds(CHAIN_ID, senders, per_sender)
    console.print(f"signed {per_sender * len(senders):,} transfers in "
                  f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    nv = args.validators
    batches: list[list[list[bytes]]] = [[] for _ in range(nv)]
    for v in range(nv):  # validator v gets senders v, v + nv, ...: nonce rounds, in batches
        flat = [raw for row in rounds for raw in row[v::nv]]
        batches[v] = [flat[i : i + args.batch] for i in range(0, len(flat), args.batch)]
    env = dict(item.split("=", 1) for item in args.node_env)
    with tempfile.TemporaryDirectory(prefix="mt-bench-localnet-") as tmp:
        root = args.keep or Path(tmp) / "testnet"
        summary = make_testnet(args, root, senders)
        nodes = summary["nodes"]
        validators = [n for n in nodes if n["validator"]]
        heads = [Heads(n["name"]) for n in nodes]
        feed = Feed(args.window, heads[[n["name"] for n in nodes].index(validators[0]["name"])])
        result: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            procs = []
            for node in nodes:
                command = [sys.executable, "-c", NODE_MAIN, "--config", node["config"]]
                if args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    out = str(args.profile / f"{node['name']}.prof")
                    command = [sys.executable, "-m", "cProfile", "-o", out, "-m",
                               "moderntensor.node", "--config", node["config"]]  # fmt: skip
                log = Path(node["config"]).parent / "node.log"
                procs.append(await nursery.start(run_node, command, log, env))
            for node, h in zip(nodes, heads, strict=True):
                await nursery.start(follow_heads, node["rpc"], h)
            with trio.fail_after(args.start_in + 90):
                while min(h.top for h in heads) < 3:
                    await trio.sleep(0.1)
            console.print(f"every node finalized {min(h.top for h in heads)}+ blocks; feeding")
            feed.base = feed.finalized()
            start = trio.current_time()
            async with trio.open_nursery() as feeders:
                for v, node in enumerate(validators):
                    rate = None if args.rate is None else args.rate / nv
                    feeders.start_soon(feeder, node["rpc"], batches[v], feed, rate)
                await trio.sleep(args.seconds)
                feed.stop = True
            end = trio.current_time()
            with trio.move_on_after(60):  # the transfers still in flight
                while any(sum(n for _, n in h.blocks.values()) - feed.base
                          < len(feed.submitted_at) for h in heads):  # fmt: skip
                    await trio.sleep(0.1)
            drained = trio.current_time()
            where = await trio.to_thread.run_sync(tx_blocks, validators[0]["rpc"], feed.heads)
            result = measure(args, nodes, heads, feed, where, start, end, drained)
            result["exit_codes"] = [p.returncode for p in procs]
            nursery.cancel_scope.cancel()
    return result


def tx_blocks(url: str, heads: Heads) -> dict[bytes, int]:
    """Transfer hash -> block number, for every block with transfers."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    where: dict[bytes, int] = {}
    try:
        numbers = [n for n, (_, count) in sorted(heads.blocks.items()) if count]
        for number in numbers:
            block = rpc_call(conn, {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber",
                                    "params": [hex(number), False]})["result"]  # fmt: skip
            for tx_hash in block["transactions"]:
                where[bytes.fromhex(tx_hash[2:])] = number
    finally:
        conn.close()
    return where


def measure(args: Any, nodes: list[dict[str, Any]], heads: list[Heads], feed: Feed,
            where: dict[bytes, int], start: float, end: float,
            drained: float) -> dict[str, Any]:  # fmt: skip
    counted_from = start + args.warmup
    per_node = []
    for node, h in zip(nodes, heads, strict=True):
        in_span = sum(n for t, n in h.blocks.values() if counted_from <= t <= end)
        latencies = [h.blocks[where[tx]][0] - sent for tx, sent in feed.submitted_at.items()
                     if tx in where and where[tx] in h.blocks]  # fmt: skip
        per_node.append({
            "node": node["name"],
            "finalized_per_s": in_span / (end - counted_from),
            "finalized": len(latencies),
            "p50_s": median(latencies),
            "p99_s": percentile(latencies, 0.99),
        })  # fmt: skip
    sizes = [n for n, (t, c) in sorted(feed.heads.blocks.items()) if c and start <= t <= end]
    return {
        "validators": args.validators,
        "seconds": end - start,
        "submitted": len(feed.submitted_at),
        "submitted_per_s": len(feed.submitted_at) / (end - start),
        "rejected": feed.rejected,
        "errors": feed.errors,
        "not_final_after_drain": sum(tx not in where for tx in feed.submitted_at),
        "drain_s": drained - end,
        "per_node": per_node,
        "block_sizes": [feed.heads.blocks[n][1] for n in sizes],
    }  # fmt: skip


def report(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{result['validators']}-validator localnet, 1 s slots, OS processes: "
                  f"{result['submitted']:,} transfers fed in {result['seconds']:.0f} s "
                  f"({result['submitted_per_s']:,.0f}/s accepted)")  # fmt: skip
    for column in ("node", "finalized transfers/s", "transfers final here", "p50 (s)", "p99 (s)"):
        table.add_column(column, justify="right")
    for row in result["per_node"]:
        table.add_row(row["node"], f"{row['finalized_per_s']:,.0f}", f"{row['finalized']:,}",
                      f"{row['p50_s']:.2f}", f"{row['p99_s']:.2f}")  # fmt: skip
    console.print(table)
    print_table("localnet details", [
        ("rejected by RPC", result["rejected"]),
        ("not final 60 s after the feed", result["not_final_after_drain"]),
        ("drain (s)", result["drain_s"]),
        ("transfers per block (feed window)", ", ".join(map(str, result["block_sizes"]))),
        ("rejection reasons", json.dumps(result["errors"])[:200]),
    ])  # fmt: skip
