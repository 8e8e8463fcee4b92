"""The monitor's edges without nodes: parsing node answers, node lists from URLs and testnet
directories, the dashboard's text, JSON lines, metrics, the CLI's errors, the public names."""

from __future__ import annotations

import importlib
import io
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

import moderntensor.monitor as monitor
from moderntensor.cli import main
from moderntensor.monitor import (
    Failure,
    JsonLines,
    MonitorCore,
    MonitorMetrics,
    MonitorTargetError,
    Thresholds,
    parse_status,
    render_dashboard,
    status_line,
    targets_from_testnet,
    targets_from_urls,
)
from tests.monitor.test_core import T0, obs

STATUS = {
    "chainId": "0x539",
    "epoch": {"epoch": 5, "slot": 163, "epochLength": 32, "slotDurationMs": 250,
              "genesisTime": 1796207823, "headSlot": 163, "finalizedSlot": 162},
    "finality": {"headNumber": "0xa3", "headSlot": 163, "finalizedNumber": "0xa2",
                 "finalizedSlot": 162, "lag": 1},
    "validators": [{"address": "0xAA", "validatorId": "0x11", "name": "v", "status": "jailed",
                    "jailed": True}],
    "peers": {"count": 2, "peers": []},
    "syncing": False,
    "process": {"pid": 1, "cpuSeconds": 1.5, "rssBytes": 1000, "dataDirBytes": 2000,
                "diskFreeBytes": None},
}  # fmt: skip


def test_parse_status() -> None:
    sync = {"startingBlock": "0x0", "currentBlock": "0x10", "highestBlock": "0x20"}
    o = parse_status(STATUS, sync, (503, {"ready": False, "reason": "syncing: block 16 of 32"}))
    assert (o.head, o.finalized, o.head_slot, o.finalized_slot, o.peers) == (163, 162, 163, 162, 2)
    assert (o.slot, o.slot_ms, o.genesis_time) == (163, 250, 1796207823)
    assert (o.sync.current, o.sync.highest) == (16, 32)  # type: ignore[union-attr]
    assert (o.health_ok, o.health_reason) == (False, "syncing: block 16 of 32")
    assert o.process is not None and o.process.data_dir_bytes == 2000
    assert o.process.disk_free_bytes is None
    assert o.validators[0].jailed
    ok = parse_status({**STATUS, "process": None}, False, (200, {"ready": True}))
    assert ok.health_ok and ok.sync is None and ok.process is None
    down = parse_status(STATUS, False, "cannot connect")
    assert (down.health_ok, down.health_reason) == (False, "no /health answer: cannot connect")
    with pytest.raises(KeyError):
        parse_status({"epoch": {}}, False, (200, {}))
    with pytest.raises(TypeError):
        parse_status({**STATUS, "peers": {"count": True}}, False, (200, {}))


