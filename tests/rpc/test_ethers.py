"""The transfer flow driven by ethers.js v6 under node (scripts/test runs npm install)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.rpc.conftest import RawClient
from tests.rpc.devnode import CHAIN_ID, DEV_KEYS, DevNode

JS = Path(__file__).parent / "js"


def _ensure_ethers() -> None:
    if not (JS / "node_modules" / "ethers").is_dir():  # a checkout where npm was not run yet
        npm = shutil.which("npm")
        assert npm, "npm is required for the ethers.js tests (scripts/test installs ethers)"
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"],
            cwd=JS,
            check=True,
            timeout=300,
            capture_output=True,
        )


def test_ethers_v6_transfer(node: DevNode, rpc: RawClient) -> None:
    _ensure_ethers()
    node_bin = shutil.which("node")
    assert node_bin, "node is required for the ethers.js tests"
    key = "0x" + DEV_KEYS[6].secret.hex()
    done = subprocess.run(
        [node_bin, "transfer.mjs", node.url, key],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["chainId"] == str(CHAIN_ID)
    assert out["status"] == 1 and out["type"] == 2 and out["txNonce"] == out["nonce"]
    assert int(out["gasUsed"]) == 21_000
    assert int(out["gasPrice"]) <= int(out["maxFee"])
    assert int(out["gasPrice"]) >= int(out["baseFee"])
    cost = int(out["value"]) + 21_000 * int(out["gasPrice"])
    assert int(out["parentBalance"]) - int(out["after"]) == cost
    assert out["recipient"] == out["value"]
    assert "nonce too low" in out["replay"] or "already known" in out["replay"], out["replay"]
    receipt = rpc.call("eth_getTransactionReceipt", [out["hash"]], exists=True)
    assert int(receipt["effectiveGasPrice"], 16) == int(out["gasPrice"])
