"""A generated pod configuration really runs: the single validator of an N = 1 testnet, started
from its ConfigMap node.toml and its Secret's key files (mount points mapped to a temporary
directory, listeners moved to 127.0.0.1 and free ports), finalizes blocks; its readiness
probe (/health on the RPC port) turns 200 and its liveness probe (/metrics on the metrics
port) answers, while its bootstrap name (a cluster DNS name) cannot resolve here; SIGTERM (what
the kubelet sends) stops it with exit 0."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.deploy.test_k8s import load_docs, make_testnet
from tests.ports import free_port_run

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _pod_files(out: Path, name: str, root: Path, ports: dict[int, int]) -> Path:
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in (out / "k8s" / "base").rglob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_docs(path):
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    data = docs[("ConfigMap", "moderntensor-config")]["data"]
    (root / "config").mkdir(parents=True)
    (root / "keys").mkdir()
    (root / "config" / "genesis.json").write_text(data["genesis.json"])
    for file, raw in docs[("Secret", f"{name}-keys")]["data"].items():
        (root / "keys" / file).write_bytes(base64.b64decode(raw))
    text = data[f"{name}.toml"]
    text = text.replace('"/keys/', f'"{root}/keys/').replace('"/data/', f'"{root}/data/')
    text = text.replace('"0.0.0.0"', '"127.0.0.1"')
    for old, new in ports.items():
        assert f"port = {old}\n" in text
        text = text.replace(f"port = {old}\n", f"port = {new}\n")
    (root / "config" / "node.toml").write_text(text)
    return root / "config" / "node.toml"


def test_generated_validator_pod_config_runs_and_answers_its_probes(tmp_path: Path) -> None:
    out = make_testnet(tmp_path, 1, "--start-in", "2")
    base = free_port_run(3)
    rpc, p2p, metrics = base, base + 1, base + 2
    config = _pod_files(
        out, "validator-0", tmp_path / "pod", {8545: rpc, 30303: p2p, 6060: metrics}
    )
    log = (tmp_path / "node.log").open("wb")
    node = subprocess.Popen(
        [sys.executable, "-m", "moderntensor.node", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    try:
        health: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if node.poll() is not None:
                break
            try:
                status, body = _get(f"http://127.0.0.1:{rpc}/health")
            except OSError:
                status, body = 0, b"{}"
            health = json.loads(body or b"{}")
            if status == 200 and health.get("finalized", 0) >= 2:
                break
            time.sleep(0.5)
        assert node.poll() is None, (tmp_path / "node.log").read_text()[-3000:]
        assert health.get("ready") is True and health["finalized"] >= 2, health
        status, body = _get(f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200 and b"moderntensor_" in body
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
        code = node.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "node.log").read_text()[-3000:]
    text = (tmp_path / "node.log").read_text()
    assert "block finalized" in text and "node stopped" in text, text[-3000:]