def test_targets_from_urls() -> None:
    assert targets_from_urls(["http://127.0.0.1:8545/", "https://rpc.example.org/x"]) == [
        ("127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("rpc.example.org/x", "https://rpc.example.org/x"),
    ]
    for bad, message in (
        (["ftp://x:1"], "expected http"),
        (["http://a:1", "http://a:1/"], "same node twice"),
        (["http://a:99999"], "bad port"),
    ):
        with pytest.raises(MonitorTargetError, match=message):
            targets_from_urls(bad)


def test_targets_from_a_testnet_directory(tmp_path: Path) -> None:
    out = tmp_path / "net"
    init = ["testnet", "init", "--validators", "2", "--out", str(out), "--rpc-port", "9100"]
    assert main(init) == 0
    summary = json.loads((out / "testnet.json").read_text())
    expected = [(n["name"], n["rpc"]) for n in summary["nodes"]]
    assert targets_from_testnet(out) == expected
    assert expected[0] == ("bootnode", "http://127.0.0.1:9100")
    (out / "testnet.json").unlink()  # without it: each node.toml's [rpc]
    assert sorted(targets_from_testnet(out)) == sorted(expected)
    for problem, path in (("not a directory", tmp_path / "nope"), ("no testnet.json", tmp_path)):
        with pytest.raises(MonitorTargetError, match=problem):
            targets_from_testnet(path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "testnet.json").write_text('{"nodes": [{"name": "x"}]}')
    with pytest.raises(MonitorTargetError, match="cannot read the node list"):
        targets_from_testnet(tmp_path / "broken")


def _busy_core() -> MonitorCore:
    core = MonitorCore(
        [("validator-0", "http://127.0.0.1:8546"), ("fullnode-0", "http://127.0.0.1:8547")],
        Thresholds(down_after=2),
        T0,
    )
    core.process_round(T0, {"validator-0": obs(), "fullnode-0": obs()}, reference="validator-0")
    core.process_round(T0 + 1, {"validator-0": obs(finalized=100), "fullnode-0": Failure("x")})
    core.process_round(T0 + 3, {"validator-0": obs(finalized=100), "fullnode-0": Failure("x")})
    return core


def test_dashboard_text() -> None:
    core = _busy_core()
    console = Console(record=True, width=160, file=io.StringIO())
    console.print(render_dashboard(core, T0 + 3))
    text = console.export_text()
    assert "validator-0" in text and "healthy" in text
    assert "fullnode-0" in text and "down" in text
    assert "node_down" in text and "raise" in text
    assert "active alerts 1" in text


def test_json_lines() -> None:
    core = _busy_core()
    out = io.BytesIO()
    lines = JsonLines(out)
    for e in core.history:
        lines.alert(e)
    lines.write(status_line(core, T0 + 3))
    docs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert docs[0]["type"] == "alert" and docs[0]["event"] == "raise"
    assert (docs[0]["kind"], docs[0]["node"]) == ("node_down", "fullnode-0")
    status = docs[-1]
    assert status["type"] == "status"
    assert [n["status"] for n in status["nodes"]] == ["healthy", "down"]
    assert status["network"]["active_alerts"] == 1


def test_metrics_text() -> None:
    core = _busy_core()
    metrics = MonitorMetrics()
    metrics.update(core, list(core.history), T0 + 3)
    text = metrics.render().decode()
    assert 'moderntensor_monitor_node_up{node="validator-0"} 1.0' in text
    assert 'moderntensor_monitor_node_up{node="fullnode-0"} 0.0' in text
    assert 'moderntensor_monitor_node_status{node="fullnode-0",status="down"} 1.0' in text
    assert 'moderntensor_monitor_node_height{node="validator-0"} 100.0' in text
    assert 'moderntensor_monitor_alerts_fired_total{kind="node_down"} 1.0' in text
    assert 'moderntensor_monitor_alerts_active{kind="node_down"} 1.0' in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nodes", "localhost:8545"], "expected http"),
        (["--testnet", "/nonexistent-dir"], "not a directory"),
        (["--nodes", "http://a:1", "--webhook", "nope"], "--webhook"),
    ],
)
def test_cli_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag", ["--interval", "--down-after", "--history", "--missed-slots", "--missed-window"]
)
def test_cli_refuses_bad_numbers(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["monitor", "--nodes", "http://a:1", flag, "0"])
    assert "must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["monitor", "--nodes", "http://a:1", flag, "x"])
    assert "not a" in capsys.readouterr().err


def test_public_names_resolve() -> None:
    module = importlib.import_module("moderntensor.monitor")
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert hasattr(monitor, name) and not name.startswith("_")


async def test_a_silent_webhook_never_holds_up_polling(caplog: pytest.LogCaptureFixture) -> None:
    """The webhook accepts connections and never answers; the node's port refuses. Rounds go
    on at their interval while the first POST waits out its timeout; the failure is logged."""
    import logging
    from functools import partial

    import trio

    from moderntensor.monitor import MonitorSettings, run_monitor
    from moderntensor.monitor._service import WEBHOOK_TIMEOUT
    from tests.ports import free_port_run

    held: list[trio.SocketStream] = []

    async def silent(stream: trio.SocketStream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    class Rounds:
        def __init__(self) -> None:
            self.times: list[float] = []
            self.events: list[str] = []

        def alerts(self, core: MonitorCore, events: Any, now: float) -> None:
            self.events += [f"{e.event} {e.alert.kind}" for e in events]

        def round(self, core: MonitorCore, now: float) -> None:
            self.times.append(now)

    caplog.set_level(logging.WARNING, "moderntensor.monitor")
    node_port = free_port_run(1)  # nothing listens there
    rounds = Rounds()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        hook_port = listeners[0].socket.getsockname()[1]
        settings = MonitorSettings(
            (("n", f"http://127.0.0.1:{node_port}"),),
            Thresholds(down_after=0.2, stall_after=0.3),
            interval=0.1, timeout=1.0, webhook=f"http://127.0.0.1:{hook_port}/hook",
        )  # fmt: skip
        with trio.fail_after(30):
            await run_monitor(settings, rounds, rounds=8)
        nursery.cancel_scope.cancel()
    assert len(rounds.times) == 8
    assert rounds.events[:2] == ["raise node_down", "raise chain_stalled"]
    assert rounds.times[-1] - rounds.times[0] < WEBHOOK_TIMEOUT  # not one POST's wait
    assert held  # the POST reached the webhook
    assert any("webhook failed" in r.getMessage() for r in caplog.records)
