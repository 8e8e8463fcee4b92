"""The node's network wiring: [p2p] and the command line give the network settings (the dev
chain has none unless --p2p-port is given), and a node without a configured node key makes
``<data_dir>/node.key`` (mode 0600) on first start and keeps its peer id across restarts."""

from __future__ import annotations

import argparse
import json
import stat
import time
from pathlib import Path

import trio

from moderntensor.keys import NodeKey, load_node_key, write_key_file
from moderntensor.network import parse_multiaddr
from moderntensor.node.__main__ import build_parser, config_settings, dev_settings
from moderntensor.node._supervisor import NodeHandle, NodeSettings, open_node
from moderntensor.node.devnet import dev_genesis
from tests.factories import genesis_doc, key

PEER = key(77).public_key_bytes.hex()


def args_for(node_toml: Path, **flags: object) -> argparse.Namespace:
    base: dict[str, object] = dict(config=node_toml, data_dir=None, rpc_addr=None,
                                   rpc_port=None, p2p_port=None, explorer_port=None,
                                   log_level=None)  # fmt: skip
    return argparse.Namespace(**(base | flags))


def test_p2p_settings_come_from_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "genesis.json").write_text(json.dumps(genesis_doc()))
    write_key_file(tmp_path / "node.key", NodeKey(key(78)).to_json())
    node_toml = tmp_path / "node.toml"
    base = '[node]\ndata_dir = "data"\ngenesis = "genesis.json"\n'
    node_toml.write_text(base)
    settings = config_settings(args_for(node_toml))[0]
    assert settings.p2p is not None and settings.node_key is None  # created at start
    assert (settings.p2p.listen_addr, settings.p2p.port, settings.p2p.max_peers) == (
        "0.0.0.0", 30303, 50,
    )  # fmt: skip
    assert settings.p2p.seen_ttl_s == 1.0  # one slot of the genesis
    assert settings.p2p.discover
    node_toml.write_text(
        base + f'[p2p]\nlisten_addr = "127.0.0.1"\nport = 4000\nmax_peers = 7\ndiscover = false\n'
        f'node_key_file = "node.key"\nbootstrap = ["/ip4/10.0.0.2/tcp/30303/ws/p2p/{PEER}"]\n'
    )
    settings = config_settings(args_for(node_toml, p2p_port=4001))[0]
    assert settings.p2p is not None
    assert (settings.p2p.listen_addr, settings.p2p.port, settings.p2p.max_peers) == (
        "127.0.0.1", 4001, 7,
    )  # fmt: skip
    assert not settings.p2p.discover
    assert settings.p2p.bootstrap == (parse_multiaddr(f"/ip4/10.0.0.2/tcp/30303/ws/p2p/{PEER}"),)
    assert settings.node_key is not None and settings.node_key.secret == key(78).secret
    node_toml.write_text(base + "[p2p]\nenabled = false\n")
    assert config_settings(args_for(node_toml))[0].p2p is None


def test_the_dev_chain_has_no_network_unless_a_port_is_given(tmp_path: Path) -> None:
    parser = build_parser()
    settings, _ = dev_settings(parser.parse_args(["--dev", "--data-dir", str(tmp_path / "a")]))
    assert settings.p2p is None
    args = parser.parse_args(["--dev", "--data-dir", str(tmp_path / "b"), "--p2p-port", "0"])
    settings, _ = dev_settings(args)
    assert settings.p2p is not None
    assert (settings.p2p.listen_addr, settings.p2p.port) == ("127.0.0.1", 0)


async def test_the_node_key_is_created_once_and_kept(tmp_path: Path) -> None:
    genesis, keys = dev_genesis(int(time.time()), slot_duration=0.5)
    data_dir = tmp_path / "data"
    p2p = dev_settings(build_parser().parse_args(["--dev", "--p2p-port", "0",
                                                  "--data-dir", str(data_dir)]))[0].p2p  # fmt: skip
    settings = NodeSettings(data_dir, genesis, keys.validator.consensus, rpc=None, p2p=p2p)
    peer_ids = []
    for _ in range(2):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                node: NodeHandle = await nursery.start(open_node, settings)
                assert node.network is not None and node.p2p_port
                peer_ids.append(node.network.identity.peer_id)
                nursery.cancel_scope.cancel()
    path = data_dir / "node.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert peer_ids[0] == peer_ids[1] == load_node_key(path).peer_id
