"""A testnet of REAL OS processes on 127.0.0.1: ``moderntensor testnet init`` writes it, and
each node runs as ``python -m moderntensor.node --config DIR/<name>/node.toml`` started here
with ``subprocess.Popen`` (not through ``scripts/localnet``), so a test can SIGKILL one node
and start it again on its data directory.

Each test boots a bootnode and four validators (0.5 s slots; 0.25 s for the late node) on free
port runs, polls every node's JSON-RPC with ``http.client`` (1 s timeout), and bounds every
wait with a deadline. Every
child is killed in a ``finally`` block; each node's output is in ``DIR/<name>/stdout.log`` and
the last lines of every log are in the failure message.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from eth_account import Account

from moderntensor.cli import main
from tests.ports import free_port_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SLOT_S = 0.5
VALIDATORS = 4
CHAIN_ID = 7777
GWEI = 10**9
RPC_TIMEOUT_S = 1.0
POLL_S = 0.2


def rpc(url: str, method: str, *params: Any) -> Any:
    """One JSON-RPC call; None while the node does not answer (or answers an error)."""
    parts = urlsplit(url)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=RPC_TIMEOUT_S)
    try:
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return answer.get("result") if isinstance(answer, dict) else None


class Node:
    """One node process of the testnet (started, killed and restarted by the tests)."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.name: str = entry["name"]
        self.config = Path(entry["config"])
        self.url: str = entry["rpc"]
        self.validator: bool = entry["validator"]
        self.log = self.config.parent / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log, "ab") as out:
            out.write(f"\n=== start at {time.time():.3f} ===\n".encode())
            out.flush()
            command = [sys.executable, "-m", "moderntensor.node", "--config", str(self.config)]
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL, and wait (bounded) until the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 5 s: for the finally block."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def finalized(self) -> int | None:
        answer = rpc(self.url, "mt_finality")
        if not isinstance(answer, dict) or "finalizedNumber" not in answer:
            return None
        return int(answer["finalizedNumber"], 16)

    def block_hash(self, number: int) -> str | None:
        block = rpc(self.url, "eth_getBlockByNumber", hex(number), False)
        return block.get("hash") if isinstance(block, dict) else None

    def balance(self, address: str) -> int | None:
        answer = rpc(self.url, "eth_getBalance", address, "finalized")
        return int(answer, 16) if isinstance(answer, str) else None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = ["(no log)"]
        code = None if self.proc is None else self.proc.poll()
        return f"--- {self.name} (exit {code}) {self.log}\n" + "\n".join(text)


class LocalTestnet:
    def __init__(self, directory: Path) -> None:
        summary = json.loads((directory / "testnet.json").read_text())
        self.dir = directory
        self.nodes = [Node(entry) for entry in summary["nodes"]]
        self.validators = [n for n in self.nodes if n.validator]

    def logs(self) -> str:
        return "\n".join(n.tail() for n in self.nodes)

    def wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``done()`` every 0.2 s; fail after ``timeout_s`` with every node's log tail."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out ({timeout_s} s) waiting for {what}\n{self.logs()}")
            time.sleep(POLL_S)

    def finalized(self, nodes: list[Node]) -> list[int | None]:
        return [n.finalized() for n in nodes]

    def wait_finalized(self, nodes: list[Node], height: int, timeout_s: float) -> None:
        last: list[int | None] = []

        def reached() -> bool:
            nonlocal last
            last = self.finalized(nodes)
            return all(h is not None and h >= height for h in last)

        names = [n.name for n in nodes]
        self.wait(reached, timeout_s, f"finalized >= {height} at {names} (last {last})")

    def hashes(self, node: Node, top: int) -> list[str | None]:
        return [node.block_hash(h) for h in range(1, top + 1)]

    def assert_same_chain(self, nodes: list[Node]) -> int:
        """Every node has the same hash at every height up to the lowest finalized one; that
        height (each node's finalized blocks are read, so none of them may disagree)."""
        heights = [n.finalized() for n in nodes]
        assert all(h is not None for h in heights), f"{heights}\n{self.logs()}"
        top = min(h for h in heights if h is not None)
        chains = {n.name: self.hashes(n, top) for n in nodes}
        first = next(iter(chains.values()))
        assert all(h is not None for h in first), f"missing blocks: {chains}\n{self.logs()}"
        for name, chain in chains.items():
            assert chain == first, f"{name} disagrees: {chains}\n{self.logs()}"
        return top


