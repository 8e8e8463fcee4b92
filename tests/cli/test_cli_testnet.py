"""``moderntensor testnet init``: a genesis, keys and a node.toml per node that the node's own
config loader accepts, with distinct ports and a bootstrap list that connects every pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moderntensor.chain.genesis import load_genesis
from moderntensor.cli import main
from moderntensor.keys import load_node_key, load_validator_keys
from moderntensor.node.config import load_config


def test_init_writes_a_testnet_every_node_can_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net"
    assert (
        main(["testnet", "init", "--validators", "4", "--full-nodes", "1", "--out", str(out)]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads((out / "testnet.json").read_text())
    names = [n["name"] for n in summary["nodes"]]
    assert names == ["bootnode", *[f"validator-{i}" for i in range(4)], "fullnode-0"]
    genesis = load_genesis(out / "genesis.json")
    assert len(genesis.validators) == 4 and genesis.chain_id == 7777
    consensus_keys = {v.consensus_pubkey for v in genesis.validators}
    rpc_ports, p2p_ports, peer_ids = set(), set(), []
    for i, node in enumerate(summary["nodes"]):
        config = load_config(node["config"])  # paths resolve relative to the file
        rpc_ports.add(config.rpc.port)
        p2p_ports.add(config.p2p.port)
        assert config.p2p.node_key_file is not None
        peer_id = load_node_key(config.p2p.node_key_file).peer_id
        assert node["p2p"].endswith(f"/ws/p2p/{peer_id}")
        assert [str(a) for a in config.p2p.bootstrap] == [n["p2p"] for n in summary["nodes"][:i]]
        assert config.p2p.bootnode == (node["name"] == "bootnode")
        assert config.p2p.max_inbound_per_ip == 4  # loopback: the per-IP cap does not apply
        peer_ids.append(peer_id)
        if node["validator"]:
            assert config.validator.key_file is not None
            keys = load_validator_keys(config.validator.key_file)
            assert keys.consensus.public_key_bytes in consensus_keys
        else:
            assert config.validator.key_file is None
    assert len(rpc_ports) == len(p2p_ports) == len(set(peer_ids)) == 6


def test_init_refuses_to_overwrite_and_names_bad_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net"
    assert main(["testnet", "init", "--validators", "0", "--out", str(out)]) == 2
    assert "--validators must be at least 1" in capsys.readouterr().err
    assert main(["testnet", "init", "--validators", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["testnet", "init", "--validators", "1", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_init_on_a_shared_non_loopback_address_lifts_the_per_ip_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every node of the testnet dials from one address: the bootnode must take them all."""
    out = tmp_path / "net"
    args = ["testnet", "init", "--validators", "5", "--full-nodes", "2", "--host", "10.1.2.3"]
    assert main([*args, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    for node in summary["nodes"]:
        assert load_config(node["config"]).p2p.max_inbound_per_ip == 8


def test_init_on_ipv6_brackets_urls_and_uses_ip6_multiaddrs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net"
    assert main(["testnet", "init", "--validators", "1", "--out", str(out), "--host", "::1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [n["rpc"] for n in summary["nodes"]] == ["http://[::1]:8545", "http://[::1]:8546"]
    assert all(n["p2p"].startswith("/ip6/::1/tcp/") for n in summary["nodes"])
    config = load_config(out / "validator-0" / "node.toml")  # the bootstrap list parses
    assert len(config.p2p.bootstrap) == 1
