"""The generated pod configurations really run. The single validator of an N = 1 testnet,
started from its ConfigMap node.toml and its Secret's key files (mount points mapped to a
temporary directory, listeners moved to 127.0.0.1 and free ports), finalizes blocks; its
readiness probe (/health on the RPC port) turns 200 and its liveness probe (/metrics on the
metrics port) answers while its bootstrap name (a cluster DNS name) cannot resolve here; SIGTERM
(what the kubelet sends) stops it with exit 0; and it does so as the pods' uid 10001 with the
key files root:10001 mode 0440, as the Secret volume gives them. The whole N = 4 network, its
pod DNS names pointed at localhost, finalizes one chain through its bootstrap lists."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_k8s import load_docs, make_faucet_testnet, make_testnet
from tests.ports import free_port_run

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def base_objects(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in (out / "k8s" / "base").rglob("*.yaml"):
        if path.name != "kustomization.yaml":
            for doc in load_docs(path):
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def pod_files(
    out: Path,
    name: str,
    root: Path,
    ports: dict[int, int],
    peers: dict[str, int] | None = None,
) -> Path:
    """Lay out what the pod of ``name`` mounts (/config from the ConfigMap, /keys from its
    Secret, /data) under ``root`` and return its node.toml, with the listeners on 127.0.0.1
    at ``ports`` (old -> new) and each bootstrap name of a pod in ``peers`` (StatefulSet name
    -> p2p port) pointing at ``/dns4/localhost`` and that port."""
    docs = base_objects(out)
    data = docs[("ConfigMap", "moderntensor-config")]["data"]
    (root / "config").mkdir(parents=True)
    (root / "keys").mkdir()
    (root / "config" / "genesis.json").write_text(data["genesis.json"])
    secret = docs.get(("Secret", f"{name}-keys"), {"data": {}})
    for file, raw in secret["data"].items():
        (root / "keys" / file).write_bytes(base64.b64decode(raw))
    text = data[f"{name}.toml"]
    text = text.replace('"/keys/', f'"{root}/keys/').replace('"/data/', f'"{root}/data/')
    text = text.replace('"0.0.0.0"', '"127.0.0.1"')
    for old, new in ports.items():
        assert f"port = {old}\n" in text
        text = text.replace(f"port = {old}\n", f"port = {new}\n")
    for peer, port in (peers or {}).items():
        pod = f"/dns4/{peer}-0.moderntensor-p2p.moderntensor.svc.cluster.local/tcp/30303/"
        text = text.replace(pod, f"/dns4/localhost/tcp/{port}/")
    assert (".svc.cluster.local" in text) == (peers is None), text
    assert "port = 4000\n" not in text, "the explorer's port must be given in ports"
    (root / "config" / "node.toml").write_text(text)
    return root / "config" / "node.toml"


POD_UID = 10001  # the pods' runAsUser, runAsGroup and fsGroup


def as_pod_user(root: Path) -> dict[str, Any]:
    """Lay out ``root`` as the kubelet does for the pods' securityContext (files of a Secret
    volume owned root:fsGroup with defaultMode 0440, read-only config, a data volume of group
    fsGroup, setgid) and return the Popen arguments that run a process as uid/gid 10001."""
    for path in (root / "keys").iterdir():
        os.chown(path, 0, POD_UID)
        path.chmod(0o440)
    for path in (root / "config").iterdir():
        path.chmod(0o444)
    (root / "keys").chmod(0o555)
    (root / "config").chmod(0o555)
    (root / "data").mkdir()
    os.chown(root / "data", 0, POD_UID)
    (root / "data").chmod(0o2775)
    return {"user": POD_UID, "group": POD_UID, "extra_groups": [POD_UID]}


def pod_user_python() -> tuple[list[str], dict[str, Any]]:
    """The command prefix and Popen arguments that run this checkout's node as uid/gid 10001,
    or a skip saying why this machine cannot (not root; the interpreter or the packages in a
    directory that user cannot read, e.g. under /root)."""
    if os.geteuid() != 0:
        pytest.skip("running the node as the pods' uid 10001 needs root (as the kubelet has)")
    site = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{site}", "PYTHONDONTWRITEBYTECODE": "1"}
    user = {"user": POD_UID, "group": POD_UID, "extra_groups": [POD_UID], "env": env}
    # the packages' extension modules are built for this version
    check = f"import sys, moderntensor.node; assert sys.version_info[:2] == {sys.version_info[:2]}"
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            probe = subprocess.run(
                [python, "-c", check],
                capture_output=True, text=True, timeout=60, cwd="/", **user,
            )  # fmt: skip
        except OSError as exc:
            reason = str(exc)
            continue
        if probe.returncode == 0:
            return [python], user
        reason = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "failed"
    pytest.skip(f"uid {POD_UID} cannot run this checkout's Python here: {reason}")


@pytest.mark.parametrize("pod_user", [False, True], ids=["as-this-user", "as-uid-10001"])
def test_generated_validator_pod_config_runs_and_answers_its_probes(
    tmp_path: Path, pod_user: bool
) -> None:
    """As uid 10001 (where the machine allows), the key files root:10001 0440: what the pods'
    securityContext and the Secret volume's defaultMode give the node."""
    python, user = pod_user_python() if pod_user else ([sys.executable], {})
    out = make_testnet(tmp_path, 1, "--start-in", "2")
    base = free_port_run(3)
    rpc, p2p, metrics = base, base + 1, base + 2
    root = Path(tempfile.mkdtemp(prefix="mt-pod-"))  # pytest's own tmp dirs are 0700 root
    root.chmod(0o755)
    try:
        config = pod_files(out, "validator-0", root / "pod", {8545: rpc, 30303: p2p, 6060: metrics})
        if pod_user:
            as_pod_user(root / "pod")
        _run_validator(python, user, config, tmp_path, rpc, metrics)
        if pod_user:  # it wrote its data as the pod's user
            assert (root / "pod" / "data" / "chain").stat().st_uid == POD_UID
    finally:
        shutil.rmtree(root)


