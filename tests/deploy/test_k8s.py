"""`moderntensor testnet init --k8s`: the manifests validate against the Kubernetes schemas
(kubernetes-validate --strict, offline) for N = 1, 4 and 7, and mean what they should: one
StatefulSet per genesis validator, a PDB of f, bootstrap addresses naming pods that exist,
Secrets holding exactly the genesis validators' keys, node.toml files the node loads."""

from __future__ import annotations

import base64
import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from moderntensor.cli import main
from moderntensor.crypto import checksum_address
from moderntensor.deploy import k8s
from moderntensor.deploy._k8s_yaml import dump_yaml
from moderntensor.faucet._config import load_config as load_faucet_config
from moderntensor.keys import load_node_key, load_validator_keys
from moderntensor.network import parse_multiaddr
from moderntensor.node.config import load_config

KUBERNETES_VERSION = "1.32.0"  # kubectl here is v1.32; kubernetes-validate bundles 1.30-1.37
ROOT = Path(__file__).resolve().parents[2]


def kubernetes_validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate --strict on ``paths`` (its bundled schemas: no network)."""
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "--no-warn",
         "--kubernetes-version", KUBERNETES_VERSION, *map(str, paths)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def make_testnet(tmp: Path, validators: int, *extra: str) -> Path:
    out = tmp / f"net{validators}"
    args = ["testnet", "init", "--validators", str(validators), "--out", str(out), "--k8s"]
    assert main([*args, *extra]) == 0
    return out


def make_faucet_testnet(tmp: Path, validators: int, *extra: str) -> Path:
    """A testnet with keys/faucet.json funded in its genesis (what `--compose` makes, or an
    operator with `keys new account` and `--alloc`), and its k8s/ written again with it."""
    key = tmp / "faucet-key.json"
    made = subprocess.run(
        [sys.executable, "-m", "moderntensor.cli", "keys", "new", "account", "--out", str(key)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    address = json.loads(made.stdout)["address"]
    out = make_testnet(tmp, validators, "--alloc", f"{address}=1000000", *extra)
    shutil.copy(key, out / "keys" / "faucet.json")
    shutil.rmtree(out / "k8s")
    k8s.write_k8s(out / "k8s", k8s.read_testnet(out))
    return out


@pytest.fixture(scope="module", params=[1, 4, 7], ids=lambda n: f"N={n}")
def net(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_testnet(tmp_path_factory.mktemp("k8s"), request.param)


def manifests(out: Path) -> list[Path]:
    """Every Kubernetes object file of the base (kustomization files are kustomize's own)."""
    return sorted(
        p for p in (out / "k8s" / "base").rglob("*.yaml") if p.name != "kustomization.yaml"
    )


def objects(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in manifests(out):
        for doc in load_docs(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} twice"
            found[key] = doc
    return found


def genesis_of(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "genesis.json").read_text()))


def test_every_manifest_validates_strictly(net: Path) -> None:
    paths = manifests(net)
    assert len(paths) >= 8
    done = kubernetes_validate(*paths)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_validator_is_strict(tmp_path: Path, net: Path) -> None:
    """The check above can fail: a field the schema lacks (a typo) is refused."""
    doc = load_docs(net / "k8s" / "base" / "validator-0.yaml")[0]
    doc["spec"]["replicaz"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(dump_yaml([doc]))
    done = kubernetes_validate(bad)
    assert done.returncode != 0
    assert "replicaz" in done.stdout + done.stderr


def test_one_statefulset_per_validator_and_pdb_of_f(net: Path) -> None:
    genesis = genesis_of(net)
    names = [v["name"] for v in genesis["validators"]]
    found = objects(net)
    sets = {name: doc for (kind, name), doc in found.items() if kind == "StatefulSet"}
    validators = {
        name: doc
        for name, doc in sets.items()
        if doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        == "validator"
    }
    assert sorted(validators) == sorted(names)
    assert set(sets) == {*names, "bootnode", "fullnode"}
    for doc in validators.values():
        assert doc["spec"]["replicas"] == 1
        assert doc["spec"]["updateStrategy"]["type"] == "OnDelete"
        assert doc["spec"]["podManagementPolicy"] == "Parallel"
        claims = doc["spec"]["volumeClaimTemplates"]
        assert [c["metadata"]["name"] for c in claims] == ["data"]
    budget = found[("PodDisruptionBudget", "validators")]["spec"]
    assert budget["maxUnavailable"] == (len(names) - 1) // 3
    selected = [
        n
        for n, d in sets.items()
        if selects(budget["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])
    ]
    assert sorted(selected) == sorted(names)  # the budget covers exactly the validators


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_bootstrap_addresses_name_pods_of_the_manifests(net: Path) -> None:
    """Every node.toml's bootstrap address is the DNS name of a pod the manifests make, under
    the headless Service that selects it, with the peer id of the key in that pod's Secret."""
    found = objects(net)
    config = found[("ConfigMap", "moderntensor-config")]["data"]
    headless = {
        name: doc["spec"]
        for (kind, name), doc in found.items()
        if kind == "Service" and doc["spec"].get("clusterIP") == "None"
    }
    assert all(spec["publishNotReadyAddresses"] for spec in headless.values())
    namespace = found[("Namespace", "moderntensor")]["metadata"]["name"]
    n = len(genesis_of(net)["validators"])
    dialed = 0
    for key, text in config.items():
        if not key.endswith(".toml"):
            continue
        for address in re.findall(r'"(/dns4/[^"]+)"', text):
            addr = parse_multiaddr(address)  # the node's own parser accepts it
            assert addr.protocol == "dns4" and addr.port == 30303
            pod, service, ns, *rest = addr.host.split(".")
            assert (ns, rest) == (namespace, ["svc", "cluster", "local"])
            sts_name, ordinal = pod.rsplit("-", 1)
            sts = found[("StatefulSet", sts_name)]
            assert sts["spec"]["serviceName"] == service and service in headless
            assert int(ordinal) < sts["spec"]["replicas"]
            labels = sts["spec"]["template"]["metadata"]["labels"]
            assert selects(headless[service]["selector"], labels)
            secret = found[("Secret", f"{sts_name}-keys")]["data"]
            node_key = json.loads(base64.b64decode(secret["node.json"]))
            assert node_key["peer_id"] == addr.peer_id
            dialed += 1
    # validator-i dials the bootnode and i validators; the full node dials all of them
    assert dialed == sum(1 + i for i in range(n)) + 1 + n


def test_secrets_hold_exactly_the_genesis_validators_keys(net: Path) -> None:
    genesis = genesis_of(net)
    found = objects(net)
    held = {}
    for (kind, name), doc in found.items():
        if kind != "Secret":
            continue
        data = {k: base64.b64decode(v) for k, v in doc["data"].items()}
        if "validator.json" in data:
            held[name] = json.loads(data["validator.json"])
            # byte for byte the key file testnet init wrote
            stem = name.removesuffix("-keys")
            assert data["validator.json"] == (net / "keys" / f"{stem}.json").read_bytes()
        assert (
            data["node.json"]
            == (net / "keys" / f"node-{name.removesuffix('-keys')}.json").read_bytes()
        )
    expected = {
        f"{v['name']}-keys": (v["address"], v["consensus_pubkey"]) for v in genesis["validators"]
    }
    assert {k: (d["address"], d["consensus_pubkey"]) for k, d in held.items()} == expected


def test_secret_files_are_0600_and_warn(net: Path) -> None:
    secrets = sorted((net / "k8s" / "base" / "secrets").iterdir())
    assert secrets
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "own secret store" in path.read_text()
    for path in manifests(net):
        if path.parent.name != "secrets":
            assert "private_key" not in path.read_text()


def test_services_probes_and_pods(net: Path) -> None:
    found = objects(net)
    fullnode = found[("StatefulSet", "fullnode")]["spec"]["template"]
    assert (("Service", "moderntensor-explorer") in found) == k8s.node_has_explorer()
    for service, port in (("moderntensor-rpc", 8545), ("moderntensor-explorer", 4000)):
        if ("Service", service) not in found:
            continue
        spec = found[("Service", service)]["spec"]
        assert selects(spec["selector"], fullnode["metadata"]["labels"])
        assert [p["port"] for p in spec["ports"]] == [port]
    for (kind, _), doc in found.items():
        if kind != "StatefulSet":
            continue
        pod = doc["spec"]["template"]
        assert pod["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "6060",
            "prometheus.io/path": "/metrics",
        }
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["securityContext"]["runAsUser"] != 0
        (container,) = pod["spec"]["containers"]
        ports = {p["name"] for p in container["ports"]}
        assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "rpc"}
        assert container["livenessProbe"]["httpGet"]["port"] in ports
        assert {"rpc", "p2p", "metrics"} <= ports
        mounts = {m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"] for v in pod["spec"]["volumes"]}
        claims = {c["metadata"]["name"] for c in doc["spec"]["volumeClaimTemplates"]}
        assert mounts == volumes | claims
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        assert set(limits) == set(requests) == {"cpu", "memory"}


def test_node_toml_files_load_with_the_nodes_loader(net: Path, tmp_path: Path) -> None:
    """Each node.toml of the ConfigMap loads with the node's own loader once its mount points
    (/config, /keys, /data) are mapped to a temporary directory; the key files from each
    Secret load as the keys they should be."""
    found = objects(net)
    config = found[("ConfigMap", "moderntensor-config")]["data"]
    genesis = genesis_of(net)
    for key, text in config.items():
        if not key.endswith(".toml"):
            continue
        name = key.removesuffix(".toml")
        root = tmp_path / name
        (root / "config").mkdir(parents=True)
        (root / "keys").mkdir()
        (root / "config" / "genesis.json").write_text(config["genesis.json"])
        secret = found.get(("Secret", f"{name}-keys"))
        for file, raw in (secret or {}).get("data", {}).items():
            (root / "keys" / file).write_bytes(base64.b64decode(raw))
        mapped = text.replace('"/keys/', f'"{root}/keys/').replace('"/data/', f'"{root}/data/')
        has_explorer = "\n[explorer]\nenabled = true\n" in mapped
        assert has_explorer == (name == "fullnode" and k8s.node_has_explorer())
        (root / "config" / "node.toml").write_text(mapped)
        loaded = load_config(root / "config" / "node.toml")
        assert loaded.rpc.addr == "0.0.0.0" and loaded.rpc.port == 8545
        assert loaded.metrics.enabled and loaded.metrics.port == 6060
        assert loaded.node.data_dir == root / "data" / "chain"
        assert all(a.protocol == "dns4" for a in loaded.p2p.bootstrap)
        assert loaded.p2p.bootnode == (name == "bootnode")
        if name in {v["name"] for v in genesis["validators"]}:
            assert loaded.validator.key_file is not None
            keys = load_validator_keys(loaded.validator.key_file)
            member = next(v for v in genesis["validators"] if v["name"] == name)
            assert checksum_address(keys.account.address) == member["address"]
            assert "0x" + keys.consensus.public_key_bytes.hex() == member["consensus_pubkey"]
        else:
            assert loaded.validator.key_file is None
        if loaded.p2p.node_key_file is not None:
            load_node_key(loaded.p2p.node_key_file)
        else:
            assert name == "fullnode"  # replicas make their own keys
            assert loaded.rpc.cors_origins == ("*",)
            assert loaded.rpc.max_http_connections_per_ip == 512


def test_generation_is_repeatable_from_the_testnet_dir(net: Path, tmp_path: Path) -> None:
    """`python -m moderntensor.deploy.k8s DIR` writes what `testnet init --k8s` wrote."""
    out = tmp_path / "again"
    done = subprocess.run(
        [sys.executable, "-m", "moderntensor.deploy.k8s", str(net), "--out", str(out)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = {p.relative_to(net / "k8s"): p.read_text() for p in (net / "k8s").rglob("*.yaml")}
    second = {p.relative_to(out): p.read_text() for p in out.rglob("*.yaml")}
    assert first == second


def test_namespace_and_image_options(tmp_path: Path) -> None:
    out = make_testnet(tmp_path, 4, "--k8s-namespace", "mt-test", "--k8s-image", "reg.example/mt:1")
    found = objects(out)
    assert ("Namespace", "mt-test") in found
    assert all(
        d["metadata"]["namespace"] == "mt-test" for (k, _), d in found.items() if k != "Namespace"
    )
    image = found[("StatefulSet", "validator-0")]["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == "reg.example/mt:1"
    assert (
        ".mt-test.svc.cluster.local/"
        in found[("ConfigMap", "moderntensor-config")]["data"]["validator-1.toml"]
    )


def test_bad_options_and_inputs_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["testnet", "init", "--validators", "1", "--out", str(tmp_path / "x"), "--k8s",
              "--k8s-namespace", "Not_A_Label"])  # fmt: skip
    assert exc.value.code == 2
    assert "Not_A_Label" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything was written
    out = make_testnet(tmp_path, 2)
    (out / "keys" / "validator-1.json").write_bytes(
        (out / "keys" / "validator-0.json").read_bytes()
    )
    with pytest.raises(k8s.K8sError, match=r"validator-1\.json: its consensus key is not"):
        k8s.read_testnet(out)
    (out / "keys" / "node-bootnode.json").unlink()
    with pytest.raises(k8s.K8sError, match=r"node-bootnode\.json"):
        k8s.read_testnet(out)


def test_checked_in_example_is_what_the_generator_writes() -> None:
    """containers/k8s is the generator's output for its own genesis and keys (read back from
    its ConfigMap and Secrets), file for file and byte for byte; README.md is the only
    hand-written file. containers/k8s/README.md has the command that regenerates it."""
    example = ROOT / "containers" / "k8s"
    files = {str(p.relative_to(example)): p.read_text() for p in example.rglob("*") if p.is_file()}
    assert "regenerate" in files.pop("README.md").lower()
    found = {}
    for text in files.values():
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") not in (None, "Kustomization"):
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    genesis_text = found[("ConfigMap", "moderntensor-config")]["data"]["genesis.json"]
    key_files = {
        name.removesuffix("-keys"): {k: base64.b64decode(v) for k, v in doc["data"].items()}
        for (kind, name), doc in found.items()
        if kind == "Secret"
    }
    genesis = json.loads(genesis_text)
    assert len(genesis["validators"]) == 4
    assert "example" in genesis["network_name"]  # marked: throwaway keys
    inputs = k8s.K8sInputs(
        genesis_text=genesis_text,
        validators=tuple(v["name"] for v in genesis["validators"]),
        key_files=key_files,
    )
    (namespace,) = [name for kind, name in found if kind == "Namespace"]
    image = found[("StatefulSet", "validator-0")]["spec"]["template"]["spec"]["containers"][0]
    # the example shows the explorer ([explorer] of conventions.md) whether or not this
    # checkout's node has it yet; `--explorer on` regenerates it so (its README)
    rendered = k8s.render_k8s(inputs, namespace_name=namespace, image=image["image"], explorer=True)
    assert rendered == files
    assert (
        "\n[explorer]\nenabled = true\n"
        in found[("ConfigMap", "moderntensor-config")]["data"]["fullnode.toml"]
    )
    assert ("Service", "moderntensor-explorer") in found
    faucet = json.loads(key_files["faucet"]["faucet.json"])
    assert faucet["address"] in genesis["alloc"] and ("StatefulSet", "faucet") in found
    done = kubernetes_validate(
        *(p for p in (example / "base").rglob("*.yaml") if p.name != "kustomization.yaml")
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_network_name_becomes_a_valid_label_and_big_genesis_is_refused(tmp_path: Path) -> None:
    out = make_testnet(tmp_path, 1, "--network-name", "My Test Net / " + "x" * 80)
    inputs = k8s.read_testnet(out)
    files = k8s.render_k8s(inputs)
    label = yaml.safe_load(files["base/validator-0.yaml"])["metadata"]["labels"][
        "app.kubernetes.io/part-of"
    ]
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", label), label
    assert label.startswith("My-Test-Net")
    genesis = json.loads(inputs.genesis_text)
    genesis["alloc"] = {f"0x{i:040x}": {"balance": "0x1"} for i in range(30_000)}
    big = attrs.evolve(inputs, genesis_text=json.dumps(genesis, indent=2))
    with pytest.raises(k8s.K8sError, match=r"a ConfigMap holds at most 1,048,576"):
        k8s.render_k8s(big)


def test_faucet_when_the_testnet_has_a_faucet_key(tmp_path: Path) -> None:
    out = make_faucet_testnet(tmp_path, 4)
    done = kubernetes_validate(*manifests(out))
    assert done.returncode == 0, done.stdout + done.stderr
    found = objects(out)
    genesis = genesis_of(out)
    sts = found[("StatefulSet", "faucet")]
    assert sts["spec"]["replicas"] == 1
    pod = sts["spec"]["template"]
    service = found[("Service", "moderntensor-faucet")]["spec"]
    assert selects(service["selector"], pod["metadata"]["labels"])
    for (kind, name), doc in found.items():  # no node Service selects the faucet, and back
        if kind == "Service" and name != "moderntensor-faucet":
            assert not selects(doc["spec"]["selector"], pod["metadata"]["labels"]), name
        if kind == "StatefulSet" and name != "faucet":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert not selects(service["selector"], labels), name
    (container,) = pod["spec"]["containers"]
    args = dict(zip(container["args"][::2], container["args"][1::2], strict=True))
    assert args["--chain-id"] == str(genesis["chain_id"])
    rpc_host = args["--rpc"].split("//")[1].split(".")[0]
    assert ("Service", rpc_host) in found  # moderntensor-rpc
    secret = found[("Secret", "faucet-keys")]["data"]
    raw = base64.b64decode(secret["faucet.json"])
    assert raw == (out / "keys" / "faucet.json").read_bytes()
    address = json.loads(raw)["address"]
    assert address in genesis["alloc"]  # it pays from a funded account
    toml = tmp_path / "faucet.toml"
    toml.write_text(found[("ConfigMap", "moderntensor-config")]["data"]["faucet.toml"])
    config = load_faucet_config(toml)
    assert (config.host, config.port, config.proxy_count) == ("0.0.0.0", 8080, 0)
    # the overlays leave it as it is
    assert "faucet" not in (out / "k8s" / "overlays" / "small" / "validators.yaml").read_text()