def init_testnet(out: Path, *extra: str) -> None:
    """``testnet init``: a bootnode and four validators (and ``--full-nodes``), 0.5 s slots,
    free ports."""
    full = int(extra[extra.index("--full-nodes") + 1]) if "--full-nodes" in extra else 0
    count = VALIDATORS + 1 + full
    rpc_port = free_port_run(2 * count)  # one run: RPC ports, then p2p ports
    p2p_port = rpc_port + count
    args = ["testnet", "init", "--validators", str(VALIDATORS), "--out", str(out)]
    args += ["--rpc-port", str(rpc_port), "--p2p-port", str(p2p_port), "--start-in", "3"]
    args += ["--slot-duration", str(SLOT_S), *extra]
    assert main(args) == 0


@contextmanager
def running_testnet(
    tmp_path: Path, *extra: str, late: tuple[str, ...] = ()
) -> Iterator[LocalTestnet]:
    """Boot every node (but those named in ``late``) as its own process; kill every one of
    them afterwards."""
    out = tmp_path / "net"
    init_testnet(out, *extra)
    net = LocalTestnet(out)
    try:
        booted = [n for n in net.nodes if n.name not in late]
        for node in booted:
            node.start()
        net.wait(
            lambda: all(rpc(n.url, "mt_finality") is not None for n in booted),
            20,
            "every node's RPC",
        )
        yield net
    finally:
        for node in net.nodes:
            try:
                node.stop()
            except Exception:  # the next node must still be stopped
                node.kill()


LATE_BLOCKS = 500
LATE_SLOT_S = 0.25


def test_four_validators_finalize_the_same_blocks_and_a_node_500_blocks_late_follows(
    tmp_path: Path,
) -> None:
    """Four validators finalize the same blocks; a fifth node (a full node) started once
    they are 500 blocks on catches up by range sync while the chain keeps going, then
    follows it block by block."""
    extra = ("--full-nodes", "1", "--slot-duration", str(LATE_SLOT_S))
    with running_testnet(tmp_path, *extra, late=("fullnode-0",)) as net:
        net.wait_finalized(net.validators, 8, 30)
        assert net.assert_same_chain(net.validators) >= 8
        slots_needed = LATE_BLOCKS * LATE_SLOT_S
        net.wait_finalized(net.validators, LATE_BLOCKS, 3 * slots_needed)
        (late,) = [n for n in net.nodes if n.name == "fullnode-0"]
        late.start()
        began = time.monotonic()
        net.wait(lambda: late.finalized() is not None, 20, "fullnode-0's RPC")
        target = max(h or 0 for h in net.finalized(net.validators))
        assert target >= LATE_BLOCKS and (late.finalized() or 0) < target - 400, (
            f"not late: {late.finalized()} of {target}"
        )
        net.wait_finalized([late], target, 120)
        caught_up_s = time.monotonic() - began
        net.wait(lambda: "sync finished" in late.log.read_text(errors="replace"), 30,
                 "fullnode-0 caught up by range sync")  # fmt: skip
        # and then it follows: new blocks reach it as they are finalized
        now = max(h or 0 for h in net.finalized(net.validators))
        net.wait_finalized([late], now + 8, 30)
        top = net.assert_same_chain([*net.validators, late])
        assert top >= now
        assert all(n.alive() for n in net.nodes), net.logs()
        print(f"fullnode-0: {target} blocks behind, caught up in {caught_up_s:.1f} s")


