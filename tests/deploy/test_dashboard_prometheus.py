"""The alert rules and the dashboard's queries run on a real Prometheus (Debian's, installed by
scripts/test) scraping a live dev node: ``promtool`` accepts the rules and the generated scrape
config, every dashboard query returns data, and every alert rule evaluates without error."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

from moderntensor.cli import main as cli_main
from moderntensor.deploy._yaml_emit import dump
from moderntensor.deploy.compose import asset
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import dev_genesis
from moderntensor.rpc import MetricsConfig, RpcConfig
from tests.deploy.test_dashboard_metrics import alert_rules, dashboard_exprs, metric_names
from tests.ports import free_port_run

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="prometheus/promtool not installed (scripts/test installs Debian's with apt-get)",
)


@needs_prometheus
def test_promtool_accepts_the_rules_and_the_generated_scrape_config(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    out = tmp_path / "testnet"
    assert cli_main(["testnet", "init", "--validators", "4", "--out", str(out), "--compose"]) == 0
    rules = subprocess.run(
        [PROMTOOL, "check", "rules", str(out / "monitoring" / "alerts.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rules.returncode == 0 and "SUCCESS: 8 rules found" in rules.stdout, rules
    config = subprocess.run(
        [PROMTOOL, "check", "config", "--syntax-only", str(out / "monitoring" / "prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert config.returncode == 0, config.stdout + config.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(asset("alerts.yml").replace("changes(", "changes_of("))
    refused = subprocess.run([PROMTOOL, "check", "rules", str(broken)], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert refused.returncode != 0 and "changes_of" in refused.stdout + refused.stderr


def get(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer) if path.startswith("/api/") else answer.status


async def wait_for(what: str, probe: Any, timeout: float = 40) -> Any:
    last: object = None
    with trio.move_on_after(timeout):
        while True:
            try:
                value = await trio.to_thread.run_sync(probe)
                if value:
                    return value
                last = value
            except OSError as exc:
                last = exc
            await trio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@needs_prometheus
async def test_dashboard_queries_return_data_and_rules_evaluate_on_prometheus(
    tmp_path: Path,
) -> None:
    assert PROMETHEUS is not None
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.2)
    settings = NodeSettings(
        tmp_path / "data", genesis, keys.validator.consensus, RpcConfig(port=0),
        metrics=MetricsConfig(port=0),
    )  # fmt: skip
    (tmp_path / "alerts.yml").write_text(asset("alerts.yml"))
    prom_port = free_port_run(1)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            node: NodeHandle = await nursery.start(open_node, settings)
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "alerts.yml")],
                "scrape_configs": [{
                    "job_name": "moderntensor",
                    "static_configs": [{"targets": [f"127.0.0.1:{node.metrics_port}"],
                                        "labels": {"node": "dev", "role": "validator"}}],
                }],
            }  # fmt: skip
            (tmp_path / "prometheus.yml").write_text(dump(config))
            command = [
                PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
            ]  # fmt: skip
            nursery.start_soon(
                functools.partial(trio.run_process, command, check=False, stdout=subprocess.DEVNULL)
            )
            await wait_for("Prometheus ready", lambda: get(prom_port, "/-/ready") == 200)

            def samples() -> bool:
                doc = get(prom_port, "/api/v1/query",
                          query="count_over_time(moderntensor_head_number[1m])")  # fmt: skip
                result = doc["data"]["result"]
                return bool(result) and float(result[0]["value"][1]) >= 4

            await wait_for("four scrapes of the node", samples)
            empty = []
            for expr in dashboard_exprs():
                doc = await trio.to_thread.run_sync(
                    functools.partial(get, prom_port, "/api/v1/query", query=expr)
                )
                assert doc["status"] == "success", (expr, doc)
                if not doc["data"]["result"]:
                    empty.append(expr)
            assert not empty, f"dashboard queries without data: {empty}"

            def rules_evaluated() -> list[dict[str, Any]] | None:
                groups = get(prom_port, "/api/v1/rules")["data"]["groups"]
                rules = [rule for group in groups for rule in group["rules"]]
                done = all(not r["lastEvaluation"].startswith("0001") for r in rules)
                return rules if rules and done else None

            rules = await wait_for("every rule evaluated", rules_evaluated)
            names = await trio.to_thread.run_sync(
                functools.partial(get, prom_port, "/api/v1/label/__name__/values")
            )
            nursery.cancel_scope.cancel()
    assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
    for rule in rules:
        assert rule["health"] == "ok", rule
        # The dev chain finalizes, but a dev node has no network: NoPeers is pending (its
        # `for: 2m` not over yet) and nothing else fires.
        assert rule["state"] == ("pending" if rule["name"] == "NoPeers" else "inactive"), rule
    wanted = set().union(*(metric_names(e) for e in dashboard_exprs()))
    wanted |= set().union(*(metric_names(r["expr"]) for r in alert_rules()))
    assert not wanted - set(names["data"]), sorted(wanted - set(names["data"]))
