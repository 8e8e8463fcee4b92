"""``scripts/bench_rpc.py --workload nonces``: issue 15's workload (see that script's
docstring): the dev node started as a user starts it, beside Anvil, the same pre-signed
consecutive-nonce transfers sent to both in batches, end-to-end transfers/s and
eth_blockNumber req/s, side by side."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench_rpc import ROOT, Client, free_port, report, sign_nonces, start_anvil, stop, wait_rpc

from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.node.devnet import dev_keys


def start_dev_cli(
    gas_limit: int, block_time: str, accounts: int, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m moderntensor.node --dev`` with Anvil's flags, as a user starts it."""
    port = free_port()
    command = [sys.executable, "-m", "moderntensor.node", "--dev", "--rpc-port", str(port)]
    command += ["--gas-limit", str(gas_limit), "--block-time", block_time]
    command += ["--accounts", str(accounts)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
    if not wait_rpc(port, proc):
        stop(proc)
        raise RuntimeError(f"the dev node did not start: {log.read_text()[-500:]}")
    return proc, port


def nonces_at(client: Client, keys: list[PrivateKey], tag: str) -> list[int]:
    answers = client.batch(
        [("eth_getTransactionCount", [checksum_address(k.address), tag]) for k in keys]
    )
    return [int(a["result"], 16) for a in answers]


def nonces_round(
    port: int,
    keys: list[PrivateKey],
    raws: list[list[str]],
    starts: list[int],
    args: Any,
    tag: str,
    label: str,
) -> dict[str, float]:
    """Send every sender's transfers in batches (round robin over senders, each sender's
    nonces in order), then time until the last is in a block at ``tag``."""
    client = Client(port)
    per_sender = len(raws[0])
    ok = 0
    errors: dict[str, int] = {}
    t0 = time.perf_counter()
    for first in range(0, per_sender, args.batch):
        for sender_raws in raws:
            chunk = sender_raws[first : first + args.batch]
            for answer in client.batch([("eth_sendRawTransaction", [raw]) for raw in chunk]):
                if "result" in answer:
                    ok += 1
                else:
                    message = str(answer["error"].get("message"))[:80]
                    errors[message] = errors.get(message, 0) + 1
    sent = time.perf_counter() - t0
    if errors:
        print(f"[{label}] refused: {errors}", flush=True)
    targets = [start + per_sender for start in starts]
    deadline = time.monotonic() + args.timeout
    while any(n < t for n, t in zip(nonces_at(client, keys, tag), targets, strict=True)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"[{label}] transfers not in a block at {tag!r} in time")
        time.sleep(0.02)
    e2e = time.perf_counter() - t0
    out = {"accepted_tx_s": ok / sent, "e2e_tx_s": ok / e2e}
    print(
        f"[{label}] {ok}/{per_sender * len(raws)} accepted in {sent:.2f} s "
        f"({out['accepted_tx_s']:.0f} tx/s); all at {tag!r} after {e2e:.2f} s: "
        f"{out['e2e_tx_s']:.0f} transfers/s end to end",
        flush=True,
    )
    return out


def block_number_rates(ports: list[int], seconds: float, slice_s: float = 0.25) -> list[float]:
    """eth_blockNumber one after another on one keep-alive connection per server, the
    servers taking turns in slices of ``slice_s`` for ``seconds`` each, so that a change in
    the machine's load meets both alike."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    headers = {"content-type": "application/json"}
    clients = [Client(port) for port in ports]
    counts = [0] * len(ports)
    spent = [0.0] * len(ports)
    for _ in range(max(1, round(seconds / slice_s))):
        for i, client in enumerate(clients):
            t = time.perf_counter()
            while time.perf_counter() - t < slice_s:
                client.conn.request("POST", "/", body.encode(), headers)
                assert b'"result"' in client.conn.getresponse().read()
                counts[i] += 1
            spent[i] += time.perf_counter() - t
    return [n / s for n, s in zip(counts, spent, strict=True)]


_BARE_ANSWER = (
    b"HTTP/1.1 200 \r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n"
    b'{"jsonrpc":"2.0","id":1,"result":"0x10"}'
)


def serve_bare_trio(port: int) -> None:
    """``--floor``'s server: Trio's event loop and the same socket calls as the node's HTTP
    fast path (a readiness wait, a ``read``, one ``write``), nothing else: once a whole
    request is in (the head's end, then its Content-Length of body: http.client writes head
    and body separately, and a few percent arrive in two reads), one canned eth_blockNumber
    response. What any Trio server pays per request."""
    import trio

    async def handle(stream: trio.SocketStream) -> None:
        fd = stream.socket.fileno()
        buf = b""
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                data = os.read(fd, 65536)
                if not data:
                    return
                buf += data
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                at = buf.lower().find(b"content-length:", 0, end) + 15
                size = end + 4 + int(buf[at : buf.find(b"\r\n", at)])
                if len(buf) < size:
                    continue
                buf = buf[size:]
                os.write(fd, _BARE_ANSWER)
            except OSError:
                return

    trio.run(partial(trio.serve_tcp, handle, port, host="127.0.0.1"))


def start_bare_trio() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    code = f"import bench_rpc_nonces as b; b.serve_bare_trio({port})"
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((here, str(ROOT)))}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, start_new_session=True, stderr=subprocess.DEVNULL
    )
    if not wait_rpc(port, proc):
        stop(proc)
        raise RuntimeError("the bare Trio responder did not start")
    return proc, port


def run_nonces(args: Any) -> None:
    keys = list(dev_keys(accounts=args.senders).accounts)
    work = Path(tempfile.mkdtemp(prefix="bench-rpc-nonces-"))
    log = work / "node.log"
    print(f"load: {os.getloadavg()}; dev node log: {log}", flush=True)
    ours_proc, port = start_dev_cli(args.gas_limit, args.block_time, args.senders, log)
    anvil = floor = None
    floors: list[float] = []
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    try:
        if args.anvil:
            extra = ("--accounts", str(args.senders))
            anvil = start_anvil(args.anvil_dir, args.gas_limit, args.block_time, extra)
            if anvil is None:
                print("anvil not available: no side-by-side figures")
        if args.floor:
            floor = start_bare_trio()
        sides = [(port, "finalized", "moderntensor --dev (finalized)", ours)]
        if anvil is not None:
            sides.append((anvil[1], "latest", "anvil 1.7.1 (latest)", theirs))
        for r in range(args.repeat):
            print(f"round {r + 1}: load {os.getloadavg()[0]:.2f}", flush=True)
            order = sides if r % 2 == 0 else sides[::-1]  # who goes first alternates
            signed: dict[tuple[int, ...], list[list[str]]] = {}
            for side_port, tag, label, results in order:
                starts = nonces_at(Client(side_port), keys, "pending")
                if tuple(starts) not in signed:  # the same transfers for both chains
                    signed[tuple(starts)] = sign_nonces(keys, starts, args.per_sender)
                raws = signed[tuple(starts)]
                results.append(nonces_round(side_port, keys, raws, starts, args, tag, label))
            time.sleep(args.settle)  # both chains idle again before eth_blockNumber
            ports = [side[0] for side in order] + ([floor[1]] if floor is not None else [])
            rates = block_number_rates(ports, args.bn_seconds)
            for (_, _, label, results), rate in zip(order, rates, strict=False):
                results[-1]["block_number_req_s"] = rate
                print(f"[{label}] eth_blockNumber: {rate:.0f} req/s", flush=True)
            if floor is not None:
                floors.append(rates[-1])
                print(f"[bare Trio responder] eth_blockNumber: {rates[-1]:.0f} req/s", flush=True)
    finally:
        stop(ours_proc)
        if anvil is not None:
            stop(anvil[0])
        if floor is not None:
            stop(floor[0])
    print(f"load after: {os.getloadavg()}")
    report(ours, theirs)
    if floors and theirs:
        ratios = [f / t["block_number_req_s"] for f, t in zip(floors, theirs, strict=True)]
        print(
            f"block_number_req_s, bare Trio responder: {statistics.median(floors):.0f} = "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})x anvil"
        )
