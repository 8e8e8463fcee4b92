"""SIGKILL a dev node process with transfers in flight, restart it on the same data dir.

After the restart the head is the same or later; replaying every stored block on a fresh
database reproduces every state root; and the slashing-protection record agrees with every
finalized block (one proposal, one notarization, one finalization, no nullification in its
slot), so the restarted node signed nothing that conflicts with what it signed before.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from moderntensor.chain.chain import Chain
from moderntensor.chain.genesis import load_genesis
from moderntensor.chain.timing import compute_block_epoch
from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.consensus import DatabaseStore, SlashingProtection
from moderntensor.node.devnet import dev_keys
from moderntensor.state.store import Database

ROOT = Path(__file__).resolve().parents[2]
GWEI = 10**9
PORT_LINE = re.compile(rb"rpc listening .*port=(\d+)")


class DevNode:
    """A ``python -m moderntensor.node --dev`` child process with a tiny JSON-RPC client."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moderntensor.node", "--dev", "--data-dir", str(data_dir),
             "--slot-duration", "0.2", "--rpc-port", "0"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert self.proc.stderr is not None
        self.port = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            match = PORT_LINE.search(line)
            if match:
                self.port = int(match.group(1))
                break
        assert self.port, "the node did not report its RPC port"
        os.set_blocking(self.proc.stderr.fileno(), False)  # keep draining without blocking

    def call(self, method: str, *params: Any) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
        conn.close()
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def drain(self) -> None:
        assert self.proc.stderr is not None
        with contextlib.suppress(BlockingIOError, TypeError):
            self.proc.stderr.read()

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def send_transfers(node: DevNode, count: int) -> int:
    keys = dev_keys()
    sender = keys.accounts[1]
    nonce = int(node.call("eth_getTransactionCount", "0x" + sender.address.hex(), "pending"), 16)
    for i in range(count):
        tx = sign_transaction(
            DynamicFeeTransaction(
                chain_id=1337, nonce=nonce + i, max_priority_fee_per_gas=GWEI,
                max_fee_per_gas=20 * GWEI, gas=21_000, to=keys.accounts[2].address, value=1 + i,
            ),
            sender,
        )  # fmt: skip
        node.call("eth_sendRawTransaction", "0x" + tx.raw.hex())
    return nonce + count


def wait_for_height(node: DevNode, height: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    current = -1
    while time.monotonic() < deadline:
        current = int(node.call("eth_blockNumber"), 16)
        if current >= height:
            return current
        node.drain()
        time.sleep(0.1)
    raise AssertionError(f"height {current} did not reach {height}")


def wait_for_nonce(node: DevNode, nonce: int, timeout: float = 30) -> None:
    sender = "0x" + dev_keys().accounts[1].address.hex()
    deadline = time.monotonic() + timeout
    while int(node.call("eth_getTransactionCount", sender, "latest"), 16) < nonce:
        assert time.monotonic() < deadline, f"nonce {nonce} not reached"
        node.drain()
        time.sleep(0.1)


def test_sigkill_with_transfers_in_flight_then_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    node = DevNode(data_dir)
    try:
        wait_for_height(node, 3)
        included = send_transfers(node, 40)
        wait_for_nonce(node, included)  # the first forty are in blocks
        seen = int(node.call("eth_blockNumber"), 16)
        send_transfers(node, 40)  # some of these are still in flight when the kill lands
        seen = max(seen, int(node.call("eth_blockNumber"), 16))
    finally:
        code = node.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL

    node = DevNode(data_dir)
    try:
        resumed = int(node.call("eth_blockNumber"), 16)
        assert resumed >= seen
        send_transfers(node, 10)
        wait_for_height(node, resumed + 5)
    finally:
        assert node.stop(signal.SIGTERM) == 0  # clean shutdown: exit code 0

    genesis = load_genesis(data_dir / "dev-genesis.json")
    validator = dev_keys().validator.consensus.address
    with Database.open(data_dir / "chaindb") as db, Database.open(tmp_path / "replay") as fresh:
        stored = Chain(db, genesis)
        replay = Chain(fresh, genesis)
        protection = SlashingProtection(DatabaseStore(db), validator)
        transfers = 0
        for number in range(1, stored.head.number + 1):
            block_hash = stored.chaindb.get_canonical_hash(number)
            assert block_hash is not None
            block = stored.chaindb.get_block(block_hash)
            assert block is not None
            executed = replay.import_block(block)
            assert executed.state.root == block.header.state_root
            transfers += len(block.transactions)
            epoch = compute_block_epoch(number, genesis.consensus.epoch_length)
            record = protection.record_of(epoch, block.header.slot)
            assert record.propose == block.header.seal_hash
            assert record.notarize == block_hash
            assert record.finalize == block_hash
            assert not record.nullify
        assert transfers >= 50
        assert stored.head.number >= resumed + 5
