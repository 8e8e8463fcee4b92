"""scripts/localnet: every node of a `testnet init` directory as its own process, a status
table, and a clean stop (real processes, real ports on 127.0.0.1)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from moderntensor.cli import main
from tests.ports import free_port_run

ROOT = Path(__file__).resolve().parents[2]


def test_localnet_runs_each_node_as_a_process_and_stops_them(tmp_path: Path) -> None:
    out = tmp_path / "net"
    rpc = free_port_run(4)  # one run: two RPC ports, then two p2p ports
    p2p = rpc + 2
    args = ["testnet", "init", "--validators", "1", "--out", str(out), "--start-in", "1"]
    assert main([*args, "--rpc-port", str(rpc), "--p2p-port", str(p2p)]) == 0
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "localnet.py"), str(out), "--seconds", "15"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    heights = re.search(r"finalized heights: \[(\d+), (\d+)\]", done.stdout)
    assert heights, done.stdout[-2000:]
    assert int(heights.group(2)) > 0  # the validator (its own quorum) finalized blocks
    for name in ("bootnode", "validator-0"):
        log = (out / name / "node.log").read_text()
        assert "node starting" in log
        assert "node stopped" in log  # SIGTERM: a clean stop, logged
