"""``moderntensor testnet init --compose``: a Compose file running the testnet in containers.

Written next to the testnet's genesis and keys (``DIR``)::

    docker-compose.yml           bootnode, validators, full nodes, faucet, Prometheus, Grafana
    compose/NAME/node.toml       each node's config inside its container (binds 0.0.0.0, dials
                                 the others by service name, metrics on 0.0.0.0:6060)
    compose/faucet.toml          the faucet's config
    keys/faucet.json             the faucet's account key (funded in the genesis)
    monitoring/prometheus.yml    scrape config of every node's /metrics, and the alert rules
    monitoring/alerts.yml
    monitoring/grafana/...       provisioned datasource and dashboard

Each container gets only what it needs: the genesis and its own config directory read-only at
``/testnet`` (same layout, so the relative paths in node.toml hold), its key files under
``/keys-in`` (the image's entrypoint copies them for the non-root user, see
``containers/entrypoint``) and a named volume at ``/data``. Only the public services publish
ports: the first full node's JSON-RPC (8545) and explorer (4000), the faucet (8080), Grafana
(3000) and Prometheus (9090); host addresses and ports come from environment variables with
defaults (``MT_RPC_PORT``, ``MT_PUBLIC_ADDR``...) so two testnets can share a host; images
too (``MODERNTENSOR_IMAGE``, ``PROMETHEUS_IMAGE``, ``GRAFANA_IMAGE``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from moderntensor.crypto import PrivateKey, checksum_address
from moderntensor.keys import write_key_file

from ._yaml_emit import dump

__all__ = [
    "DEFAULT_IMAGE",
    "METRICS_PORT",
    "P2P_PORT",
    "RPC_PORT",
    "ComposeNode",
    "explorer_supported",
    "faucet_key_doc",
    "write_compose",
]

DEFAULT_IMAGE = "localhost/moderntensor:dev"
RPC_PORT = 8545
P2P_PORT = 30303
METRICS_PORT = 6060
EXPLORER_PORT = 4000
FAUCET_PORT = 8080
PROMETHEUS_IMAGE = "prom/prometheus:v2.53.1"
GRAFANA_IMAGE = "grafana/grafana:11.1.4"
HEALTHCHECK = ["CMD", "python3", "-m", "moderntensor.deploy.healthcheck"]


@attrs.frozen(slots=True, kw_only=True)
class ComposeNode:
    """One node of the testnet: its service name (``bootnode``, ``validator-I``,
    ``fullnode-J``), its network identity and, for a validator, its key file in ``keys/``."""

    name: str
    peer_id: str
    validator_key: str | None = None

    @property
    def role(self) -> str:
        return self.name.split("-")[0]

    @property
    def multiaddr(self) -> str:
        return f"/dns4/{self.name}/tcp/{P2P_PORT}/ws/p2p/{self.peer_id}"


def faucet_key_doc(key: PrivateKey) -> dict[str, str]:
    """The faucet's key file (an ``account`` key, as ``moderntensor keys new account``)."""
    return {
        "kind": "account",
        "address": checksum_address(key.address),
        "private_key": "0x" + key.secret.hex(),
    }


def explorer_supported() -> bool:
    """Whether this node's config knows ``[explorer]`` (a node refuses unknown sections)."""
    from moderntensor.node.config import NodeConfig

    return any(field.name == "explorer" for field in attrs.fields(NodeConfig))


def _toml(value: Any) -> str:
    return json.dumps(value)  # TOML basic strings, integers, booleans and arrays of them