def _run_validator(
    python: list[str], user: dict[str, Any], config: Path, tmp_path: Path, rpc: int, metrics: int
) -> None:
    log = (tmp_path / "node.log").open("wb")
    node = subprocess.Popen(
        [*python, "-m", "moderntensor.node", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, cwd="/", **user,
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


def _rpc(port: int, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())["result"]


def start_faucet(out: Path, root: Path, rpc: int, port: int, log: Any) -> subprocess.Popen[bytes]:
    """The faucet pod's container command as the manifest gives it, its mounts under ``root``,
    its --rpc at the full node on 127.0.0.1 and its listener on ``port``."""
    docs = base_objects(out)
    (container,) = docs[("StatefulSet", "faucet")]["spec"]["template"]["spec"]["containers"]
    (root / "config").mkdir(parents=True)
    (root / "keys").mkdir()
    (root / "data").mkdir()
    secret = docs[("Secret", "faucet-keys")]["data"]
    (root / "keys" / "faucet.json").write_bytes(base64.b64decode(secret["faucet.json"]))
    toml = docs[("ConfigMap", "moderntensor-config")]["data"]["faucet.toml"]
    toml = toml.replace('"0.0.0.0"', '"127.0.0.1"').replace("port = 8080", f"port = {port}")
    (root / "config" / "faucet.toml").write_text(toml.replace('"/data/', f'"{root}/data/'))
    args = [a.replace("/keys/", f"{root}/keys/").replace("/config/", f"{root}/config/")
            for a in container["args"]]  # fmt: skip
    at = args.index("--rpc") + 1
    assert args[at] == "http://moderntensor-rpc.moderntensor.svc.cluster.local:8545"
    args[at] = f"http://127.0.0.1:{rpc}"
    assert container["command"][0] == "python"
    return subprocess.Popen(
        [sys.executable, *container["command"][1:], *args],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip


def claim_and_wait_final(port: int, rpc: int, faucet: subprocess.Popen[bytes]) -> None:
    """Claim for a fresh address through the faucet's API; its balance at `finalized` then
    shows the payout (bounded waits)."""
    address = "0x000000000000000000000000000000000000bEEF"
    body = json.dumps({"address": address}).encode()
    for _ in range(60):  # the faucet starts once the full node answers
        assert faucet.poll() is None, "the faucet exited"
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/claim", body, {"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=5) as reply:
                assert reply.status == 200
                break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    else:
        raise AssertionError("the faucet never answered")
    for _ in range(120):
        if int(_rpc(rpc, "eth_getBalance", address, "finalized"), 16) == 10**18:
            return
        time.sleep(0.5)
    raise AssertionError("the payout was not final within 60 s")


def test_generated_network_finalizes_with_its_bootstrap_topology(tmp_path: Path) -> None:
    """The whole generated network of N = 4 (bootnode, four validators, the public full
    node), each pod's files as mounted, every pod DNS name pointed at /dns4/localhost and that
    pod's port: the validators find each other through the bootstrap lists the manifests
    give, finalize the same blocks, and the full node follows and is ready; SIGTERM stops
    every one with exit 0. The faucet pod's command, run as the manifest gives it (its --rpc
    pointed at the full node), pays a claim that becomes final."""
    out = make_faucet_testnet(tmp_path, 4, "--start-in", "6")
    names = ["bootnode", *(f"validator-{i}" for i in range(4)), "fullnode"]
    base = free_port_run(3 * len(names) + 2)
    ports = {n: (base + 3 * i, base + 3 * i + 1, base + 3 * i + 2) for i, n in enumerate(names)}
    explorer = base + 3 * len(names)  # the full node's, when the node has [explorer]
    faucet_port = explorer + 1
    has_explorer = (
        "[explorer]"
        in base_objects(out)[("ConfigMap", "moderntensor-config")]["data"]["fullnode.toml"]
    )
    peers = {n: p2p for n, (_, p2p, _) in ports.items() if n != "fullnode"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {}
    try:
        for name in names:
            rpc, p2p, metrics = ports[name]
            mapping = {8545: rpc, 30303: p2p, 6060: metrics}
            if name == "fullnode" and has_explorer:
                mapping[4000] = explorer
            config = pod_files(out, name, tmp_path / name, mapping, peers)
            logs[name] = (tmp_path / f"{name}.log").open("wb")
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "moderntensor.node", "--config", str(config)],
                stdout=logs[name], stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        finalized: dict[str, int] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs.values()), "a node exited"
            for name in names:
                try:
                    status, body = _get(f"http://127.0.0.1:{ports[name][0]}/health")
                    doc = json.loads(body)
                    finalized[name] = doc["finalized"] if status == 200 else -1
                except (OSError, ValueError, KeyError):
                    finalized[name] = -1
            if min(finalized.values()) >= 5:
                break
            time.sleep(1)
        assert min(finalized.values()) >= 5, finalized
        block5 = {n: _rpc(ports[n][0], "eth_getBlockByNumber", "0x5", False) for n in names}
        assert len({b["hash"] for b in block5.values()}) == 1, block5  # one chain everywhere
        for name in names:
            assert int(_rpc(ports[name][0], "net_peerCount"), 16) >= 1, name
        if has_explorer:  # the explorer Service's port answers with its page
            status, page = _get(f"http://127.0.0.1:{explorer}/")
            assert status == 200 and b"<html" in page.lower(), page[:200]
        logs["faucet"] = (tmp_path / "faucet.log").open("wb")
        procs["faucet"] = start_faucet(
            out, tmp_path / "faucet", ports["fullnode"][0], faucet_port, logs["faucet"]
        )
        claim_and_wait_final(faucet_port, ports["fullnode"][0], procs["faucet"])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=30) for name, proc in procs.items()}
        for handle in logs.values():
            handle.close()
    assert all(code == 0 for code in codes.values()), codes
