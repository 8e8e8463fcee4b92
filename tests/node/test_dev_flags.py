"""Anvil's flags on the dev chain: parsed under Anvil's names, applied to the genesis, and on a
resumed data dir either agreeing with the chain or refused (never silently ignored)."""

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
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from moderntensor.chain.genesis import parse_genesis
from moderntensor.chain.transactions import DynamicFeeTransaction, sign_transaction
from moderntensor.node.__main__ import build_parser
from moderntensor.node.devnet import (
    DevOptions,
    DevOptionsError,
    check_resume,
    dev_genesis_doc,
    dev_genesis_for,
    dev_keys,
    format_dev_banner,
)
from moderntensor.node.hdwallet import derive_dev_keys

ROOT = Path(__file__).resolve().parents[2]
PORT_LINE = re.compile(r"rpc listening .*port=(\d+)")
OTHER_MNEMONIC = "abandon " * 11 + "about"
GWEI = 10**9


def test_an_anvil_command_line_parses() -> None:
    args = build_parser().parse_args(
        ["-p", "8546", "--host", "0.0.0.0", "-b", "0.25", "-a", "3", "--balance", "100.5",
         "-m", OTHER_MNEMONIC, "--chain-id", "31337", "--gas-limit", "60000000",
         "--block-base-fee-per-gas", "7"]
    )  # fmt: skip
    assert (args.rpc_port, args.rpc_addr) == (8546, "0.0.0.0")
    assert args.slot_duration == Decimal("0.25")
    assert (args.accounts, args.balance, args.mnemonic) == (3, 1005 * 10**17, OTHER_MNEMONIC)
    assert (args.chain_id, args.gas_limit, args.base_fee) == (31337, 60_000_000, 7)
    ours = build_parser().parse_args(["--slot-duration", "2", "--port", "1", "--base-fee", "0"])
    assert (ours.slot_duration, ours.rpc_port, ours.base_fee) == (Decimal(2), 1, 0)


def test_options_shape_the_genesis() -> None:
    options = DevOptions(
        accounts=3, balance=5 * 10**18, mnemonic=OTHER_MNEMONIC, chain_id=31337,
        gas_limit=50_000_000, base_fee=0, slot_duration=Decimal("0.5"),
    )  # fmt: skip
    options.check()
    keys = dev_keys(options.mnemonic, options.accounts)
    genesis = parse_genesis(dev_genesis_for(1_700_000_000, options, keys))
    assert genesis.chain_id == 31337
    assert genesis.consensus.slot_duration_ms == 500
    assert (genesis.block.gas_limit, genesis.block.base_fee, genesis.block.min_gas_price) == (
        50_000_000, 0, 0,
    )  # fmt: skip
    expected = [k.address for k in derive_dev_keys(OTHER_MNEMONIC, 3)]
    assert [address for address, _ in genesis.alloc] == expected
    assert {account.balance for _, account in genesis.alloc} == {5 * 10**18}


def test_validator_keys_follow_the_funded_accounts() -> None:
    default = dev_keys()
    few = dev_keys(accounts=3).validator  # index 10 and 11, as always
    assert few.account.secret == default.validator.account.secret
    assert few.consensus.secret == default.validator.consensus.secret
    many = dev_keys(accounts=12)
    owner, consensus = derive_dev_keys(count=2, start=12)
    assert (many.validator.account.secret, many.validator.consensus.secret) == (
        owner.secret, consensus.secret,
    )  # fmt: skip
    funded = {k.address for k in many.accounts}
    assert many.validator.account.address not in funded
    assert many.validator.consensus.address not in funded
    banner = format_dev_banner(many)
    assert "(m/44'/60'/0'/0/12)" in banner and "(11) 0x" in banner


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (DevOptions(accounts=-1), "--accounts"),
        (DevOptions(balance=-1), "--balance"),
        (DevOptions(chain_id=0), "--chain-id"),
        (DevOptions(chain_id=2**63), "--chain-id"),
        (DevOptions(gas_limit=20_999), "--gas-limit"),
        (DevOptions(base_fee=-1), "--base-fee"),
        (DevOptions(slot_duration=Decimal("0.0005")), "--block-time"),
    ],
)
def test_options_out_of_range(options: DevOptions, flag: str) -> None:
    with pytest.raises(DevOptionsError, match=f"^{flag}: "):
        options.check()