def node_toml(node: ComposeNode, bootstrap: Sequence[str], *, explorer: bool) -> str:
    """The node's config inside its container (relative paths: the ``/testnet`` layout)."""
    lines = [
        f"# {node.name} in the Compose testnet: written by `moderntensor testnet init --compose`.",
        "# Paths are inside the container: the genesis and this directory are mounted",
        "# read-only at /testnet, the data volume at /data, the keys under /run/moderntensor.",
        "[node]",
        'data_dir = "/data"',
        'genesis = "../../genesis.json"',
        "",
        "[validator]",
        *(
            ['key_file = "/run/moderntensor/keys/validator.json"']
            if node.validator_key is not None
            else []
        ),
        "",
        "[rpc]",
        'addr = "0.0.0.0"',
        f"port = {RPC_PORT}",
        *(['cors_origins = ["*"]'] if node.role == "fullnode" else []),
        "",
        "[p2p]",
        'listen_addr = "0.0.0.0"',
        f"port = {P2P_PORT}",
        'node_key_file = "/run/moderntensor/keys/node.json"',
        *(["bootnode = true"] if node.role == "bootnode" else []),
        f"bootstrap = {_toml(list(bootstrap))}",
        "",
        "[metrics]",
        "enabled = true",
        'addr = "0.0.0.0"',
        f"port = {METRICS_PORT}",
        "",
    ]
    if explorer:
        lines += ["[explorer]", "enabled = true", 'addr = "0.0.0.0"', f"port = {EXPLORER_PORT}", ""]
    return "\n".join(lines)


FAUCET_TOML = f"""\
# The testnet faucet in the Compose testnet (see docs/faucet.md for every key).
[faucet]
host = "0.0.0.0"
port = {FAUCET_PORT}
amount = "1"
database = "/data/faucet.sqlite3"
"""


def _healthcheck(test: list[str], start_period: str = "60s") -> dict[str, Any]:
    return {
        "test": test,
        "interval": "5s",
        "timeout": "5s",
        "retries": 6,
        "start_period": start_period,
    }


def _publish(env: str, default: int, container: int, *, admin: bool = False) -> str:
    """A published port: public services on every address by default (``MT_PUBLIC_ADDR``),
    Prometheus and Grafana on 127.0.0.1 (``MT_ADMIN_ADDR``)."""
    addr = "${MT_ADMIN_ADDR:-127.0.0.1}" if admin else "${MT_PUBLIC_ADDR:-0.0.0.0}"
    return f"{addr}:${{{env}:-{default}}}:{container}"


def _node_service(
    node: ComposeNode, depends: dict[str, str], *, public: bool, explorer: bool
) -> dict[str, Any]:
    volumes = [
        "./genesis.json:/testnet/genesis.json:ro",
        f"./compose/{node.name}:/testnet/compose/{node.name}:ro",
        f"./keys/node-{node.name}.json:/keys-in/node.json:ro",
    ]
    if node.validator_key is not None:
        volumes.append(f"./keys/{node.validator_key}:/keys-in/validator.json:ro")
    volumes.append(f"{node.name}-data:/data")
    config = f"/testnet/compose/{node.name}/node.toml"
    # A full node is healthy when /health says ready (finalizing); the bootnode and the
    # validators only need to be up: none of them can finalize before the others start.
    test = HEALTHCHECK if public else [*HEALTHCHECK, "--live"]
    service: dict[str, Any] = {
        "image": "${MODERNTENSOR_IMAGE:-" + DEFAULT_IMAGE + "}",
        "user": "0:0",  # the entrypoint hands the 0600 keys to uid 10001, then drops root
        "command": ["python3", "-m", "moderntensor.node", "--config", config],
        "restart": "unless-stopped",
        "stop_grace_period": "30s",
        "networks": ["chain"],
        "volumes": volumes,
        "healthcheck": _healthcheck(test),
    }
    if depends:
        service["depends_on"] = {name: {"condition": c} for name, c in depends.items()}
    if public:
        ports = [_publish("MT_RPC_PORT", RPC_PORT, RPC_PORT)]
        if explorer:
            ports.append(_publish("MT_EXPLORER_PORT", EXPLORER_PORT, EXPLORER_PORT))
        service["ports"] = ports
    return service


