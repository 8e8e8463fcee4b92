"""Persistence across restarts, including kill -9 between a claim and its payout.

The faucet runs as a real process (``moderntensor faucet``) against a dev node; the test hook
``MODERNTENSOR_FAUCET_CRASH`` makes it SIGKILL itself at one of three points: after the claim
is recorded, after its payout is signed and recorded, after it is sent. A restart must pay
every claim exactly once: the recipient's balance is the amount (not zero, not twice) and the
faucet's account nonce moved by exactly one per claim.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from moderntensor.faucet import CRASH_ENV
from tests.faucet.conftest import FAUCET_KEY, TOKEN
from tests.faucet.harness import Client, balance, new_address, rpc_call
from tests.ports import free_port_run
from tests.rpc.devnode import DevNode

ETH = 10**18
AMOUNT = ETH // 4
FAUCET = "0x" + FAUCET_KEY.address.hex()


class FaucetProcess:
    def __init__(self, node: DevNode, workdir: Path) -> None:
        self.node = node
        self.port = free_port_run(1)
        self.db = workdir / "faucet.sqlite3"
        self.key_file = workdir / "faucet-key.json"
        self.key_file.write_text(
            json.dumps({"kind": "account", "private_key": "0x" + FAUCET_KEY.secret.hex()})
        )
        self.config = workdir / "faucet.toml"
        self.config.write_text(
            "[faucet]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f'database = "{self.db}"\n'
            'amount = "0.25"\n'
            "poll_interval = 0.1\n"
            "proxy_count = 1\n"
            "ip_claims = 100\n"
            f'admin_token = "{TOKEN}"\n'
        )
        self.log = workdir / "faucet.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = Client(self.port)

    def start(self, crash_at: str | None = None) -> None:
        env = dict(os.environ)
        env.pop(CRASH_ENV, None)
        if crash_at is not None:
            env[CRASH_ENV] = crash_at
        command = [sys.executable, "-m", "moderntensor.cli", "faucet", "--rpc", self.node.url]
        command += ["--key-file", str(self.key_file), "--config", str(self.config)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.client.get("/api/info")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the faucet did not start: " + self.log.read_text())

    def claim_and_die(self, address: str) -> None:
        """A claim during which the process kills itself: the client gets no answer."""
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            self.client.claim(address, xff="10.7.0.1")
        assert self.proc is not None
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def rows(self) -> list[tuple[str, str, str | None]]:
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT address, status, tx_hash FROM claims ORDER BY id").fetchall()


@pytest.fixture
def faucet(node: DevNode, tmp_path: Path) -> Iterator[FaucetProcess]:
    process = FaucetProcess(node, tmp_path)
    yield process
    process.stop()


def nonce_of(node: DevNode, tag: str = "latest") -> int:
    return int(rpc_call(node.url, "eth_getTransactionCount", [FAUCET, tag]), 16)


def wait_paid(faucet: FaucetProcess, address: str) -> str:
    """The hash of ``address``'s final payout (found through the admin history)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        claims = faucet.client.get(f"/api/admin/history?address={address}", TOKEN)[1]["claims"]
        if claims and claims[0]["status"] == "final":
            return str(claims[0]["txHash"])
        time.sleep(0.1)
    raise AssertionError(f"{address} not paid: {claims}")


@pytest.mark.parametrize("crash_at", ["after-accept", "after-sign", "after-send"])
def test_kill_9_between_claim_and_payout(
    node: DevNode, faucet: FaucetProcess, crash_at: str
) -> None:
    faucet.start()
    warm = new_address()  # a first claim so that the crash is not on a fresh counter
    faucet.client.wait_final(faucet.client.claim(warm, xff="10.7.0.9")[1]["txHash"])
    nonce_before = nonce_of(node)
    faucet.stop()

    to = new_address()
    faucet.start(crash_at=crash_at)
    faucet.claim_and_die(to)
    address, status, tx_hash = faucet.rows()[-1]
    assert address == to
    expected = {"after-accept": "accepted", "after-sign": "signed", "after-send": "sent"}[crash_at]
    assert status == expected
    if crash_at == "after-sign":  # recorded, never sent: the node has not seen it
        assert rpc_call(node.url, "eth_getTransactionByHash", [tx_hash]) is None
    if crash_at == "after-send":  # sent: the node has it (pending or mined)
        assert rpc_call(node.url, "eth_getTransactionByHash", [tx_hash]) is not None

    faucet.start()  # recovery
    paid_hash = wait_paid(faucet, to)
    if tx_hash is not None:
        assert paid_hash == tx_hash  # the recorded bytes were re-sent, not a new payout
    assert balance(node.url, to) == AMOUNT  # paid, and only once
    assert nonce_of(node) == nonce_before + 1
    # the counter is right after recovery: a new claim is paid with the next nonce
    after = new_address()
    status, doc, _ = faucet.client.claim(after, xff="10.7.0.2")
    assert status == 200, doc
    assert faucet.client.wait_final(doc["txHash"])["nonce"] == nonce_before + 1
    assert balance(node.url, after) == AMOUNT
    # a second restart pays nothing again
    faucet.stop()
    faucet.start()
    time.sleep(0.5)  # a few watcher rounds (poll_interval 0.1 s) that must not re-pay
    assert nonce_of(node, "pending") == nonce_before + 2
    assert balance(node.url, to) == AMOUNT


def test_limits_and_statistics_survive_a_restart(node: DevNode, faucet: FaucetProcess) -> None:
    faucet.start()
    to = new_address()
    status, doc, _ = faucet.client.claim(to, xff="10.8.0.1")
    assert status == 200
    faucet.client.wait_final(doc["txHash"])
    assert faucet.client.admin("block", {"kind": "ip", "value": "10.8.9.9"}, TOKEN)[0] == 200
    faucet.stop()
    faucet.start()
    status, doc, _ = faucet.client.claim(to, xff="10.8.0.2")
    assert status == 429 and doc["error"] == "address_cooldown"
    assert faucet.client.claim(new_address(), xff="10.8.9.9")[1]["error"] == "ip_blocked"
    stats = faucet.client.get("/api/stats")[1]
    assert stats["claimsPaid"] == 1 and stats["weiPaid"] == str(AMOUNT)
    assert faucet.client.get(f"/api/tx/{faucet.rows()[0][2]}")[1]["status"] == "final"
