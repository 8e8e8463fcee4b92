"""JSON-RPC throughput: eth_sendRawTransaction one by one and in batches of 500, end-to-end
finalized transfers per second with 1-second slots, and eth_blockNumber requests per second.

The node runs in a child process (so client and server do not share a GIL): the real dev
node (tests/rpc/devnode.py: the node's supervisor with consensus driver, mempool and RPC).
With ``--anvil`` the same client measures Anvil (npm ``@foundry-rs/anvil``, installed into
``--anvil-dir`` if missing) side by side and prints the ratios. The client is plain
http.client with keep-alive (web3.py would measure itself, DESIGN §9).

    python scripts/bench_rpc.py [--senders 100] [--per-sender 120] [--anvil] [--repeat 3]

``--repeat`` runs the rounds on the same two nodes, ours and Anvil's alternating, so that a
shared, noisy machine skews both alike; ratios are per round.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
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
    sink = PrivateKey(b"\x77" * 32).address
    per_key = []
    for key in keys:
        n0 = start_nonce[key.address]
        per_key.append(
            [
                "0x"
                + sign_transaction(
                    DynamicFeeTransaction(
                        chain_id=CHAIN_ID,
                        nonce=n0 + i,
                        max_priority_fee_per_gas=GWEI,
                        max_fee_per_gas=50 * GWEI,
                        gas=21_000,
                        to=sink,
                        value=1,
                    ),
                    key,
                ).raw.hex()
                for i in range(per_sender)
            ]
        )
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


def start_anvil(anvil_dir: Path) -> tuple[subprocess.Popen[bytes], int] | None:
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
    port = 18545
    proc = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--chain-id",
            str(CHAIN_ID),
            "--block-time",
            "1",
            "--gas-limit",
            "1000000000",
            "--silent",
        ],
        start_new_session=True,  # the npm wrapper starts the binary: stop the whole group
    )
    for _ in range(100):
        try:
            Client(port).call("eth_chainId", [])
            return proc, port
        except OSError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--per-sender", type=int, default=120)
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
