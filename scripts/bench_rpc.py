"""JSON-RPC throughput against the dev node, optionally beside Anvil (``--anvil``).

``--workload mixed`` (default): eth_sendRawTransaction one by one and in batches of 500,
end-to-end finalized transfers per second with 1-second slots, eth_blockNumber requests per
second; the node in a child process (tests/rpc/devnode.py: supervisor, consensus driver,
mempool, RPC), ``--senders`` funded accounts.

``--workload nonces``: issue 15's workload. ``python -m moderntensor.node --dev`` and
``anvil``, both with ``--gas-limit`` (300M) and ``--block-time`` (1 s) and ``--accounts
--senders`` (the same "test test ... junk" accounts, chain id 1337 on both); ``--senders``
(10) x ``--per-sender`` (2,000) consecutive-nonce EIP-1559 transfers signed once and sent to
both as batches of ``--batch`` (500) eth_sendRawTransaction, round robin over the senders
(each sender's nonces in order). End to end = transfers / time from the first send until
every sender's nonce at the tag covers its last transfer: ``finalized`` on ours, ``latest``
on Anvil (its ``finalized`` trails by 64 blocks; counting inclusion favours Anvil). After
both bursts and ``--settle`` seconds, eth_blockNumber req/s on each (``--bn-seconds`` each,
the two taking turns every 0.25 s; ``--floor`` adds a bare Trio responder, what any Trio
server pays per request). Who goes first alternates per round.

Anvil is npm ``@foundry-rs/anvil``, installed into ``--anvil-dir`` if missing. The client is
plain http.client with keep-alive, one connection, one request at a time, for both (web3.py
would measure itself, DESIGN §9).

    python scripts/bench_rpc.py [--senders 100] [--per-sender 120] [--anvil] [--repeat 3]
    python scripts/bench_rpc.py --workload nonces --anvil --repeat 5

``--repeat`` runs the rounds on the same two nodes, ours and Anvil's alternating, so that a
shared, noisy machine skews both alike; ratios are per round, the summary gives medians.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction  # noqa: E402
from moderntensor.crypto import PrivateKey, checksum_address  # noqa: E402

CHAIN_ID = 1337
GWEI = 10**9


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.next_id = 1

    def post(self, payload: Any) -> Any:
        body = json.dumps(payload).encode()
        self.conn.request("POST", "/", body, {"content-type": "application/json"})
        return json.loads(self.conn.getresponse().read())

    def call(self, method: str, params: list[Any]) -> Any:
        self.next_id += 1
        answer = self.post(
            {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        )
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
        ]
        answers: list[Any] = self.post(payload)
        return answers


def sign_all(
    keys: list[PrivateKey], per_sender: int, start_nonce: dict[bytes, int]
) -> list[list[str]]:
    """Round-robin over senders so every batch spreads across accounts, nonces in order."""
    per_key = sign_nonces(keys, [start_nonce[k.address] for k in keys], per_sender)
    return [[per_key[k][i] for k in range(len(keys))] for i in range(per_sender)]


def accepted(answers: list[Any]) -> int:
    return sum(1 for a in answers if "result" in a)


def measure(
    port: int, keys: list[PrivateKey], per_sender: int, label: str, final_tag: str = "finalized"
) -> dict[str, float]:
    client = Client(port)
    nonces = {
        k.address: int(
            client.call("eth_getTransactionCount", [checksum_address(k.address), "pending"]), 16
        )
        for k in keys
    }
    rounds = sign_all(keys, per_sender, nonces)
    flat = [raw for r in rounds for raw in r]
    third = len(flat) // 3
    one_by_one, batched, e2e = flat[: third // 3], flat[third // 3 : third], flat[third:]
    out: dict[str, float] = {}

    t = time.perf_counter()
    ok = 0
    for raw in one_by_one:
        ok += "result" in client.post(
            {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw]}
        )
    out["accepted_one_by_one_tx_s"] = ok / (time.perf_counter() - t)
    print(
        f"[{label}] one by one: {ok}/{len(one_by_one)} accepted, "
        f"{out['accepted_one_by_one_tx_s']:.0f} tx/s",
        flush=True,
    )

    t = time.perf_counter()
    ok = 0
    for i in range(0, len(batched), 500):
        ok += accepted(
            client.batch([("eth_sendRawTransaction", [raw]) for raw in batched[i : i + 500]])
        )
    out["accepted_batch500_tx_s"] = ok / (time.perf_counter() - t)
    print(
        f"[{label}] batches of 500: {ok}/{len(batched)} accepted, "
        f"{out['accepted_batch500_tx_s']:.0f} tx/s",
        flush=True,
    )

    # end to end: wait for the earlier phases to be final, then time e2e until final
    wait_final(client, keys, nonces, third // len(keys), final_tag)
    t = time.perf_counter()
    ok = 0
    for i in range(0, len(e2e), 500):
        ok += accepted(
            client.batch([("eth_sendRawTransaction", [raw]) for raw in e2e[i : i + 500]])
        )
    wait_final(client, keys, nonces, per_sender, final_tag)
    out["e2e_finalized_tx_s"] = ok / (time.perf_counter() - t)
    print(
        f"[{label}] end to end ({final_tag}): {ok}/{len(e2e)} in "
        f"{time.perf_counter() - t:.1f} s, {out['e2e_finalized_tx_s']:.0f} tx/s",
        flush=True,
    )

    t = time.perf_counter()
    n = 0
    while time.perf_counter() - t < 3:
        client.call("eth_blockNumber", [])
        n += 1
    out["block_number_req_s"] = n / (time.perf_counter() - t)
    print(f"[{label}] eth_blockNumber: {out['block_number_req_s']:.0f} req/s", flush=True)
    return out


def wait_final(
    client: Client,
    keys: list[PrivateKey],
    nonces: dict[bytes, int],
    per_sender: int,
    tag: str,
    timeout: float = 180,
) -> None:
    """Until every sender's nonce at ``tag`` reached its target (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = client.batch(
            [("eth_getTransactionCount", [checksum_address(k.address), tag]) for k in keys]
        )
        if all(
            int(a["result"], 16) >= nonces[k.address] + per_sender
            for a, k in zip(answers, keys, strict=True)
        ):
            return
        time.sleep(0.05)
    raise RuntimeError("transactions not finalized in time")