def compose_document(
    nodes: Sequence[ComposeNode], chain_id: int, *, explorer: bool
) -> dict[str, Any]:
    """The Compose file as a mapping: nodes, faucet, Prometheus and Grafana."""
    services: dict[str, Any] = {}
    bootnode = nodes[0]
    validators = [n.name for n in nodes if n.role == "validator"]
    fullnodes = [n for n in nodes if n.role == "fullnode"]
    public = fullnodes[0].name
    for node in nodes:
        if node.role == "bootnode":
            depends: dict[str, str] = {}
        elif node.role == "validator":
            depends = {bootnode.name: "service_healthy"}
        else:
            depends = {name: "service_healthy" for name in [bootnode.name, *validators]}
        services[node.name] = _node_service(
            node, depends, public=node.name == public, explorer=explorer and node.name == public
        )
    services["faucet"] = {
        "image": "${MODERNTENSOR_IMAGE:-" + DEFAULT_IMAGE + "}",
        "user": "0:0",
        "command": [
            *("moderntensor", "faucet", "--rpc", f"http://{public}:{RPC_PORT}"),
            *("--key-file", "/run/moderntensor/keys/faucet.json"),
            *("--config", "/testnet/compose/faucet.toml", "--chain-id", str(chain_id)),
        ],
        "restart": "unless-stopped",
        "networks": ["chain"],
        "volumes": [
            "./compose/faucet.toml:/testnet/compose/faucet.toml:ro",
            "./keys/faucet.json:/keys-in/faucet.json:ro",
            "faucet-data:/data",
        ],
        "ports": [_publish("MT_FAUCET_PORT", FAUCET_PORT, FAUCET_PORT)],
        "depends_on": {public: {"condition": "service_healthy"}},
        "healthcheck": _healthcheck(
            [*HEALTHCHECK, f"http://127.0.0.1:{FAUCET_PORT}/api/info"], "30s"
        ),
    }
    services["prometheus"] = {
        "image": "${PROMETHEUS_IMAGE:-" + PROMETHEUS_IMAGE + "}",
        "command": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=15d",
        ],
        "restart": "unless-stopped",
        "networks": ["chain", "monitoring"],
        "volumes": [
            "./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
            "./monitoring/alerts.yml:/etc/prometheus/alerts.yml:ro",
            "prometheus-data:/prometheus",
        ],
        "ports": [_publish("MT_PROMETHEUS_PORT", 9090, 9090, admin=True)],
        "depends_on": {public: {"condition": "service_started"}},
        "healthcheck": _healthcheck(
            ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/ready"], "30s"
        ),
    }
    services["grafana"] = {
        "image": "${GRAFANA_IMAGE:-" + GRAFANA_IMAGE + "}",
        "restart": "unless-stopped",
        "networks": ["monitoring"],
        "environment": {
            "GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:-admin}",
            "GF_AUTH_ANONYMOUS_ENABLED": "true",
            "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
            "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": "/var/lib/grafana/dashboards/"
            "moderntensor.json",
        },
        "volumes": [
            "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro",
            "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro",
            "grafana-data:/var/lib/grafana",
        ],
        "ports": [_publish("MT_GRAFANA_PORT", 3000, 3000, admin=True)],
        "depends_on": {"prometheus": {"condition": "service_healthy"}},
        "healthcheck": _healthcheck(
            ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/api/health"], "30s"
        ),
    }
    volumes = [f"{n.name}-data" for n in nodes] + ["faucet-data", "prometheus-data", "grafana-data"]
    return {
        "services": services,
        "networks": {"chain": {"driver": "bridge"}, "monitoring": {"driver": "bridge"}},
        "volumes": {name: {} for name in volumes},
    }


def prometheus_config(nodes: Sequence[ComposeNode]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": ["/etc/prometheus/alerts.yml"],
        "scrape_configs": [
            {
                "job_name": "moderntensor",
                "metrics_path": "/metrics",
                "static_configs": [
                    {
                        "targets": [f"{node.name}:{METRICS_PORT}"],
                        "labels": {"node": node.name, "role": node.role},
                    }
                    for node in nodes
                ],
            }
        ],
    }


GRAFANA_DATASOURCE = {
    "apiVersion": 1,
    "datasources": [
        {
            "name": "Prometheus",
            "uid": "prometheus",
            "type": "prometheus",
            "access": "proxy",
            "url": "http://prometheus:9090",
            "isDefault": True,
            "jsonData": {"timeInterval": "5s"},
        }
    ],
}
GRAFANA_DASHBOARDS = {
    "apiVersion": 1,
    "providers": [
        {
            "name": "moderntensor",
            "type": "file",
            "disableDeletion": True,
            "options": {"path": "/var/lib/grafana/dashboards"},
        }
    ],
}