def test_resume_accepts_agreeing_flags_and_refuses_others() -> None:
    options = DevOptions(accounts=2, gas_limit=40_000_000, base_fee=7)
    keys = dev_keys(options.mnemonic, options.accounts)
    genesis = parse_genesis(dev_genesis_for(1_700_000_000, options, keys))
    same = {"accounts": 2, "gas_limit": 40_000_000, "base_fee": 7, "slot_duration": Decimal(1)}
    assert check_resume(genesis, same, "dd") == options
    assert check_resume(genesis, {}, "dd") == options  # no flag: the chain's own values
    for field, value, flag in [
        ("gas_limit", 30_000_000, "--gas-limit"), ("base_fee", 8, "--base-fee"),
        ("accounts", 10, "--accounts"),
    ]:  # fmt: skip
        with pytest.raises(DevOptionsError, match=f"^{flag} "):
            check_resume(genesis, {field: value}, "dd")
    with pytest.raises(DevOptionsError, match=r"^--mnemonic: .* another mnemonic"):
        check_resume(genesis, {"mnemonic": OTHER_MNEMONIC}, "dd")


def test_base_fee_above_the_default_floor_is_the_floor() -> None:
    doc = dev_genesis_doc(1_700_000_000, 1, dev_keys(), base_fee=5 * GWEI)
    assert doc["block"] == {
        "gas_limit": 30_000_000,
        "base_fee": 5 * GWEI,
        "min_gas_price": 5 * GWEI,
    }


class Node:
    """A ``python -m moderntensor.node --dev`` child process and a JSON-RPC client."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moderntensor.node", "--dev", "--port", "0", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert self.proc.stderr is not None
        self.port = 0
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.port:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            if match := PORT_LINE.search(line):
                self.port = int(match.group(1))
        assert self.port, "".join(self.lines)
        os.set_blocking(self.proc.stderr.fileno(), False)

    def call(self, method: str, *params: Any) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        conn.request("POST", "/", body, {"Content-Type": "application/json"})
        reply = json.loads(conn.getresponse().read())
        conn.close()
        assert "error" not in reply, reply
        return reply["result"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            assert self.proc.wait(timeout=30) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            with contextlib.suppress(Exception):
                self.proc.communicate(timeout=5)


def test_a_dev_node_started_with_anvil_flags(tmp_path: Path) -> None:
    flags = ["--accounts", "3", "--balance", "5", "--mnemonic", OTHER_MNEMONIC,
             "--chain-id", "31337", "--gas-limit", "50000000", "--base-fee", "0",
             "--block-time", "0.5", "--data-dir", str(tmp_path / "dd")]  # fmt: skip
    accounts = derive_dev_keys(OTHER_MNEMONIC, 4)
    node = Node(*flags)
    try:
        assert node.call("eth_chainId") == hex(31337)
        assert node.call("eth_getBalance", "0x" + accounts[2].address.hex(), "latest") == hex(
            5 * 10**18
        )
        assert node.call("eth_getBalance", "0x" + accounts[3].address.hex(), "latest") == "0x0"
        block = node.call("eth_getBlockByNumber", "latest", False)
        assert (block["gasLimit"], block["baseFeePerGas"]) == (hex(50_000_000), "0x0")
        tx = sign_transaction(
            DynamicFeeTransaction(
                chain_id=31337, nonce=0, max_priority_fee_per_gas=GWEI, max_fee_per_gas=GWEI,
                gas=21_000, to=accounts[3].address, value=10**18,
            ),
            accounts[0],
        )  # fmt: skip
        node.call("eth_sendRawTransaction", "0x" + tx.raw.hex())
        for _ in range(300):  # bounded: 30 s
            if node.call("eth_getTransactionReceipt", "0x" + tx.hash.hex()):
                break
            time.sleep(0.1)
        receipt = node.call("eth_getTransactionReceipt", "0x" + tx.hash.hex())
        assert receipt["status"] == "0x1" and receipt["effectiveGasPrice"] == hex(GWEI)
        height = int(node.call("eth_blockNumber"), 16)
    finally:
        node.stop()
    stored = json.loads((tmp_path / "dd" / "dev-genesis.json").read_text())
    assert stored["consensus"]["slot_duration"] == "0.5"
    # The same flags again, or only the mnemonic (which the genesis cannot tell): it resumes.
    for again in (flags, ["--mnemonic", OTHER_MNEMONIC, "--data-dir", str(tmp_path / "dd")]):
        node = Node(*again)
        try:
            assert node.call("eth_chainId") == hex(31337)
            assert int(node.call("eth_blockNumber"), 16) >= height
        finally:
            node.stop()