def serve_dev_node(senders: int) -> None:
    """Child process: the dev node with 1-second slots, funded senders, a large pool."""
    from moderntensor.mempool import MempoolConfig
    from tests.rpc.devnode import DevNode

    keys = [PrivateKey((i + 1000).to_bytes(32, "big")) for i in range(senders)]
    node = DevNode(
        Path(tempfile.mkdtemp(prefix="bench-rpc-")),
        slot_duration="1",
        gas_limit=1_000_000_000,
        extra_accounts=[k.address for k in keys],
        pool_config=MempoolConfig(global_slots=200_000, account_slots=10_000, account_queue=10_000),
    ).start()
    print(node.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    node.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_rpc(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    """Until the server on ``port`` answers eth_chainId (bounded; False if it died or timed out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            Client(port).call("eth_chainId", [])
            return True
        except OSError:
            time.sleep(0.1)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own session, and its children (the npm wrapper's binary)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_anvil(
    anvil_dir: Path,
    gas_limit: int = 1_000_000_000,
    block_time: str = "1",
    extra: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = anvil_dir / "node_modules" / ".bin" / "anvil"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            return None
        anvil_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(anvil_dir), "@foundry-rs/anvil@1.7.1"],
            capture_output=True,
            timeout=600,
        )
        if done.returncode != 0 or not binary.exists():
            print("anvil did not install:", done.stderr.decode()[-300:])
            return None
    port = free_port()
    proc = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--chain-id",
            str(CHAIN_ID),
            "--block-time",
            block_time,
            "--gas-limit",
            str(gas_limit),
            "--silent",
            *extra,
        ],
        start_new_session=True,  # the npm wrapper starts the binary: stop the whole group
    )
    if wait_rpc(port, proc, 10):
        return proc, port
    stop(proc)
    return None


def sign_nonces(keys: list[PrivateKey], starts: list[int], count: int) -> list[list[str]]:
    """Per sender, ``count`` EIP-1559 transfers with consecutive nonces from its start."""
    sink = PrivateKey(b"\x77" * 32).address
    return [
        [
            "0x"
            + sign_transaction(
                DynamicFeeTransaction(
                    chain_id=CHAIN_ID,
                    nonce=start + i,
                    max_priority_fee_per_gas=GWEI,
                    max_fee_per_gas=50 * GWEI,
                    gas=21_000,
                    to=sink,
                    value=1,
                ),
                key,
            ).raw.hex()
            for i in range(count)
        ]
        for key, start in zip(keys, starts, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workload",
        choices=("mixed", "nonces"),
        default="mixed",
        help="mixed: one by one, batches, end to end from --senders accounts (default); "
        "nonces: --senders dev accounts x --per-sender consecutive nonces in --batch batches "
        "against `python -m moderntensor.node --dev` with --gas-limit and --block-time",
    )
    parser.add_argument("--senders", type=int, help="default 100 (mixed), 10 (nonces)")
    parser.add_argument("--per-sender", type=int, help="default 120 (mixed), 2000 (nonces)")
    parser.add_argument("--batch", type=int, default=500, help="nonces: calls per batch")
    parser.add_argument("--gas-limit", type=int, default=300_000_000, help="nonces: both chains")
    parser.add_argument("--block-time", default="1", help="nonces: seconds, both chains")
    parser.add_argument("--bn-seconds", type=float, default=3.0, help="eth_blockNumber seconds")
    parser.add_argument("--timeout", type=float, default=180.0, help="nonces: per round, s")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="nonces: also a bare Trio responder's eth_blockNumber (the event loop's floor)",
    )
    parser.add_argument(
        "--settle", type=float, default=2.0, help="nonces: idle seconds before eth_blockNumber"
    )
    parser.add_argument("--anvil", action="store_true", help="also measure Anvil and print ratios")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds on the same two nodes, alternating (medians and per-round ratios at the end)",
    )
    parser.add_argument(
        "--anvil-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench-anvil"
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_dev_node(args.serve)
        return
    nonces = args.workload == "nonces"
    if args.senders is None:
        args.senders = 10 if nonces else 100
    if args.per_sender is None:
        args.per_sender = 2000 if nonces else 120
    if nonces:
        from bench_rpc_nonces import run_nonces  # scripts/ is on sys.path (this file's dir)

        run_nonces(args)
        return
    keys = [PrivateKey((i + 1000).to_bytes(32, "big")) for i in range(args.senders)]
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(args.senders)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline())
    anvil = None
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    try:
        if args.anvil:
            anvil = start_anvil(args.anvil_dir)
            if anvil is None:
                print("anvil not available: no side-by-side figures")
            else:
                client = Client(anvil[1])
                for k in keys:
                    client.call("anvil_setBalance", [checksum_address(k.address), hex(10**24)])
        for _ in range(args.repeat):
            ours.append(measure(port, keys, args.per_sender, "moderntensor node (1 s slots)"))
            if anvil is not None:
                # Anvil's "finalized" trails "latest" by 64 blocks (a minute at 1 s): count
                # inclusion, which favours Anvil (ours counts finality)
                label = "anvil 1.7.1 (--block-time 1)"
                theirs.append(measure(anvil[1], keys, args.per_sender, label, "latest"))
    finally:
        child.stdin.close()
        child.wait(60)
        if anvil is not None:
            os.killpg(anvil[0].pid, signal.SIGKILL)
            anvil[0].wait()
    report(ours, theirs)


def report(ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> None:
    """One line per metric: ours, Anvil's and the ratio (medians and ranges over rounds)."""

    def spread(values: list[float], fmt: str) -> str:
        if len(values) == 1:
            return format(values[0], fmt)
        low, high = min(values), max(values)
        return f"{statistics.median(values):{fmt}} ({low:{fmt}}-{high:{fmt}})"

    if not theirs:
        if len(ours) > 1:
            for name in ours[0]:
                print(f"{name}: {spread([r[name] for r in ours], '.0f')}")
        return
    for name in ours[0]:
        mine = [r[name] for r in ours]
        other = [r[name] for r in theirs]
        ratios = [a / b for a, b in zip(mine, other, strict=True)]
        print(
            f"{name}: moderntensor {spread(mine, '.0f')} / anvil {spread(other, '.0f')} "
            f"= {spread(ratios, '.2f')}x"
        )


if __name__ == "__main__":
    main()