def asset(name: str) -> str:
    """A file of ``moderntensor/deploy/assets`` (package data)."""
    return resources.files("moderntensor.deploy").joinpath("assets", name).read_text("utf-8")


def write_compose(
    out: Path,
    nodes: Sequence[ComposeNode],
    chain_id: int,
    faucet_key: PrivateKey,
    *,
    explorer: bool | None = None,
) -> Path:
    """Write the Compose file and everything it mounts into ``out`` (which already holds the
    genesis and the node keys); returns the Compose file's path. ``nodes``: the bootnode
    first, then the validators, then at least one full node (the public one).

    Raises:
        ValueError: no full node, or the bootnode is not first.
        OSError, KeyFileError: a file cannot be written (the faucet key is never overwritten).
    """
    if not nodes or nodes[0].role != "bootnode":
        raise ValueError("the first node must be the bootnode")
    if not any(node.role == "fullnode" for node in nodes):
        raise ValueError("a Compose testnet needs a full node to serve the public RPC")
    explorer = explorer_supported() if explorer is None else explorer
    public = next(n for n in nodes if n.role == "fullnode").name  # serves RPC and explorer
    for i, node in enumerate(nodes):
        directory = out / "compose" / node.name
        directory.mkdir(parents=True, exist_ok=True)
        bootstrap = [other.multiaddr for other in nodes[:i]]  # the bootnode and those before
        toml = node_toml(node, bootstrap, explorer=explorer and node.name == public)
        (directory / "node.toml").write_text(toml, encoding="utf-8")
    (out / "compose" / "faucet.toml").write_text(FAUCET_TOML, encoding="utf-8")
    write_key_file(out / "keys" / "faucet.json", faucet_key_doc(faucet_key))
    monitoring = out / "monitoring"
    (monitoring / "grafana" / "provisioning" / "datasources").mkdir(parents=True, exist_ok=True)
    (monitoring / "grafana" / "provisioning" / "dashboards").mkdir(parents=True, exist_ok=True)
    (monitoring / "grafana" / "dashboards").mkdir(parents=True, exist_ok=True)
    header = "Written by `moderntensor testnet init --compose`."
    (monitoring / "prometheus.yml").write_text(
        dump(prometheus_config(nodes), header), encoding="utf-8"
    )
    (monitoring / "alerts.yml").write_text(asset("alerts.yml"), encoding="utf-8")
    provisioning = monitoring / "grafana" / "provisioning"
    (provisioning / "datasources" / "prometheus.yml").write_text(
        dump(GRAFANA_DATASOURCE, header), encoding="utf-8"
    )
    (provisioning / "dashboards" / "moderntensor.yml").write_text(
        dump(GRAFANA_DASHBOARDS, header), encoding="utf-8"
    )
    (monitoring / "grafana" / "dashboards" / "moderntensor.json").write_text(
        asset("grafana-dashboard.json"), encoding="utf-8"
    )
    compose = out / "docker-compose.yml"
    text = dump(
        compose_document(nodes, chain_id, explorer=explorer),
        f"{header}\nStart: docker compose up -d (or podman-compose up -d), in this directory.\n"
        "Build the image first: containers/build (tag localhost/moderntensor:dev, or set "
        "MODERNTENSOR_IMAGE).\nNodes and the faucet start as root only so that the image's "
        "entrypoint can hand them their 0600 key\nfiles (mounted under /keys-in); they run as "
        "uid 10001 without capabilities (containers/entrypoint).\nPorts and addresses on the "
        "host: MT_PUBLIC_ADDR, MT_RPC_PORT, MT_EXPLORER_PORT, MT_FAUCET_PORT,\nMT_ADMIN_ADDR, "
        "MT_PROMETHEUS_PORT, MT_GRAFANA_PORT (docs/deploy.md).",
    )
    compose.write_text(text, encoding="utf-8")
    return compose
