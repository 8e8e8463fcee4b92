"""Resource sizes and the kustomize overlays (``overlays/small``, ``overlays/large``).

The validator count is fixed by the genesis, so an overlay cannot add validators (a bigger
validator set is a new ``testnet init --validators N --k8s``). What an overlay changes is
what a cluster's size changes: requests and limits, volume sizes and the number of public
full-node replicas behind the RPC Service. Overlays use only ``resources`` and strategic-merge
``patches`` (by name, or by a label selector over the validators), so the tests can render
them without kubectl and compare with ``kubectl kustomize`` where it is installed.

Sizes come from the benchmarks in README.md ("Performance"), measured on a 2-core x86_64 VM:

* memory: a node under ``scripts/bench_node.py`` (20,000 transfers at full speed) peaks at
  116-128 MB RSS; ``scripts/bench_state.py`` (100,000 accounts, 1,000-transfer blocks) at
  255 MB. The pool is capped (``[mempool]``), so memory does not grow with load beyond that.
* CPU: under load, the 4-validator localnet (``scripts/bench_net.py localnet``) finalizes 759
  transfers/s with five nodes sharing 2 cores (about 0.4 core each), and ``bench_node`` drives
  one node to 3,700-6,600 finalized transfers/s using both cores. Idle (a 4-validator localnet
  of empty 1-second blocks, measured 2026-12-02): 3 s of CPU per node over its first 69 s,
  start-up included (under 5% of a core), 64 MB RSS each.
* disk: measured on a 4-validator localnet (2026-12-02): each data dir held 300 KB after 20
  empty blocks and 328 KB after 40, about 1.4 KB per empty block with RocksDB's log, so about
  120 MB a day at 1-second slots before transactions; a transfer adds its bytes, receipt and
  state on top. 10 GiB is months of a quiet testnet.

A CPU limit throttles a node in 100 ms periods, which shows up as event-loop stalls and late
votes, so the limits are generous and the requests are what a node needs at normal load.
"""

from __future__ import annotations

import textwrap
from typing import Any

import attrs

from moderntensor.deploy._k8s_manifests import Resources

__all__ = ["BASE", "OVERLAYS", "Overlay", "overlay_files"]


@attrs.frozen(slots=True)
class Overlay:
    """One overlay: validator and bootnode sizes, full-node sizes and replicas."""

    name: str
    about: str
    validator: Resources
    fullnode: Resources
    replicas: int


def _size(cpu: str, memory: str, cpu_limit: str, memory_limit: str, storage: str) -> Resources:
    return Resources(
        cpu_request=cpu,
        memory_request=memory,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        storage=storage,
    )


# base: a few hundred transfers/s, one public RPC replica.
BASE = _size("500m", "512Mi", "2", "1Gi", "10Gi")
SMALL = _size("100m", "256Mi", "1", "512Mi", "2Gi")
LARGE = _size("1", "1Gi", "2", "2Gi", "50Gi")
OVERLAYS = (
    Overlay(
        "small",
        "a development cluster (kind, minikube, k3s): small requests, small volumes, one RPC "
        "replica. Fits an idle testnet of 4 validators on a 2-core machine.",
        SMALL,
        SMALL,
        1,
    ),
    Overlay(
        "large",
        "a shared testnet under load (thousands of transfers/s, public users): a core and "
        "1 GiB requested per node, 2 GiB limits, 50 GiB volumes, three RPC replicas.",
        LARGE,
        LARGE,
        3,
    ),
)


def _patch(name: str, size: Resources, replicas: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    spec["template"] = {"spec": {"containers": [{"name": "node", "resources": size.container()}]}}
    spec["volumeClaimTemplates"] = [size.claim()]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": spec,
    }


def overlay_files(overlay: Overlay) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """``file name -> (header comment, documents)`` of one overlay directory."""
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../../base"],
        "patches": [
            {
                "path": "validators.yaml",
                "target": {
                    "kind": "StatefulSet",
                    "labelSelector": "app.kubernetes.io/component in (validator,bootnode)",
                },
            },
            {"path": "fullnode.yaml", "target": {"kind": "StatefulSet", "name": "fullnode"}},
        ],
    }
    head = textwrap.fill(f"overlay {overlay.name}: {overlay.about}", width=96)
    return {
        "kustomization.yaml": (f"{head}\nkubectl apply -k .", [kustomization]),
        "validators.yaml": (
            "every validator and the bootnode (the patch's name is ignored: the target selects "
            "them).\nA volume's size cannot change after its claim exists: pick the overlay "
            "before the first apply.",
            [_patch("validators", overlay.validator)],
        ),
        "fullnode.yaml": (
            "the public full nodes behind moderntensor-rpc and moderntensor-explorer",
            [_patch("fullnode", overlay.fullnode, overlay.replicas)],
        ),
    }
