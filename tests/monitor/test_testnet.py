"""The monitor on a real multi-node testnet (``testnet init``: a bootnode and four
validators, each its own process, 1 s slots) through ``--testnet DIR``: every node healthy
with peers; then one validator is killed: it is reported down and, as the leader of slots in
which no block is made, as missing slots, while the other three keep finalizing."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moderntensor.cli import main
from tests.monitor.harness import ROOT, MonitorProcess
from tests.ports import free_port_run

VALIDATORS = 4
MISSED_WITHIN = 60.0  # the killed validator leads about one slot in four


@pytest.fixture
def testnet(tmp_path: Path) -> Iterator[tuple[Path, dict[str, subprocess.Popen[bytes]]]]:
    out = tmp_path / "net"
    rpc = free_port_run(2 * (VALIDATORS + 1))
    args = ["testnet", "init", "--validators", str(VALIDATORS), "--out", str(out)]
    args += ["--start-in", "3", "--rpc-port", str(rpc), "--p2p-port", str(rpc + VALIDATORS + 1)]
    assert main(args) == 0
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for toml in sorted(out.glob("*/node.toml")):
            with (toml.parent / "node.log").open("wb") as log:
                procs[toml.parent.name] = subprocess.Popen(
                    [sys.executable, "-m", "moderntensor.node", "--config", str(toml)],
                    stdout=log, stderr=log, cwd=ROOT,
                )  # fmt: skip
        yield out, procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _all_healthy(doc: dict[str, Any]) -> bool:
    return (
        doc["type"] == "status"
        and all(n["status"] == "healthy" for n in doc["nodes"])
        and all(n["finalized"] and n["finalized"] > 2 for n in doc["nodes"])
    )


@pytest.mark.slow
def test_a_killed_validator_is_down_and_misses_its_slots(
    testnet: tuple[Path, dict[str, subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    out, procs = testnet
    mon = MonitorProcess(
        tmp_path, "--testnet", str(out), "--interval", "1", "--down-after", "3",
        "--stall-after", "20",
    )  # fmt: skip
    try:
        healthy = mon.wait_for("every node healthy and finalizing", _all_healthy, 90)
        names = [n["name"] for n in healthy["nodes"]]
        assert names == ["bootnode", *[f"validator-{i}" for i in range(VALIDATORS)]]
        assert all(n["peers"] >= 1 for n in healthy["nodes"])
        procs["validator-3"].kill()
        down = mon.alert("raise", "node_down", 15)
        assert down["node"] == "validator-3"
        # (on a busy machine a live validator may miss a slot too: that is its own alert)
        missed = mon.alert("raise", "missed_slots", MISSED_WITHIN, about="validator-3")
        assert "validator validator-3 missed" in missed["message"]
        later = mon.wait_for("a status", lambda d: d["type"] == "status", 5)
        by = {n["name"]: n for n in later["nodes"]}
        assert by["validator-3"]["status"] in ("degraded", "down")
        assert all(by[f"validator-{i}"]["status"] != "down" for i in range(3))
        before = healthy["network"]["finalized"]
        assert later["network"]["finalized"] > before  # three of four still finalize
    finally:
        code = mon.stop()
    assert code == 0
    raised = {kind for event, kind in mon.alerts() if event == "raise"}
    assert "chain_stalled" not in raised
    assert {a["node"] for a in mon.seen if a["type"] == "alert" and a["kind"] == "node_down"} == {
        "validator-3"
    }


@pytest.mark.slow
def test_a_validator_without_quorum_is_unhealthy_until_its_peer_starts(tmp_path: Path) -> None:
    """Two validators, one running: nothing can be finalized, so its /health answers 503 (the
    limit lowered to 3 slots in its node.toml) and the monitor raises node_unhealthy with that
    reason; once the second validator runs, blocks are finalized and the alert resolves."""
    out = tmp_path / "net"
    rpc = free_port_run(6)
    args = ["testnet", "init", "--validators", "2", "--out", str(out), "--start-in", "2"]
    assert main([*args, "--rpc-port", str(rpc), "--p2p-port", str(rpc + 3)]) == 0
    for name in ("validator-0", "validator-1"):
        toml = out / name / "node.toml"
        text = toml.read_text().replace("[rpc]\n", "[rpc]\nhealth_max_unfinalized_slots = 3\n")
        toml.write_text(text)
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> None:
        with (out / name / "node.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "moderntensor.node", "--config",
                 str(out / name / "node.toml")], stdout=log, stderr=log, cwd=ROOT,
            ))  # fmt: skip

    v0 = f"http://127.0.0.1:{rpc + 1}"  # only the first validator is watched
    mon = MonitorProcess(tmp_path, "--nodes", v0, "--interval", "0.5", "--down-after", "60")
    try:
        start("validator-0")
        unhealthy = mon.alert("raise", "node_unhealthy", 60)
        assert unhealthy["node"] == f"127.0.0.1:{rpc + 1}"
        assert "not finalizing" in unhealthy["message"]
        status = mon.wait_for("a status", lambda d: d["type"] == "status", 5)
        assert status["nodes"][0]["status"] == "degraded"
        assert any("/health 503" in r for r in status["nodes"][0]["reasons"])
        start("validator-1")
        resolved = mon.alert("resolve", "node_unhealthy", 90)
        assert resolved["duration_s"] > 0
        mon.wait_for("a healthy status", _all_healthy, 30)
    finally:
        code = mon.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert code == 0
