"""The testnet faucet on Kubernetes, made when the testnet directory has ``keys/faucet.json``
(an account key file funded in the genesis: ``testnet init --compose`` writes one, or the
operator does with ``moderntensor keys new account`` and ``--alloc``).

One pod (a StatefulSet of one replica: the faucet keeps its claims and payouts in SQLite on
its volume and is the only sender of its account's transactions, so it must never run twice),
its key from the Secret ``faucet-keys``, faucet.toml from the ConfigMap, the public full nodes'
JSON-RPC through the ``moderntensor-rpc`` Service, and the Service ``moderntensor-faucet``
(8080). It exits when that RPC does not answer at start; Kubernetes restarts it until the
full nodes are up.
"""

from __future__ import annotations

from typing import Any

from moderntensor.deploy._k8s_manifests import (
    APP,
    CONFIG_MAP,
    RPC_PORT,
    Resources,
    Spec,
    pod_security_context,
)

__all__ = ["FAUCET_PORT", "FAUCET_SIZE", "faucet_service", "faucet_statefulset", "faucet_toml"]

FAUCET_PORT = 8080
NAME = "faucet"
# The faucet is an HTTP server with a SQLite file: a tenth of a core and 128 MiB, one GiB of
# history (claims older than 30 days are deleted).
FAUCET_SIZE = Resources(
    cpu_request="50m", memory_request="128Mi", cpu_limit="500m", memory_limit="256Mi",
    storage="1Gi",
)  # fmt: skip


def faucet_toml() -> str:
    return "\n".join(
        [
            "# The testnet faucet (docs/faucet.md: every key); mounted at /config/faucet.toml.",
            "# proxy_count: 0 trusts no X-Forwarded-For. Behind one Ingress or proxy that appends",
            "# the client's address, set 1, or every claim counts against the proxy's address.",
            "[faucet]",
            'host = "0.0.0.0"',
            f"port = {FAUCET_PORT}",
            'amount = "1"',
            'database = "/data/faucet.sqlite3"',
            "proxy_count = 0",
            "",
        ]
    )


def _labels(spec: Spec) -> dict[str, str]:
    # not app.kubernetes.io/name=moderntensor: the nodes' Services must not select it
    return {
        "app.kubernetes.io/name": f"{APP}-faucet",
        "app.kubernetes.io/component": NAME,
        "app.kubernetes.io/instance": NAME,
        "app.kubernetes.io/part-of": spec.network,
    }


def faucet_statefulset(spec: Spec, chain_id: int) -> dict[str, Any]:
    labels = _labels(spec)
    probe = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
    container = {
        "name": NAME,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "moderntensor.cli", "faucet"],
        "args": [
            "--rpc",
            f"http://moderntensor-rpc.{spec.namespace}.svc.cluster.local:{RPC_PORT}",
            "--key-file",
            "/keys/faucet.json",
            "--config",
            "/config/faucet.toml",
            "--chain-id",
            str(chain_id),
        ],
        "ports": [{"name": "http", "containerPort": FAUCET_PORT, "protocol": "TCP"}],
        "resources": FAUCET_SIZE.container(),
        # Ready: /api/info answers (it asks the node for the balance); alive: the page.
        "readinessProbe": {"httpGet": {"path": "/api/info", "port": "http"}, **probe},
        "livenessProbe": {
            "httpGet": {"path": "/", "port": "http"},
            **probe,
            "initialDelaySeconds": 10,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/config", "readOnly": True},
            {"name": "keys", "mountPath": "/keys", "readOnly": True},
            {"name": "data", "mountPath": "/data"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": NAME, "namespace": spec.namespace, "labels": labels},
        "spec": {
            "serviceName": f"{APP}-faucet",
            "replicas": 1,  # never more: one payer per account and one SQLite writer
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "selector": {"matchLabels": {k: labels[k] for k in list(labels)[:3]}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": pod_security_context(),
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "config",
                            "configMap": {
                                "name": CONFIG_MAP,
                                "items": [{"key": "faucet.toml", "path": "faucet.toml"}],
                            },
                        },
                        {
                            "name": "keys",
                            "secret": {"secretName": "faucet-keys", "defaultMode": 0o440},
                        },
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
            "volumeClaimTemplates": [FAUCET_SIZE.claim()],
        },
    }


def faucet_service(spec: Spec) -> dict[str, Any]:
    labels = _labels(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{APP}-faucet", "namespace": spec.namespace, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": {k: labels[k] for k in list(labels)[:3]},
            "ports": [
                {"name": "http", "port": FAUCET_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }
