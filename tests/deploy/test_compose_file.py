"""``testnet init --compose``: the Compose file validates against the Compose spec (offline,
``check-jsonschema --builtin-schema vendor.compose-spec``) for 1, 4 and 7 validators, and says
what a Compose testnet needs: every node in the chain network with its own key files, data
volume and healthcheck, dialing the others by service name; only the public services publish
ports; the faucet's key is funded in the genesis."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from moderntensor.cli import main as cli_main
from moderntensor.crypto import PrivateKey
from moderntensor.deploy._yaml_emit import dump
from moderntensor.deploy.compose import (
    ComposeNode,
    compose_document,
    explorer_supported,
    write_compose,
)
from moderntensor.network import parse_multiaddr

CHECK_JSONSCHEMA = shutil.which("check-jsonschema") or str(
    Path(sys.executable).with_name("check-jsonschema")
)
PUBLIC = {"fullnode-0", "faucet", "prometheus", "grafana"}
EXPLORER = explorer_supported()


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    if not Path(CHECK_JSONSCHEMA).exists():
        pytest.fail(
            "check-jsonschema is missing: it is in the test extras (pip install -e .[test])"
        )
    return subprocess.run(
        [CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def init(tmp_path: Path, validators: int) -> tuple[Path, dict[str, Any]]:
    out = tmp_path / f"testnet-{validators}"
    code = cli_main(
        ["testnet", "init", "--validators", str(validators), "--out", str(out), "--compose"]
    )
    assert code == 0
    return out, yaml.safe_load((out / "docker-compose.yml").read_text())


@pytest.mark.parametrize("validators", [1, 4, 7])
def test_generated_compose_file_validates_and_wires_the_testnet(
    tmp_path: Path, validators: int, capsys: pytest.CaptureFixture[str]
) -> None:
    out, doc = init(tmp_path, validators)
    summary = json.loads(capsys.readouterr().out)
    assert summary["compose"] == str(out / "docker-compose.yml")
    result = validate(out / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr

    services = doc["services"]
    nodes = ["bootnode", *[f"validator-{i}" for i in range(validators)], "fullnode-0"]
    assert set(services) == {*nodes, "faucet", "prometheus", "grafana"}
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == PUBLIC
    # The explorer's port too once the node knows [explorer] (the explorer branch).
    assert services["fullnode-0"]["ports"] == [
        "${MT_PUBLIC_ADDR:-0.0.0.0}:${MT_RPC_PORT:-8545}:8545",
        *(["${MT_PUBLIC_ADDR:-0.0.0.0}:${MT_EXPLORER_PORT:-4000}:4000"] if EXPLORER else []),
    ]
    peer_ids = {}
    for name in nodes:
        service = services[name]
        assert f"{name}-data:/data" in service["volumes"]
        assert f"{name}-data" in doc["volumes"]
        assert service["healthcheck"]["test"][:4] == [
            "CMD", "python3", "-m", "moderntensor.deploy.healthcheck"
        ]  # fmt: skip
        for volume in service["volumes"]:  # every mounted host file exists
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (out / source).exists(), volume
        config = tomllib.loads((out / "compose" / name / "node.toml").read_text())
        assert config["rpc"]["addr"] == config["p2p"]["listen_addr"] == "0.0.0.0"
        assert config["metrics"] == {"enabled": True, "addr": "0.0.0.0", "port": 6060}
        assert (out / "compose" / name / config["node"]["genesis"]).resolve() == (
            out / "genesis.json"
        ).resolve()
        key = json.loads((out / "keys" / f"node-{name}.json").read_text())
        peer_ids[name] = key["peer_id"]
        for addr in config["p2p"]["bootstrap"]:
            parsed = parse_multiaddr(addr)
            assert addr.startswith("/dns4/") and parsed.port == 30303
        dialed = [a.split("/")[2] for a in config["p2p"]["bootstrap"]]
        assert dialed == nodes[: nodes.index(name)]  # the bootnode and every node before it
        is_validator = name.startswith("validator-")
        assert ("key_file" in config["validator"]) == is_validator
        assert any(v.endswith(":/keys-in/validator.json:ro") for v in service["volumes"]) == (
            is_validator
        )
    assert services["bootnode"].get("depends_on") is None
    for i in range(validators):
        assert services[f"validator-{i}"]["depends_on"] == {
            "bootnode": {"condition": "service_healthy"}
        }
    assert set(services["fullnode-0"]["depends_on"]) == set(nodes[:-1])
    assert services["faucet"]["depends_on"] == {"fullnode-0": {"condition": "service_healthy"}}
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}

    # Prometheus scrapes every node; the faucet's key is funded in the genesis.
    prometheus = yaml.safe_load((out / "monitoring" / "prometheus.yml").read_text())
    targets = [t for c in prometheus["scrape_configs"][0]["static_configs"] for t in c["targets"]]
    assert targets == [f"{name}:6060" for name in nodes]
    genesis = json.loads((out / "genesis.json").read_text())
    faucet = json.loads((out / "keys" / "faucet.json").read_text())
    assert faucet["kind"] == "account"
    assert int(genesis["alloc"][faucet["address"]]["balance"], 16) == 10**6 * 10**18
    assert (out / "keys" / "faucet.json").stat().st_mode & 0o077 == 0


def test_the_spec_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    """The validation above can fail: an unknown depends_on condition is refused."""
    _, doc = init(tmp_path, 1)
    doc["services"]["faucet"]["depends_on"]["fullnode-0"]["condition"] = "when_ready"
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(doc))
    result = validate(broken)
    assert result.returncode != 0 and "when_ready" in result.stdout + result.stderr


def test_yaml_writer_round_trips_through_a_yaml_reader() -> None:
    nodes = [
        ComposeNode(name="bootnode", peer_id="aa"),
        ComposeNode(name="validator-0", peer_id="bb", validator_key="validator-0.json"),
        ComposeNode(name="fullnode-0", peer_id="cc"),
    ]
    doc = compose_document(nodes, 7777, explorer=True)
    assert yaml.safe_load(dump(doc, "a header\nsecond line")) == doc
    tricky = {"on": "on", "v": ["3.10", "0755", "yes", "a: b", "#x", ""], "e": [], "m": {}}
    assert yaml.safe_load(dump(tricky)) == tricky
    with pytest.raises(TypeError):
        dump({"x": object()})


def test_explorer_section_only_on_the_public_full_node(tmp_path: Path) -> None:
    nodes = [
        ComposeNode(name="bootnode", peer_id="aa"),
        ComposeNode(name="validator-0", peer_id="bb", validator_key="validator-0.json"),
        ComposeNode(name="fullnode-0", peer_id="cc"),
        ComposeNode(name="fullnode-1", peer_id="dd"),
    ]
    (tmp_path / "keys").mkdir()
    path = write_compose(tmp_path, nodes, 7777, PrivateKey.generate(), explorer=True)
    doc = yaml.safe_load(path.read_text())
    public = tomllib.loads((tmp_path / "compose" / "fullnode-0" / "node.toml").read_text())
    assert public["explorer"] == {"enabled": True, "addr": "0.0.0.0", "port": 4000}
    for name in ("bootnode", "validator-0", "fullnode-1"):
        assert "explorer" not in tomllib.loads(
            (tmp_path / "compose" / name / "node.toml").read_text()
        )
    assert doc["services"]["fullnode-0"]["ports"][1] == (
        "${MT_PUBLIC_ADDR:-0.0.0.0}:${MT_EXPLORER_PORT:-4000}:4000"
    )
    assert "ports" not in doc["services"]["fullnode-1"]
    assert validate(path).returncode == 0
    with pytest.raises(ValueError, match="full node"):
        write_compose(tmp_path / "x", nodes[:2], 7777, PrivateKey.generate())
