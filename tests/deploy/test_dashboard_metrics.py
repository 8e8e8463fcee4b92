"""The Grafana dashboard and the Prometheus alert rules name only series a live node exports:
a dev node with ``[metrics]`` on is scraped, and every metric name in every PromQL expression
of the dashboard JSON and of alerts.yml must be on its ``/metrics`` page (``up`` excepted:
Prometheus records it per scrape target)."""

from __future__ import annotations

import functools
import json
import re
import time
from pathlib import Path
from typing import Any

import trio
import yaml

from moderntensor.deploy.compose import GRAFANA_DATASOURCE, asset
from moderntensor.deploy.healthcheck import check
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import dev_genesis
from moderntensor.rpc import MetricsConfig, RpcConfig
from tests.node.test_metrics_listener import fetch

PROMETHEUS_SERIES = {"up"}
"""Series Prometheus itself records for each scrape target."""
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, keywords or label names)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group(0) not in _KEYWORDS:
            names.add(match.group(0))
    return names


def page_names(page: bytes) -> set[str]:
    """Sample names on a Prometheus text page (``_total`` suffixes included)."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in page.decode().splitlines()
        if line and not line.startswith("#")
    }


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(asset("grafana-dashboard.json"))
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(asset("alerts.yml"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promql_name_extraction() -> None:
    assert metric_names(
        'sum by (node) (rate(moderntensor_rpc_requests_total{job="x", a=~"b"}[5m])) '
        "/ clamp_min(increase(moderntensor_head_slot[10m] offset 1h), 1e3) > 0.1 "
        "or up == 0 and on(node) moderntensor_peers"
    ) == {"moderntensor_rpc_requests_total", "moderntensor_head_slot", "up", "moderntensor_peers"}


def test_dashboard_and_alerts_are_well_formed() -> None:
    dashboard = json.loads(asset("grafana-dashboard.json"))
    uid = GRAFANA_DATASOURCE["datasources"][0]["uid"]  # type: ignore[index]
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in ("Block height", "Finality lag", "Transactions per second", "Peers",
                   "Transaction pool", "Event-loop lag", "Slashing"):  # fmt: skip
        assert wanted in titles
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid and panel["targets"]
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "NodeDown", "ChainStalled", "FinalityLag", "NoPeers", "MissedSlots", "SlashingEvent",
        "PoolFull", "EventLoopLag",
    }  # fmt: skip
    for rule in rules:
        assert rule["expr"] and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


async def test_every_metric_of_the_dashboard_and_alerts_is_on_a_live_nodes_page(
    tmp_path: Path,
) -> None:
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.2)
    settings = NodeSettings(
        tmp_path / "data", genesis, keys.validator.consensus, RpcConfig(port=0),
        metrics=MetricsConfig(port=0),
    )  # fmt: skip
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            node: NodeHandle = await nursery.start(open_node, settings)
            assert node.metrics_port is not None and node.rpc_port is not None
            while node.service.finalized.number < 2:
                await trio.sleep(0.05)
            ((status, _, page),) = await fetch(node.metrics_port, [("GET", "/metrics")])
            health = f"http://127.0.0.1:{node.rpc_port}/health"
            healthy, line = await trio.to_thread.run_sync(check, health)
            nursery.cancel_scope.cancel()
    assert status == 200
    assert healthy and line.startswith("200 "), line  # the image's healthcheck against a node
    exported = page_names(page)
    values = {
        line.split()[0]: float(line.split()[1])
        for line in page.decode().splitlines()
        if line.startswith("moderntensor_") and "{" not in line
    }
    head, final = values["moderntensor_head_number"], values["moderntensor_finalized_number"]
    assert values["moderntensor_finality_lag_blocks"] == head - final >= 0
    assert values["moderntensor_missed_slots"] == values["moderntensor_head_slot"] - head >= 0
    pool = node.pool.config
    assert values["moderntensor_mempool_capacity"] == pool.global_slots + pool.global_queue
    assert values["moderntensor_slashed_tokens"] == 0 == values["moderntensor_evidence_pending"]
    assert values["moderntensor_blocks_built_total"] >= 2
    assert values["moderntensor_slot"] >= values["moderntensor_head_slot"]
    wanted: dict[str, set[str]] = {}
    for where, exprs in (
        ("grafana-dashboard.json", dashboard_exprs()),
        ("alerts.yml", [rule["expr"] for rule in alert_rules()]),
    ):
        names = set().union(*(metric_names(e) for e in exprs))
        assert len(names) >= 8, (where, names)  # the parse found the expressions' series
        wanted[where] = names
        missing = names - exported - PROMETHEUS_SERIES
        assert not missing, f"{where} names series the node does not export: {sorted(missing)}"
    for name in ("moderntensor_finality_lag_blocks", "moderntensor_missed_slots",
                 "moderntensor_slashed_tokens", "moderntensor_mempool_capacity",
                 "moderntensor_event_loop_lag_seconds"):  # fmt: skip
        assert name in wanted["alerts.yml"]


def test_healthcheck_without_a_server_is_unhealthy_even_when_live() -> None:
    # Nothing listens on port 9 of 127.0.0.1 (discard): unhealthy, with a reason.
    healthy, line = check("http://127.0.0.1:9/health", timeout=2)
    assert not healthy and "no answer" in line
    assert check("http://127.0.0.1:9/health", live=True, timeout=2)[0] is False


async def test_healthcheck_live_accepts_a_503_answer_and_plain_does_not() -> None:
    async def answer_503(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(4096)
            await stream.send_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 17\r\n"
                b'connection: close\r\n\r\n{"ready": false}\n'
            )

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, answer_503, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            url = f"http://127.0.0.1:{port}/health"
            plain = await trio.to_thread.run_sync(check, url)
            live = await trio.to_thread.run_sync(lambda: check(url, live=True))
            nursery.cancel_scope.cancel()
    assert plain == (False, '503 {"ready": false}\n')
    assert live == (True, '503 {"ready": false}\n')