def test_transfer_sent_to_one_validator_is_final_and_visible_at_all(tmp_path: Path) -> None:
    sender = Account.create()
    recipient = Account.create().address
    with running_testnet(tmp_path, "--alloc", f"{sender.address}=1000") as net:
        net.wait_finalized(net.validators, 1, 20)
        amount = 12_345 * GWEI
        tx = {
            "chainId": CHAIN_ID,
            "nonce": 0,
            "to": recipient,
            "value": amount,
            "gas": 21_000,
            "maxFeePerGas": 10 * GWEI,
            "maxPriorityFeePerGas": 2 * GWEI,
        }
        signed = Account.sign_transaction(tx, sender.key)
        raw = "0x" + bytes(signed.raw_transaction).hex()
        sent = rpc(net.validators[1].url, "eth_sendRawTransaction", raw)
        assert sent == "0x" + bytes(signed.hash).hex(), f"{sent}\n{net.logs()}"
        net.wait(
            lambda: all(n.balance(recipient) == amount for n in net.validators),
            20,
            f"balance {amount} of {recipient} (finalized) at every validator",
        )
        receipts = [rpc(n.url, "eth_getTransactionReceipt", sent) for n in net.validators]
        assert all(isinstance(r, dict) and r.get("status") == "0x1" for r in receipts), receipts
        assert len({r["blockHash"] for r in receipts}) == 1, receipts
        net.assert_same_chain(net.validators)


def test_kill_one_then_two_validators_then_restart_them(tmp_path: Path) -> None:
    with running_testnet(tmp_path) as net:
        v = net.validators
        net.wait_finalized(v, 2, 20)

        # 1 of 4 down: the other three are a quorum and keep finalizing.
        v[3].kill()
        live = v[:3]
        base = max(h or 0 for h in net.finalized(live))
        net.wait_finalized(live, base + 4, 20)
        net.assert_same_chain(live)

        # 2 of 4 down: no quorum; finality stops and the survivors never disagree.
        v[2].kill()
        live = v[:2]
        time.sleep(2 * SLOT_S)  # a certificate already formed may still arrive
        stalled = max(h or 0 for h in net.finalized(live))
        deadline = time.monotonic() + 6 * SLOT_S
        while time.monotonic() < deadline:
            now = net.finalized(live)
            assert all(h is not None and h <= stalled for h in now), (
                f"finalized grew without a quorum: {stalled} -> {now}\n{net.logs()}"
            )
            time.sleep(POLL_S)
        net.assert_same_chain(live)
        before = net.hashes(live[0], stalled)

        # Restarted on their data directories: finality resumes at all four.
        v[2].start()
        v[3].start()
        net.wait_finalized(v, stalled + 3, 30)
        net.assert_same_chain(v)
        net.assert_same_chain(net.nodes)  # the bootnode follows the same chain
        assert net.hashes(v[3], stalled) == before  # nothing final was replaced
        assert all(n.alive() for n in net.nodes), net.logs()


def test_a_validator_restarted_on_a_wiped_data_dir_syncs_and_is_never_slashed(
    tmp_path: Path,
) -> None:
    """Its data directory (chain, journal, slashing protection) is deleted while it is down;
    its keys are kept. It syncs from its peers (range sync: it is epochs behind), learns the
    votes it signed before from them, signs again (finality then needs it: another validator
    is killed) and no evidence is ever found against it."""
    with running_testnet(tmp_path, "--epoch-length", "8") as net:
        v = net.validators
        genesis = rpc(v[0].url, "mt_validators")
        assert isinstance(genesis, list) and len(genesis) == VALIDATORS, genesis
        net.wait_finalized(v, 10, 30)

        v[3].kill()
        data = v[3].config.parent / "data"
        assert (data).is_dir()
        shutil.rmtree(data)
        live = v[:3]
        base = max(h or 0 for h in net.finalized(live))
        net.wait_finalized(live, base + 24, 40)  # three epochs further on without it
        v[3].start()
        target = max(h or 0 for h in net.finalized(live))
        net.wait_finalized([v[3]], target, 40)
        net.wait(lambda: "sync finished" in v[3].log.read_text(errors="replace"), 30,
                 "validator-3 caught up by range sync")  # fmt: skip

        # Without v[2], finality needs v[3]'s votes: it signs again.
        v[2].kill()
        live = [v[0], v[1], v[3]]
        base = max(h or 0 for h in net.finalized(live))
        net.wait_finalized(live, base + 4, 40)
        net.assert_same_chain(live)
        after = rpc(v[0].url, "mt_validators")
        assert isinstance(after, list), after
        assert [(r["validatorId"], r["stake"], r["status"]) for r in after] == [
            (r["validatorId"], r["stake"], "active") for r in genesis
        ], (genesis, after)  # nobody slashed or jailed
        assert all(not r["jailed"] for r in after)
        for node in net.nodes:  # and no node ever caught it signing twice
            assert "equivocation" not in node.log.read_text(errors="replace"), net.logs()
