"""The Kubernetes objects of a testnet, as plain dicts (``k8s.py`` writes them as YAML).

One StatefulSet per validator and one for the bootnode (one replica each: a stable pod name,
so a stable DNS name under the headless Service, and its own keys from its own Secret), one
StatefulSet of public full nodes (any number of replicas: each makes its own node key in its
data dir on first start), a headless Service for peer discovery, Services for RPC and the
explorer, one ConfigMap (genesis + every node's node.toml), a PodDisruptionBudget over the
validators and a Namespace.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs

__all__ = [
    "APP",
    "P2P_SERVICE",
    "Resources",
    "Spec",
    "config_map",
    "fault_tolerance",
    "headless_service",
    "key_secret",
    "namespace",
    "node_statefulset",
    "node_toml",
    "pdb",
    "public_services",
]

APP = "moderntensor"
P2P_SERVICE = "moderntensor-p2p"
CONFIG_MAP = "moderntensor-config"
RPC_PORT, P2P_PORT, METRICS_PORT, EXPLORER_PORT = 8545, 30303, 6060, 4000
UID = 10001  # the image's non-root user; any non-root uid works (files come from volumes)
DATA_DIR = "/data/chain"  # under the volume's root, away from a filesystem's lost+found


@attrs.frozen(slots=True, kw_only=True)
class Resources:
    """Requests and limits of one node container, and the size of its data volume."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    storage: str

    def container(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }

    def claim(self) -> dict[str, Any]:
        return {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": self.storage}},
            },
        }


@attrs.frozen(slots=True, kw_only=True)
class Spec:
    """What every object needs to know about the deployment."""

    namespace: str
    image: str
    network: str  # the genesis network_name, the part-of label
    resources: Resources
    explorer: bool = True  # the public full nodes serve the explorer ([explorer], port 4000)


def fault_tolerance(validators: int) -> int:
    """f = floor((N - 1) / 3): the validators that may be down while the rest still finalize."""
    return (validators - 1) // 3


def dns_name(pod: str, spec: Spec) -> str:
    """The stable DNS name of a StatefulSet pod under the headless Service."""
    return f"{pod}.{P2P_SERVICE}.{spec.namespace}.svc.cluster.local"


def _labels(component: str, instance: str, spec: Spec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/part-of": spec.network,
    }


def _meta(name: str, spec: Spec, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": spec.namespace}
    meta["labels"] = labels or {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/part-of": spec.network,
    }
    return meta


def namespace(spec: Spec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": spec.namespace, "labels": {"app.kubernetes.io/part-of": spec.network}},
    }


def _toml(value: str | list[str] | bool | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list) and not value:
        return "[]"
    if isinstance(value, list):
        return "[\n" + "".join(f"    {json.dumps(v)},\n" for v in value) + "]"
    return json.dumps(value)  # a TOML basic string is a JSON string for these characters


def node_toml(name: str, *, role: str, bootstrap: list[str], explorer: bool = True) -> str:
    """node.toml of one node inside its pod: config and genesis at /config (the ConfigMap),
    keys at /keys (its Secret), data on the volume at /data; every listener on 0.0.0.0."""
    sections: list[tuple[str, list[tuple[str, str | list[str] | bool | int]]]] = [
        ("node", [("data_dir", DATA_DIR), ("genesis", "genesis.json")]),
    ]
    if role == "validator":
        sections.append(("validator", [("key_file", "/keys/validator.json")]))
    rpc: list[tuple[str, str | list[str] | bool | int]] = [("addr", "0.0.0.0"), ("port", RPC_PORT)]
    if role == "fullnode":
        # the public endpoint: browser wallets and pages; behind a Service, LoadBalancer or
        # Ingress many clients share a few source addresses (SNAT, the ingress pods), so the
        # per-address caps are raised (the total, max_connections, still bounds everything)
        rpc.append(("cors_origins", ["*"]))
        rpc.append(("max_http_connections_per_ip", 512))
        rpc.append(("max_ws_connections_per_ip", 256))
    sections.append(("rpc", rpc))
    p2p: list[tuple[str, str | list[str] | bool | int]] = [
        ("listen_addr", "0.0.0.0"),
        ("port", P2P_PORT),
    ]
    if role != "fullnode":  # full-node replicas make their own key in their data dir
        p2p.append(("node_key_file", "/keys/node.json"))
    if role == "bootnode":
        p2p.append(("bootnode", True))
    p2p.append(("bootstrap", bootstrap))
    sections.append(("p2p", p2p))
    sections.append(("metrics", [("enabled", True), ("addr", "0.0.0.0"), ("port", METRICS_PORT)]))
    if role == "fullnode" and explorer:
        sections.append(
            ("explorer", [("enabled", True), ("addr", "0.0.0.0"), ("port", EXPLORER_PORT)])
        )
    lines = [
        f"# {name}: written by `moderntensor testnet init --k8s`, mounted at /config/node.toml.",
        "# Paths: /config is the ConfigMap, /keys the node's Secret, /data its volume.",
    ]
    if role == "fullnode":
        lines += [
            "# Public RPC: clients behind a load balancer or Ingress share a few source",
            "# addresses, so the per-address connection caps are raised (max_connections",
            "# still bounds the total).",
        ]
    for title, keys in sections:
        lines += ["", f"[{title}]"] + [f"{key} = {_toml(value)}" for key, value in keys]
    return "\n".join(lines) + "\n"


def config_map(genesis_text: str, files: dict[str, str], spec: Spec) -> dict[str, Any]:
    """``moderntensor-config``: genesis.json and ``files`` (file name -> text)."""
    data = {"genesis.json": genesis_text, **files}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(CONFIG_MAP, spec),
        "data": data,
    }


