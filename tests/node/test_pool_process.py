"""The pool in a real ``python -m moderntensor.node --dev`` process, over its JSON-RPC.

* 2,000 consecutive nonces from one account (a load test, an Anvil user) are all accepted
  under ``--dev``'s limits and all mined.
* Transactions sent to the node's RPC survive ``kill -9``: the restarted node has them pending
  again (from its journal), and they are mined once their nonce gap fills.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from moderntensor.chain.transactions import DynamicFeeTransaction, Transaction, sign_transaction
from moderntensor.crypto import PrivateKey
from moderntensor.node._tx_journal import JOURNAL_FILE, decode_records
from moderntensor.node.devnet import dev_keys
from tests.ports import free_port_run

ROOT = Path(__file__).resolve().parents[2]
GWEI = 10**9
KEYS = dev_keys()


class NodeProcess:
    """``python -m moderntensor.node --dev --data-dir D --rpc-port P`` and a JSON-RPC client."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port_run(1)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moderntensor.node", "--dev", "--data-dir", str(data_dir),
             "--rpc-port", str(self.port), "--slot-duration", "0.5"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, "the node exited"
            with contextlib.suppress(OSError):
                self.call("eth_blockNumber")
                return
            assert time.monotonic() < deadline, "the node did not answer within 60 s"
            time.sleep(0.1)

    def post(self, body: Any) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", "/", json.dumps(body), {"Content-Type": "application/json"})
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def call(self, method: str, *params: Any) -> Any:
        reply = self.post({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def send_batch(self, txs: list[Transaction]) -> list[Any]:
        """``eth_sendRawTransaction`` for each, in one batch; the answers in order."""
        batch = [
            {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction",
             "params": ["0x" + tx.raw.hex()]}
            for i, tx in enumerate(txs)
        ]  # fmt: skip
        answers = sorted(self.post(batch), key=lambda a: a["id"])
        return [a.get("result", a.get("error")) for a in answers]

    def nonce(self, key: PrivateKey, tag: str = "latest") -> int:
        return int(self.call("eth_getTransactionCount", "0x" + key.address.hex(), tag), 16)

    def wait_for_nonce(self, key: PrivateKey, nonce: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.nonce(key) < nonce:
            assert time.monotonic() < deadline, f"nonce {nonce} not reached: {self.nonce(key)}"
            time.sleep(0.2)

    def kill(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)


def transfers(key: PrivateKey, nonces: range | list[int], value: int = 1) -> list[Transaction]:
    return [
        sign_transaction(
            DynamicFeeTransaction(
                chain_id=1337,
                nonce=n,
                max_priority_fee_per_gas=GWEI,
                max_fee_per_gas=20 * GWEI,
                gas=21_000,
                to=KEYS.accounts[9].address,
                value=value,
            ),
            key,
        )
        for n in nonces
    ]


def test_2000_consecutive_nonces_from_one_sender_are_accepted_and_mined(tmp_path: Path) -> None:
    sender = KEYS.accounts[4]
    txs = transfers(sender, range(2000))
    node = NodeProcess(tmp_path / "data")
    try:
        results = []
        for start in range(0, len(txs), 500):
            results += node.send_batch(txs[start : start + 500])
        assert results == ["0x" + tx.hash.hex() for tx in txs], "every one accepted"
        assert node.nonce(sender, "pending") == 2000
        node.wait_for_nonce(sender, 2000)  # 42M gas: at least two 30M-gas blocks
        for tx in (txs[0], txs[999], txs[-1]):
            receipt = node.call("eth_getTransactionReceipt", "0x" + tx.hash.hex())
            assert receipt["status"] == "0x1"
    finally:
        assert node.kill(signal.SIGTERM) == 0


def test_rpc_transactions_survive_kill_9_and_are_mined_after_the_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    sender, other = KEYS.accounts[1], KEYS.accounts[3]
    mined = transfers(sender, range(3))
    # behind a gap at nonce 3, so they wait (queued) until it fills after the restart
    waiting = transfers(sender, range(4, 14)) + transfers(other, [1, 2])
    node = NodeProcess(data_dir)
    try:
        assert node.send_batch(mined) == ["0x" + tx.hash.hex() for tx in mined]
        node.wait_for_nonce(sender, 3)
        for tx in waiting[:4]:  # one at a time, and the rest as a batch (pre-decoded)
            assert node.call("eth_sendRawTransaction", "0x" + tx.raw.hex()) == "0x" + tx.hash.hex()
        assert node.send_batch(waiting[4:]) == ["0x" + tx.hash.hex() for tx in waiting[4:]]
    finally:
        assert node.kill(signal.SIGKILL) == -signal.SIGKILL  # no shutdown: nothing flushed
    journaled, _ = decode_records((data_dir / JOURNAL_FILE).read_bytes())
    assert {tx.raw for tx in waiting} <= set(journaled)

    node = NodeProcess(data_dir)
    try:
        for tx in waiting:
            found = node.call("eth_getTransactionByHash", "0x" + tx.hash.hex())
            assert found is not None and found["blockHash"] is None, "not pending after restart"
        for tx in mined:  # already mined before the kill: found in their block, not re-added
            found = node.call("eth_getTransactionByHash", "0x" + tx.hash.hex())
            assert found["blockHash"] is not None
        gap_fillers = transfers(sender, [3]) + transfers(other, [0])
        assert node.send_batch(gap_fillers) == ["0x" + tx.hash.hex() for tx in gap_fillers]
        node.wait_for_nonce(sender, 14)
        node.wait_for_nonce(other, 3)
        for tx in waiting:
            receipt = node.call("eth_getTransactionReceipt", "0x" + tx.hash.hex())
            assert receipt["status"] == "0x1"
    finally:
        assert node.kill(signal.SIGTERM) == 0
    # the clean stop left a journal that re-admits nothing stale: all of it was mined
    journaled, _ = decode_records((data_dir / JOURNAL_FILE).read_bytes())
    assert len(journaled) <= len(waiting) + len(gap_fillers)
