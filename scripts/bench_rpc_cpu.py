"""Server CPU per JSON-RPC request: what wall-clock req/s cannot show on a shared machine.

Starts the dev node of a checkout (``scripts/bench_rpc.py --serve``: the real node in a child
process, 1 s slots) and reads the child's user+system CPU time from /proc around 10,000
``eth_blockNumber`` calls (three rounds) and 3,000 ``eth_sendRawTransaction`` calls one by one
(20 senders), over one keep-alive http.client connection; the CPU the idle node spends per
second (its slots) is measured before each round and subtracted. Other jobs on the machine
change wall-clock figures several-fold but these much less, so two checkouts can be compared
by running this alternately against each:

    python scripts/bench_rpc_cpu.py [CHECKOUT]   (default: this one)

It ends with the same figure for a bare Trio responder (``bench_rpc_nonces.py --floor``'s: a
readiness wait, one ``read``, one canned ``write``): what Trio's event loop alone costs per
request, the floor under any Trio server.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]).resolve()
sys.path.insert(0, str(ROOT))

from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction  # noqa: E402
from moderntensor.crypto import PrivateKey  # noqa: E402

GWEI = 10**9
SENDERS = 20
PER_SENDER = 150
BLOCK_NUMBER = b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    child = subprocess.Popen(
        [sys.executable, "scripts/bench_rpc.py", "--serve", str(SENDERS)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    port = int(child.stdout.readline())

    def cpu() -> float:
        return process_cpu_s(child.pid)

    conn = http.client.HTTPConnection("127.0.0.1", port)

    def post(body: bytes) -> bytes:
        conn.request("POST", "/", body, {"content-type": "application/json"})
        return conn.getresponse().read()

    keys = [PrivateKey((i + 1000).to_bytes(32, "big")) for i in range(SENDERS)]
    raws = [
        sign_transaction(
            DynamicFeeTransaction(
                chain_id=1337, nonce=n, max_priority_fee_per_gas=GWEI, max_fee_per_gas=50 * GWEI,
                gas=21_000, to=b"\x77" * 20, value=1,
            ),
            key,
        ).raw.hex()
        for n in range(PER_SENDER)
        for key in keys
    ]  # fmt: skip
    for _ in range(500):
        post(BLOCK_NUMBER)
    idle = 0.0
    try:
        for _ in range(3):
            before = cpu()
            time.sleep(2)
            idle = (cpu() - before) / 2
            c0, t0 = cpu(), time.monotonic()
            for _ in range(10_000):
                post(BLOCK_NUMBER)
            used, took = cpu() - c0, time.monotonic() - t0
            print(f"eth_blockNumber: {(used - idle * took) / 10_000 * 1e6:.1f} µs CPU, "
                  f"{10_000 / took:.0f} req/s")  # fmt: skip
        c0, t0 = cpu(), time.monotonic()
        errors = 0
        for raw in raws:
            body = b'{"jsonrpc":"2.0","id":1,"method":"eth_sendRawTransaction","params":["0x%s"]}'
            errors += "error" in orjson.loads(post(body % raw.encode()))
        used, took = cpu() - c0, time.monotonic() - t0
        print(f"eth_sendRawTransaction: {(used - idle * took) / len(raws) * 1e6:.1f} µs CPU, "
              f"{len(raws) / took:.0f} tx/s, {errors} errors")  # fmt: skip
    finally:
        child.stdin.close()
        child.wait(60)
    floor_cpu()


def floor_cpu() -> None:
    from bench_rpc import stop
    from bench_rpc_nonces import start_bare_trio

    proc, port = start_bare_trio()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    try:
        for _ in range(3):
            c0, t0 = process_cpu_s(proc.pid), time.monotonic()
            for _ in range(10_000):
                conn.request("POST", "/", BLOCK_NUMBER, {"content-type": "application/json"})
                conn.getresponse().read()
            took = time.monotonic() - t0
            used = process_cpu_s(proc.pid) - c0
            print(f"bare Trio responder: {used / 10_000 * 1e6:.1f} µs CPU, "
                  f"{10_000 / took:.0f} req/s")  # fmt: skip
    finally:
        conn.close()
        stop(proc)


if __name__ == "__main__":
    main()