def key_secret(name: str, files: dict[str, bytes], spec: Spec) -> dict[str, Any]:
    """The Secret ``<name>-keys`` holding a node's key files byte for byte (base64)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(f"{name}-keys", spec),
        "type": "Opaque",
        "data": {key: base64.b64encode(raw).decode("ascii") for key, raw in sorted(files.items())},
    }


def pod_security_context() -> dict[str, Any]:
    """Every pod runs as the image's non-root user, with the runtime's default seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _container(role: str, spec: Spec) -> dict[str, Any]:
    ports = [
        {"name": "rpc", "containerPort": RPC_PORT, "protocol": "TCP"},
        {"name": "p2p", "containerPort": P2P_PORT, "protocol": "TCP"},
        {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
    ]
    if role == "fullnode" and spec.explorer:
        ports.append({"name": "explorer", "containerPort": EXPLORER_PORT, "protocol": "TCP"})
    mounts = [
        {"name": "config", "mountPath": "/config", "readOnly": True},
        {"name": "data", "mountPath": "/data"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if role != "fullnode":
        mounts.insert(1, {"name": "keys", "mountPath": "/keys", "readOnly": True})
    return {
        "name": "node",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "moderntensor.node"],
        "args": ["--config", "/config/node.toml"],
        "ports": ports,
        "resources": spec.resources.container(),
        # Ready = /health 200: synced and finalizing. Alive = /metrics answers: the process and
        # its event loop run. /health is not the liveness check on purpose: it answers 503
        # while a node syncs or while the network cannot finalize, and restarting validators
        # then would make a stall longer, not shorter.
        "readinessProbe": {**_probe("/health", "rpc", 10, 3), "initialDelaySeconds": 5},
        "livenessProbe": {**_probe("/metrics", "metrics", 20, 6), "initialDelaySeconds": 30},
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def node_statefulset(name: str, role: str, spec: Spec, *, replicas: int = 1) -> dict[str, Any]:
    """A StatefulSet of one node (a validator or the bootnode) or of the public full nodes."""
    labels = _labels(role, name, spec)
    items = [
        {"key": f"{name}.toml", "path": "node.toml"},
        {"key": "genesis.json", "path": "genesis.json"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": CONFIG_MAP, "items": items}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    if role != "fullnode":
        # 0440: the kubelet owns Secret files as root with group fsGroup, so the node (uid
        # 10001, group 10001) reads them through the group bit; nobody else can.
        volumes.insert(
            1, {"name": "keys", "secret": {"secretName": f"{name}-keys", "defaultMode": 0o440}}
        )
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/path": "/metrics",
    }
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "enableServiceLinks": False,
        # SIGTERM stops the node cleanly (exit 0); give it time to close the database.
        "terminationGracePeriodSeconds": 60,
        "containers": [_container(role, spec)],
        "volumes": volumes,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, spec, labels),
        "spec": {
            "serviceName": P2P_SERVICE,
            "replicas": replicas,
            # Every pod starts at once: a validator set finalizes only with a quorum up, so an
            # ordered start (each pod waiting for the previous one to be ready) never would.
            "podManagementPolicy": "Parallel",
            # Validators restart only when their pod is deleted, one at a time (TESTNET.md,
            # "Upgrading"): applying a new image never restarts the whole set at once.
            "updateStrategy": {"type": "OnDelete" if role == "validator" else "RollingUpdate"},
            # The volume holds the slashing-protection record: never delete it with the set.
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "selector": {"matchLabels": {k: labels[k] for k in list(labels)[:3]}},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": pod_spec,
            },
            "volumeClaimTemplates": [spec.resources.claim()],
        },
    }


def headless_service(spec: Spec) -> dict[str, Any]:
    """Peer discovery: ``<pod>.moderntensor-p2p.<namespace>.svc.cluster.local`` per node pod.
    Not-ready pods are published too: a validator is ready only once the network finalizes,
    which needs the validators to find each other first."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(P2P_SERVICE, spec),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"app.kubernetes.io/name": APP},
            "ports": [{"name": "p2p", "port": P2P_PORT, "targetPort": "p2p", "protocol": "TCP"}],
        },
    }


def public_services(spec: Spec) -> list[dict[str, Any]]:
    """JSON-RPC (HTTP and WebSocket) and the explorer, served by the public full nodes."""
    selector = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": "fullnode"}
    out = []
    services = [("moderntensor-rpc", RPC_PORT, "rpc")]
    if spec.explorer:
        services.append(("moderntensor-explorer", EXPLORER_PORT, "explorer"))
    for name, port, port_name in services:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _meta(name, spec),
                "spec": {
                    "type": "ClusterIP",
                    "selector": selector,
                    "ports": [
                        {
                            "name": port_name,
                            "port": port,
                            "targetPort": port_name,
                            "protocol": "TCP",
                        }
                    ],
                },
            }
        )
    return out


def pdb(validators: int, spec: Spec) -> dict[str, Any]:
    """At most f validators evicted at once (drains, node upgrades): f = floor((N - 1) / 3)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta("validators", spec),
        "spec": {
            "maxUnavailable": fault_tolerance(validators),
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": APP,
                    "app.kubernetes.io/component": "validator",
                }
            },
        },
    }
