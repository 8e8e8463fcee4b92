"""End to end: build the image with podman on the debootstrap base (``containers/build``), write
a 4-validator testnet with ``testnet init --compose``, start it with podman-compose from the
generated file, see finality at every validator (from inside each container, on its own RPC),
claim from the published faucet and see the payout finalized through the published public RPC,
then tear everything down (containers, volumes, networks), also when a step failed.

Prometheus runs from an image built here from Debian's package (containers/prometheus; the
Compose file's default, prom/prometheus, cannot be pulled where no registry is reachable, as
here and in CI): it must scrape all six nodes by service name and load the alert rules.
Grafana is not started: its public image cannot be pulled and Debian has no package; its
provisioning and dashboard are checked by test_compose_file.py and test_dashboard_*.py.
podman < 4.6 does not wait for ``condition: service_healthy`` (podman-compose says it ignores
it) and runs no healthchecks without systemd, so the test starts the services in dependency
order and runs each container's healthcheck itself (``podman healthcheck run``).

Timings of each step are printed (``-s``) and written to ``$MT_E2E_TIMINGS`` when set.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moderntensor.deploy.compose import explorer_supported
from tests.ports import free_port_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/moderntensor:test"
PROMETHEUS_IMAGE = "localhost/prometheus-debian:test"
BASE_IMAGE = "localhost/moderntensor-base:bookworm"  # made by containers/build --debootstrap
VALIDATORS = 4
NODES = ["bootnode", *[f"validator-{i}" for i in range(VALIDATORS)], "fullnode-0"]
FINALIZED_AT_LEAST = 3
CLAIMANT = "0x00000000000000000000000000000000c0ffee00"
# Asks the container's own node (its RPC listens on 0.0.0.0:8545 inside the container).
IN_CONTAINER_FINALITY = (
    "import json, urllib.request as u; r = u.Request('http://127.0.0.1:8545', "
    "json.dumps({'jsonrpc': '2.0', 'id': 1, 'method': 'mt_finality', 'params': []}).encode(), "
    "{'content-type': 'application/json'}); print(json.load(u.urlopen(r, timeout=5))['result']"
    "['finalizedNumber'])"
)


def _missing_engine() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/test installs podman with apt-get where it can)"
    if shutil.which("runc") is None:
        return "runc is not installed (podman's default runtime fails in this sandbox)"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "moderntensor"
    cached = any(cache.glob("base-bookworm-*.tar"))
    if shutil.which("debootstrap") is None and not cached:
        return "debootstrap is not installed and no base image is cached"
    if not Path(sys.executable).with_name("podman-compose").exists():
        return "podman-compose is missing from the test extras' environment"
    return None


@pytest.fixture(scope="module")
def engine_env() -> dict[str, str]:
    reason = _missing_engine()
    if reason is not None:
        pytest.skip(reason)
    return {
        **os.environ,
        "CONTAINERS_CONF": str(ROOT / "containers" / "podman.conf"),
        "PYTHON": sys.executable,
    }


class Timings:
    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self._start = time.monotonic()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = round(time.monotonic() - start, 1)
            print(f"e2e {name}: {self.steps[name]} s", flush=True)

    def report(self) -> None:
        self.steps["total"] = round(time.monotonic() - self._start, 1)
        print("e2e timings:", json.dumps(self.steps), flush=True)
        if os.environ.get("MT_E2E_TIMINGS"):
            Path(os.environ["MT_E2E_TIMINGS"]).write_text(json.dumps(self.steps, indent=2))


def run(cmd: list[str], env: dict[str, str], timeout: float, **kw: Any) -> str:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kw)
    if result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result.stdout


def rpc(port: int, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}", body.encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        doc = json.load(answer)
    assert "error" not in doc, doc
    return doc["result"]


def wait_for(what: str, probe: Any, timeout: float, interval: float = 1.0) -> Any:
    """Call ``probe`` until it returns a truthy value (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
            last = value
        except (OSError, AssertionError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def container(project: str, service: str, env: dict[str, str]) -> str:
    out = run(
        ["podman", "ps", "-q",
         "--filter", f"label=com.docker.compose.project={project}",
         "--filter", f"label=com.docker.compose.service={service}"],
        env, 30,
    )  # fmt: skip
    ids = out.split()
    assert len(ids) == 1, f"{service}: containers {ids}"
    return ids[0]


def teardown(compose: list[str], project: str, cwd: Path, env: dict[str, str]) -> None:
    """``down -v``, then remove whatever the project label still marks (a failed ``up``)."""
    subprocess.run([*compose, "down", "-v", "-t", "5"], cwd=cwd, env=env,
                   capture_output=True, timeout=180)  # fmt: skip
    label = f"label=io.podman.compose.project={project}"
    for kind, listing in (("container", ["ps", "-aq"]), ("volume", ["volume", "ls", "-q"]),
                          ("network", ["network", "ls", "-q"])):  # fmt: skip
        listed = subprocess.run(
            ["podman", *listing, "--filter", label], env=env, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        leftovers = listed.stdout.split()
        if leftovers:
            rm = ["rm", "-f", "-v"] if kind == "container" else [kind, "rm", "-f"]
            subprocess.run(["podman", *rm, *leftovers], env=env, capture_output=True, timeout=120)


def test_image_compose_testnet_finalizes_and_pays_a_faucet_claim(
    tmp_path: Path, engine_env: dict[str, str]
) -> None:
    env = engine_env
    timings = Timings()
    with timings.step("build image"):
        out = run([str(ROOT / "containers" / "build"), "--debootstrap", "--tag", IMAGE], env, 900)
        assert out.strip().splitlines()[-1] == IMAGE
    with timings.step("build prometheus image"):
        build = ["podman", "build", "--format", "docker", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
        run([*build, "-t", PROMETHEUS_IMAGE, str(ROOT / "containers" / "prometheus")], env, 600)

    testnet = tmp_path / "testnet"
    base = free_port_run(4)
    rpc_port, faucet_port, prometheus_port, explorer_port = range(base, base + 4)
    project = f"mte2e{os.getpid()}"
    env = {**env, "MODERNTENSOR_IMAGE": IMAGE, "MT_PUBLIC_ADDR": "127.0.0.1",
           "MT_RPC_PORT": str(rpc_port), "MT_FAUCET_PORT": str(faucet_port),
           "PROMETHEUS_IMAGE": PROMETHEUS_IMAGE, "MT_ADMIN_ADDR": "127.0.0.1",
           "MT_PROMETHEUS_PORT": str(prometheus_port),
           "MT_EXPLORER_PORT": str(explorer_port)}  # fmt: skip
    compose = [str(Path(sys.executable).with_name("podman-compose")), "-p", project]
    run([sys.executable, "-m", "moderntensor.cli", "testnet", "init", "--validators",
         str(VALIDATORS), "--out", str(testnet), "--compose", "--start-in", "8"],
        {**env, "PYTHONPATH": str(ROOT)}, 60)  # fmt: skip
    try:
        with timings.step("nodes up"):
            run([*compose, "up", "-d", *NODES], env, 300, cwd=testnet)
        with timings.step("finality at every validator"):
            ids = {name: container(project, name, env) for name in NODES}
            for i in range(VALIDATORS):
                name = f"validator-{i}"

                def finalized(cid: str = ids[name]) -> bool:
                    script = ["podman", "exec", cid, "python3", "-c", IN_CONTAINER_FINALITY]
                    return int(run(script, env, 30), 16) >= FINALIZED_AT_LEAST

                wait_for(f"{name} to finalize block {FINALIZED_AT_LEAST}", finalized, 120)

            def finalized_at(cid: str) -> int:
                script = ["podman", "exec", cid, "python3", "-c", IN_CONTAINER_FINALITY]
                return int(run(script, env, 30), 16)

            for cid in ids.values():  # the Compose healthchecks pass (run by hand here)
                run(["podman", "healthcheck", "run", cid], env, 60)
            # The node runs as uid 10001 without capabilities (the entrypoint dropped root).
            status = run(["podman", "exec", ids["validator-0"], "cat", "/proc/1/status"], env, 30)
            assert "\nUid:\t10001\t10001\t10001\t10001\n" in status
            assert "\nCapEff:\t0000000000000000\n" in status
        if explorer_supported():  # the node knows [explorer]: the public node serves it
            with urllib.request.urlopen(f"http://127.0.0.1:{explorer_port}/", timeout=10) as page:
                assert page.status == 200
        with timings.step("a validator restarts from its volume"):
            cid = ids["validator-1"]
            before = finalized_at(cid)
            run(["podman", "restart", "-t", "10", cid], env, 60)
            wait_for("validator-1 to finalize again", lambda: finalized_at(cid) >= before + 2, 60)
            logs = subprocess.run(["podman", "logs", cid], env=env, capture_output=True,
                                  text=True, timeout=30)  # fmt: skip
            lines = (logs.stdout + logs.stderr).splitlines()
            starts = [line for line in lines if "node starting" in line]
            assert len(starts) == 2, starts
            resumed = int(re.search(r"head=(\d+)", starts[-1]).group(1))  # type: ignore[union-attr]
            assert resumed >= before, starts[-1]  # the chain was on the volume, not re-synced
        with timings.step("faucet up"):
            run([*compose, "up", "-d", "faucet"], env, 300, cwd=testnet)
            info = wait_for(
                "the faucet's /api/info",
                lambda: json.load(
                    urllib.request.urlopen(f"http://127.0.0.1:{faucet_port}/api/info", timeout=5)
                ),
                90,
            )
            assert info["chainId"] == 7777 and int(info["balance"]) > 0
        with timings.step("faucet claim finalized"):
            request = urllib.request.Request(
                f"http://127.0.0.1:{faucet_port}/api/claim",
                json.dumps({"address": CLAIMANT}).encode(),
                {"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                claim = json.load(answer)
            tx_hash = claim["txHash"]

            def paid_and_final() -> bool:
                receipt = rpc(rpc_port, "eth_getTransactionReceipt", tx_hash)
                final = rpc(rpc_port, "eth_getBlockByNumber", "finalized", False)
                return (
                    receipt is not None
                    and receipt["status"] == "0x1"
                    and int(receipt["blockNumber"], 16) <= int(final["number"], 16)
                )

            wait_for(f"the claim {tx_hash} to be final", paid_and_final, 60)
            balance = rpc(rpc_port, "eth_getBalance", CLAIMANT, "finalized")
            assert int(balance, 16) == int(claim["amount"])
        with timings.step("prometheus scrapes every node"):
            run([*compose, "up", "-d", "prometheus"], env, 300, cwd=testnet)

            def api(path: str) -> Any:
                url = f"http://127.0.0.1:{prometheus_port}{path}"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    return json.load(answer)["data"]

            def all_up() -> list[dict[str, Any]] | None:
                targets = api("/api/v1/targets")["activeTargets"]
                healthy = [t for t in targets if t["health"] == "up"]
                return targets if len(healthy) == len(NODES) == len(targets) else None

            targets = wait_for("Prometheus to scrape every node", all_up, 60)
            assert sorted(t["labels"]["node"] for t in targets) == sorted(NODES)
            rules = [r for g in api("/api/v1/rules")["groups"] for r in g["rules"]]
            assert len(rules) == 8 and all(r["health"] in ("ok", "unknown") for r in rules)
            final = api("/api/v1/query?query=moderntensor_finalized_number")["result"]
            assert len(final) == len(NODES) and all(float(s["value"][1]) >= 1 for s in final)
            run(["podman", "healthcheck", "run", container(project, "prometheus", env)], env, 60)
    finally:
        with timings.step("teardown"):
            teardown(compose, project, testnet, env)
        timings.report()
    label = f"label=io.podman.compose.project={project}"
    for listing in (["ps", "-aq"], ["volume", "ls", "-q"], ["network", "ls", "-q"]):
        assert run(["podman", *listing, "--filter", label], env, 60).split() == []
