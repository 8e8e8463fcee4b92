"""``moderntensor testnet init``: a genesis, keys and one node.toml per node, for one host.

Layout of ``DIR`` (every path in a node.toml is relative to that file, so the directory can be
moved as a whole)::

    genesis.json
    keys/validator-I.json        validator keys (mode 0600)
    keys/node-NAME.json          network identities (mode 0600)
    bootnode/node.toml           a full node every other node dials first (``bootnode = true``:
                                 it serves peer lists and dials none it learns)
    validator-I/node.toml        a validator: RPC on 8545 + 1 + I, p2p on 30303 + 1 + I
    fullnode-J/node.toml         full nodes (public RPC), after the validators
    testnet.json                 what was made: each node's RPC URL and multiaddr
    docker-compose.yml ...       with ``--compose``: the same testnet in containers, with a
                                 funded faucet, Prometheus and Grafana (moderntensor.deploy.compose)

``scripts/localnet DIR`` starts them all, each as its own process. Every node shares one host
address; the per-IP inbound cap does not apply to loopback (the default ``--host``), and for
another address each node.toml sets ``max_inbound_per_ip`` to the number of nodes.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from moderntensor.chain.genesis import build_genesis, parse_genesis
from moderntensor.cli import CLIError
from moderntensor.cli._genesis import (
    add_genesis_options,
    check_out_dir,
    genesis_document,
    write_genesis,
)
from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.deploy import k8s
from moderntensor.deploy.compose import ComposeNode, write_compose
from moderntensor.keys import KeyFileError, NodeKey, write_key_file
from moderntensor.network import is_loopback

__all__ = ["register"]

BASE_RPC_PORT = 8545
BASE_P2P_PORT = 30303
FAUCET_TOKENS = 1_000_000


def register(groups: Any) -> None:
    testnet = groups.add_parser("testnet", help="make a local multi-node testnet")
    sub = testnet.add_subparsers(dest="command", metavar="COMMAND", required=True)
    init = sub.add_parser(
        "init",
        help="write genesis, keys and a node.toml per node (run them with scripts/localnet)",
        description="Generate a testnet for one host: a genesis with N validators, their keys, "
        "a bootnode, optional full nodes, and one node.toml per node with its own ports on "
        "127.0.0.1. Then `scripts/localnet DIR` starts every node as its own process.",
    )
    init.add_argument("--validators", type=int, required=True, metavar="N")
    init.add_argument("--full-nodes", type=int, default=0, metavar="M")
    init.add_argument("--out", required=True, metavar="DIR")
    init.add_argument("--host", default="127.0.0.1", help="address every node binds and dials")
    init.add_argument("--rpc-port", type=int, default=BASE_RPC_PORT, help="the bootnode's RPC port")
    init.add_argument("--p2p-port", type=int, default=BASE_P2P_PORT, help="the bootnode's port")
    init.add_argument(
        "--compose",
        action="store_true",
        help="also write docker-compose.yml (nodes, a faucet funded in the genesis, Prometheus, "
        "Grafana; at least one full node, for the public RPC); see docs/deploy.md",
    )
    init.add_argument(
        "--start-in",
        type=int,
        default=20,
        metavar="SECONDS",
        help="genesis time = now + this, unless --genesis-time is given (default 20)",
    )
    add_genesis_options(init, slot=1.0, epoch=900)
    k8s.add_k8s_options(init)
    init.set_defaults(handler=_init, chain_id=7777)
    for action in init._actions:  # a testnet needs no chain id of its own by default
        if action.dest == "chain_id":
            action.required = False
            action.help = "default 7777"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string for these characters


def _node_toml(
    name: str,
    *,
    host: str,
    rpc_port: int,
    p2p_port: int,
    validator_key: str | None,
    bootstrap: list[str],
    per_ip: int | None = None,
) -> str:
    lines = [
        f"# {name}: written by `moderntensor testnet init`; paths are relative to this file.",
        "[node]",
        'data_dir = "data"',
        'genesis = "../genesis.json"',
        "",
        "[validator]",
    ]
    if validator_key is not None:
        lines.append(f"key_file = {_toml_string(validator_key)}")
    lines += [
        "",
        "[rpc]",
        f"addr = {_toml_string(host)}",
        f"port = {rpc_port}",
        "",
        "[p2p]",
        f"listen_addr = {_toml_string(host)}",
        f"port = {p2p_port}",
        f'node_key_file = "../keys/node-{name}.json"',
        *(["bootnode = true"] if name == "bootnode" else []),
        *([] if per_ip is None else [f"max_inbound_per_ip = {per_ip}"]),
        "bootstrap = [",
        *[f"    {_toml_string(addr)}," for addr in bootstrap],
        "]",
        "",
    ]
    return "\n".join(lines)


def _init(args: argparse.Namespace) -> int:
    if args.validators < 1:
        raise CLIError("--validators must be at least 1")
    if args.full_nodes < 0:
        raise CLIError("--full-nodes must not be negative")
    out = check_out_dir(args.out)
    if args.genesis_time is None:
        args.genesis_time = int(time.time()) + args.start_in
    faucet_key = PrivateKey.generate() if args.compose else None
    if faucet_key is not None:  # the Compose testnet's faucet pays from a genesis allocation
        args.full_nodes = max(args.full_nodes, 1)
        args.alloc = [*args.alloc, f"{checksum_address(faucet_key.address)}={FAUCET_TOKENS}"]
    names = [f"validator-{i}" for i in range(args.validators)]
    doc, keys = genesis_document(args, names)
    key_paths = write_genesis(out, doc, keys)
    nodes: list[tuple[str, str | None]] = [("bootnode", None)]
    nodes += [(name, f"../keys/{path.name}") for name, path in zip(names, key_paths, strict=True)]
    nodes += [(f"fullnode-{j}", None) for j in range(args.full_nodes)]
    node_keys = {name: NodeKey(PrivateKey.generate()) for name, _ in nodes}
    ip = "ip6" if ":" in args.host else "ip4"
    url_host = f"[{args.host}]" if ":" in args.host else args.host  # RFC 3986 brackets
    addrs = {
        name: f"/{ip}/{args.host}/tcp/{args.p2p_port + i}/ws/p2p/{node_keys[name].peer_id}"
        for i, (name, _) in enumerate(nodes)
    }
    summary: list[dict[str, Any]] = []
    try:
        for i, (name, validator_key) in enumerate(nodes):
            write_key_file(out / "keys" / f"node-{name}.json", node_keys[name].to_json())
            # Everyone dials the bootnode and the nodes listed before it: every pair of nodes
            # gets one connection without waiting for peer exchange.
            bootstrap = [addrs[other] for other, _ in nodes[:i]]
            toml = _node_toml(
                name,
                host=args.host,
                rpc_port=args.rpc_port + i,
                p2p_port=args.p2p_port + i,
                validator_key=validator_key,
                bootstrap=bootstrap,
                per_ip=None if is_loopback(args.host) else len(nodes),
            )
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "node.toml").write_text(toml, encoding="utf-8")
            summary.append(
                {
                    "name": name,
                    "config": str(out / name / "node.toml"),
                    "rpc": f"http://{url_host}:{args.rpc_port + i}",
                    "p2p": addrs[name],
                    "validator": validator_key is not None,
                }
            )
    except (KeyFileError, OSError) as exc:
        raise CLIError(str(exc)) from None
    block, _ = build_genesis(parse_genesis(doc, "generated genesis"))
    compose = None
    if faucet_key is not None:
        peers = [
            ComposeNode(name=n, peer_id=node_keys[n].peer_id, validator_key=k and k.split("/")[-1])
            for n, k in nodes
        ]
        try:
            compose = str(write_compose(out, peers, doc["chain_id"], faucet_key))
        except (KeyFileError, OSError) as exc:
            raise CLIError(str(exc)) from None
    result = {
        "genesis": str(out / "genesis.json"),
        "hash": "0x" + block.hash.hex(),
        "chain_id": doc["chain_id"],
        "genesis_time": doc["genesis_time"],
        "nodes": summary,
        **({} if compose is None else {"compose": compose}),
    }
    if args.k8s:
        try:
            k8s.write_k8s(
                out / "k8s",
                k8s.read_testnet(out),
                namespace_name=args.k8s_namespace,
                image=args.k8s_image,
            )
        except k8s.K8sError as exc:
            raise CLIError(str(exc)) from None
        result["k8s"] = str(out / "k8s")
    (out / "testnet.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0
