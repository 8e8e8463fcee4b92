"""A validator that may not sign yet says why (the newcomer's "it never makes a block, and
the log does not say why"): a 4-validator genesis, one node, no peers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from moderntensor.cli import main
from tests.ports import free_port_run


def test_a_lone_validator_logs_why_it_does_not_sign(tmp_path: Path) -> None:
    out = tmp_path / "net"
    args = ["genesis", "new", "--validators", "4", "--chain-id", "4242", "--out", str(out)]
    assert main([*args, "--slot-duration", "1", "--genesis-time", str(int(time.time()) - 2)]) == 0
    port = free_port_run(2)
    (out / "node.toml").write_text(
        '[node]\ndata_dir = "data"\ngenesis = "genesis.json"\n'
        '[validator]\nkey_file = "keys/validator-0.json"\n'
        f'[rpc]\nport = {port}\n[p2p]\nlisten_addr = "127.0.0.1"\nport = {port + 1}\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "moderntensor.node", "--config", str(out / "node.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(5)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert "not signing yet: waiting for peers' status" in output, output[-2000:]
    assert "peers=0" in output and "check [p2p] bootstrap" in output
    assert "block finalized" not in output
