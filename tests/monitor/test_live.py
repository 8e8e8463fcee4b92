"""The monitor against real dev nodes, each its own process: a killed node is reported down
within a stated time and resolved after a restart on its data dir; a stopped (SIGSTOP) chain
raises chain_stalled, resolved after SIGCONT; alerts reach a webhook; the monitor's metrics
port is scraped; the node's mt_status carries its process figures.

Timing bounds (stated; the monitor runs with --interval 0.5 --down-after 2, so the per-request
timeout is 1 s): ``node_down`` within DOWN_WITHIN s of the kill (down_after + a round + a
timeout, plus slack for a loaded 2-core machine), ``chain_stalled`` within STALL_WITHIN s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.monitor.harness import (
    ROOT,
    DevNodeProcess,
    MonitorProcess,
    WebhookReceiver,
    http_get,
    rpc,
)
from tests.ports import free_port_run

DOWN_AFTER = 2.0
DOWN_WITHIN = 8.0
STALL_AFTER = 3.0
STALL_WITHIN = 10.0
RECOVER_WITHIN = 30.0


@pytest.fixture
def node(tmp_path: Path) -> Iterator[DevNodeProcess]:
    dev = DevNodeProcess(tmp_path, free_port_run(1))
    dev.start()
    yield dev
    dev.close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def _healthy(doc: dict[str, Any]) -> bool:
    return doc["type"] == "status" and [n["status"] for n in doc["nodes"]] == ["healthy"]


def _metric(port: int, line: str) -> float:
    status, body = http_get(port, "/metrics")
    assert status == 200
    found = re.search(rf"^{re.escape(line)} (\S+)$", body.decode(), re.M)
    assert found, f"{line} not in the metrics"
    return float(found.group(1))


def test_mt_status_reports_the_process_figures(node: DevNodeProcess) -> None:
    process = rpc(node.port, "mt_status")["process"]
    assert process["cpuSeconds"] > 0
    assert process["rssBytes"] > 10 * 2**20  # a Python node holds more than 10 MiB
    assert process["dataDirBytes"] > 0  # RocksDB files in --data-dir
    assert process["diskFreeBytes"] > 0
    assert rpc(node.port, "mt_status")["process"]["dataDirBytes"] == process["dataDirBytes"]


def test_killed_node_is_down_then_resolved_after_restart(
    node: DevNodeProcess, webhook: WebhookReceiver, tmp_path: Path
) -> None:
    metrics_port = free_port_run(1)
    mon = MonitorProcess(
        tmp_path, "--nodes", node.url, "--interval", "0.5", "--down-after", str(DOWN_AFTER),
        "--stall-after", str(STALL_AFTER), "--webhook", webhook.url,
        "--metrics-port", str(metrics_port),
    )  # fmt: skip
    try:
        first = mon.wait_for("a healthy status", _healthy, 30)
        figures = first["nodes"][0]
        assert figures["height"] > 0 and figures["rss_bytes"] > 0
        assert figures["data_dir_bytes"] > 0 and figures["disk_free_bytes"] > 0
        mon.wait_for("a network block time", lambda d: d.get("network", {}).get("block_time_s")
                     is not None, 10)  # fmt: skip
        label = f'{{node="127.0.0.1:{node.port}"}}'
        assert _metric(metrics_port, f"moderntensor_monitor_node_up{label}") == 1
        assert _metric(metrics_port, f"moderntensor_monitor_node_height{label}") > 0
        assert _metric(metrics_port, "moderntensor_monitor_block_time_seconds") > 0

        killed = time.monotonic()
        node.kill()
        down = mon.alert("raise", "node_down", DOWN_WITHIN)
        took = time.monotonic() - killed
        print(f"node_down raised {took:.2f} s after the kill")
        assert DOWN_AFTER - 0.6 <= took <= DOWN_WITHIN
        assert down["node"] == f"127.0.0.1:{node.port}"
        assert "no answer for" in down["message"]
        mon.alert("raise", "chain_stalled", STALL_WITHIN)
        down_status = mon.wait_for(
            "a down status", lambda d: d["type"] == "status" and d["nodes"][0]["status"] ==
            "down", 5)  # fmt: skip
        assert down_status["network"]["active_alerts"] >= 2
        status_label = f'{{node="127.0.0.1:{node.port}",status="down"}}'
        assert _metric(metrics_port, f"moderntensor_monitor_node_up{label}") == 0
        assert _metric(metrics_port, f"moderntensor_monitor_node_status{status_label}") == 1
        fired = '{kind="node_down"}'
        assert _metric(metrics_port, f"moderntensor_monitor_alerts_fired_total{fired}") == 1

        node.start()  # the same data dir and port
        resolved = mon.alert("resolve", "node_down", RECOVER_WITHIN)
        assert resolved["since"] == down["since"] and resolved["duration_s"] > 0
        mon.alert("resolve", "chain_stalled", RECOVER_WITHIN)
        mon.wait_for("a healthy status again", _healthy, 15)
        hook = webhook.wait_for("raise", "node_down", 10)
        assert hook["message"] == down["message"]
        webhook.wait_for("resolve", "node_down", 10)
        webhook.wait_for("raise", "chain_stalled", 10)
    finally:
        code = mon.stop()
    assert code == 0
    assert mon.alerts().count(("raise", "node_down")) == 1  # raised once, not per round


def test_stopped_chain_stalls_then_recovers(node: DevNodeProcess, tmp_path: Path) -> None:
    mon = MonitorProcess(
        tmp_path, "--nodes", node.url, "--interval", "0.5", "--down-after", "60",
        "--stall-after", str(STALL_AFTER),
    )  # fmt: skip
    try:
        mon.wait_for("a healthy status", _healthy, 30)
        stopped = time.monotonic()
        node.signal(signal.SIGSTOP)
        stall = mon.alert("raise", "chain_stalled", STALL_WITHIN)
        print(f"chain_stalled raised {time.monotonic() - stopped:.2f} s after SIGSTOP")
        assert "no new finalized block" in stall["message"]
        # unreachable for less than --down-after: degraded, not down
        status = mon.wait_for("a status", lambda d: d["type"] == "status", 5)
        assert status["nodes"][0]["status"] == "degraded"
        assert status["network"]["since_finalized_s"] >= STALL_AFTER
        node.signal(signal.SIGCONT)
        resolved = mon.alert("resolve", "chain_stalled", RECOVER_WITHIN)
        assert resolved["duration_s"] > 0
        mon.wait_for("a healthy status again", _healthy, 15)
    finally:
        code = mon.stop()
    assert code == 0
    assert ("raise", "node_down") not in mon.alerts()


def test_dashboard_mode_draws_the_table(node: DevNodeProcess, tmp_path: Path) -> None:
    """Without --json: the rich dashboard (here not a terminal: the last frame is printed)."""
    done = subprocess.run(
        [sys.executable, "-m", "moderntensor.cli", "monitor", "--nodes", node.url,
         "--interval", "0.3", "--rounds", "3"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"127.0.0.1:{node.port}" in done.stdout
    assert "healthy" in done.stdout and "block time" in done.stdout
    assert "no active alerts" in done.stdout
