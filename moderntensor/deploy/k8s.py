"""Kubernetes manifests for a testnet made by ``moderntensor testnet init``: ``DIR/k8s/``.

Made from the files ``testnet init`` wrote (``genesis.json``, ``keys/``), so the cluster runs
the same chain with the same keys as the host's node.toml files::

    k8s/base/                  kubectl apply -k k8s/base       (the sizes below as BASE)
        kustomization.yaml
        namespace.yaml
        configmap.yaml         genesis.json and every node's node.toml
        services.yaml          moderntensor-p2p (headless), moderntensor-rpc, moderntensor-explorer
                               (the explorer only when the node has ``[explorer]``)
        pdb.yaml               at most f = floor((N - 1) / 3) validators evicted at once
        bootnode.yaml          StatefulSet, 1 replica
        validator-I.yaml       StatefulSet per validator, 1 replica, OnDelete updates
        fullnode.yaml          StatefulSet of public full nodes (RPC + explorer)
        faucet.yaml            with keys/faucet.json: the faucet (StatefulSet of 1, Service)
        secrets/NAME-keys.yaml a Secret per keyed node (mode 0600): its key files, base64
    k8s/overlays/small/        kubectl apply -k k8s/overlays/small
    k8s/overlays/large/        kubectl apply -k k8s/overlays/large

Nodes find each other by the stable DNS names of their StatefulSet pods under the headless
Service: ``/dns4/validator-0-0.moderntensor-p2p.<namespace>.svc.cluster.local/tcp/30303/ws/
p2p/<peer-id>``. Every validator dials the bootnode and the validators before it, as on one
host. ``python -m moderntensor.deploy.k8s DIR`` writes them again for an existing testnet.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import attrs

from moderntensor.deploy._k8s_faucet import faucet_service, faucet_statefulset, faucet_toml
from moderntensor.deploy._k8s_manifests import (
    APP,
    P2P_PORT,
    Spec,
    config_map,
    dns_name,
    headless_service,
    key_secret,
    namespace,
    node_statefulset,
    node_toml,
    pdb,
    public_services,
)
from moderntensor.deploy._k8s_overlays import BASE, OVERLAYS, overlay_files
from moderntensor.deploy._k8s_yaml import dump_yaml
from moderntensor.node.config import NodeConfig

__all__ = [
    "DEFAULT_IMAGE",
    "DEFAULT_NAMESPACE",
    "K8sError",
    "K8sInputs",
    "add_k8s_options",
    "read_testnet",
    "render_k8s",
    "write_k8s",
]

DEFAULT_NAMESPACE = "moderntensor"
DEFAULT_IMAGE = "moderntensor:latest"
CONFIG_MAP_LIMIT = 1024 * 1024  # Kubernetes' limit on a ConfigMap's data
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_WARNING = (
    "WARNING: this file holds private keys (base64 is not encryption). Fine for a throwaway "
    "testnet;\na real deployment keeps keys in its own secret store (Vault, SOPS, sealed "
    "secrets, a cloud KMS)\nand never commits them."
)


class K8sError(ValueError):
    """The testnet directory or an option cannot make manifests; the message says why."""


@attrs.frozen(slots=True, kw_only=True)
class K8sInputs:
    """What the manifests are made of: the genesis text and each node's key files."""

    genesis_text: str
    validators: tuple[str, ...]  # names, in genesis order: validator-I
    key_files: dict[str, dict[str, bytes]]  # node name -> {file name in /keys: bytes}
    # and "faucet" -> {"faucet.json": ...} when the testnet has a faucet key (keys/faucet.json)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise K8sError(f"{path}: {exc.strerror or exc}") from None


def _key_doc(raw: bytes, path: Path, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise K8sError(f"{path}: not a {kind} key file")
    return doc


def read_testnet(directory: str | Path) -> K8sInputs:
    """The genesis and keys of a ``testnet init`` directory.

    Raises:
        K8sError: a file is missing or does not match the genesis.
    """
    root = Path(directory)
    genesis_text = _read_bytes(root / "genesis.json").decode("utf-8", "replace")
    try:
        genesis = json.loads(genesis_text)
        members = [(v["name"], v["consensus_pubkey"].lower()) for v in genesis["validators"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise K8sError(f"{root / 'genesis.json'}: not a genesis with named validators") from None
    key_files: dict[str, dict[str, bytes]] = {}
    for name in ["bootnode", *(name for name, _ in members)]:
        path = root / "keys" / f"node-{name}.json"
        raw = _read_bytes(path)
        _key_doc(raw, path, "node")
        key_files[name] = {"node.json": raw}
    for name, pubkey in members:
        path = root / "keys" / f"{name}.json"
        raw = _read_bytes(path)
        if str(_key_doc(raw, path, "validator").get("consensus_pubkey", "")).lower() != pubkey:
            raise K8sError(f"{path}: its consensus key is not the genesis key of {name}")
        key_files[name]["validator.json"] = raw
    faucet = root / "keys" / "faucet.json"
    if faucet.exists():
        raw = _read_bytes(faucet)
        _key_doc(raw, faucet, "account")
        key_files["faucet"] = {"faucet.json": raw}
    return K8sInputs(
        genesis_text=genesis_text, validators=tuple(n for n, _ in members), key_files=key_files
    )


def _peer_id(raw: bytes) -> str:
    return str(json.loads(raw)["peer_id"])


def _label_value(text: str) -> str:
    """``text`` as a Kubernetes label value: at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at
    both ends (other characters become '-'); "moderntensor" if nothing is left."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")
    return value or APP


def _check_config_size(files: dict[str, str]) -> None:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in files.items())
    if size > CONFIG_MAP_LIMIT:
        raise K8sError(
            f"genesis.json and the node.toml files come to {size:,} bytes; a ConfigMap holds at "
            f"most {CONFIG_MAP_LIMIT:,} (1 MiB): make the genesis smaller (fewer --alloc entries)"
        )


def node_has_explorer() -> bool:
    """Whether this node knows node.toml's ``[explorer]`` section (an unknown section is an
    error at start, so the full nodes get one only when the node can serve it)."""
    return "explorer" in attrs.fields_dict(NodeConfig)


def render_k8s(
    inputs: K8sInputs,
    *,
    namespace_name: str = DEFAULT_NAMESPACE,
    image: str = DEFAULT_IMAGE,
    explorer: bool | None = None,
) -> dict[str, str]:
    """Every file of ``k8s/``: relative path -> YAML text (pure; the same inputs, the same text).
    ``explorer``: serve the explorer from the public full nodes (None: when the node has it).

    Raises:
        K8sError: a bad namespace or image name.
    """
    if not _DNS_LABEL.match(namespace_name):
        raise K8sError(
            f"namespace {namespace_name!r}: must be a DNS label (a-z, 0-9, '-', at most 63)"
        )
    if not image or any(c.isspace() for c in image):
        raise K8sError(f"image {image!r}: must be a non-empty name without spaces")
    genesis = json.loads(inputs.genesis_text)
    spec = Spec(
        namespace=namespace_name,
        image=image,
        network=_label_value(str(genesis.get("network_name") or "")),
        resources=BASE,
        explorer=node_has_explorer() if explorer is None else explorer,
    )
    keyed = ["bootnode", *inputs.validators]
    addrs = {
        name: f"/dns4/{dns_name(name + '-0', spec)}/tcp/{P2P_PORT}/ws/p2p/"
        + _peer_id(inputs.key_files[name]["node.json"])
        for name in keyed
    }
    tomls = {"bootnode": node_toml("bootnode", role="bootnode", bootstrap=[])}
    for i, name in enumerate(inputs.validators):
        dial = [addrs[other] for other in keyed[: i + 1]]  # the bootnode and earlier validators
        tomls[name] = node_toml(name, role="validator", bootstrap=dial)
    tomls["fullnode"] = node_toml(
        "fullnode", role="fullnode", bootstrap=[addrs[n] for n in keyed], explorer=spec.explorer
    )
    configs = {f"{name}.toml": text for name, text in tomls.items()}
    if "faucet" in inputs.key_files:
        configs["faucet.toml"] = faucet_toml()
    _check_config_size({"genesis.json": inputs.genesis_text, **configs})
    n = len(inputs.validators)
    base: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "namespace.yaml": ("", [namespace(spec)]),
        "configmap.yaml": (
            "genesis.json, each node's node.toml (and faucet.toml with a faucet)",
            [config_map(inputs.genesis_text, configs, spec)],
        ),
        "services.yaml": (
            "peer discovery (headless), JSON-RPC and the explorer",
            [headless_service(spec), *public_services(spec)],
        ),
        "pdb.yaml": (_pdb_comment(n), [pdb(n, spec)]),
        "bootnode.yaml": (_sizing(), [node_statefulset("bootnode", "bootnode", spec)]),
    }
    for name in inputs.validators:
        base[f"{name}.yaml"] = (_sizing(), [node_statefulset(name, "validator", spec)])
    base["fullnode.yaml"] = (_sizing(), [node_statefulset("fullnode", "fullnode", spec)])
    if "faucet" in inputs.key_files:
        keyed.append("faucet")
        base["faucet.yaml"] = (
            "the testnet faucet: one pod (its SQLite history and its account's nonces allow no "
            "second),\npaying from keys/faucet.json through moderntensor-rpc; Service "
            "moderntensor-faucet:8080",
            [faucet_statefulset(spec, int(genesis["chain_id"])), faucet_service(spec)],
        )
    for name in keyed:
        base[f"secrets/{name}-keys.yaml"] = (
            _WARNING,
            [key_secret(name, inputs.key_files[name], spec)],
        )
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(base),
    }
    files = {
        "base/kustomization.yaml": dump_yaml(
            [kustomization],
            f"{spec.network}: {n} validator(s), a bootnode and public full nodes in namespace "
            f"{namespace_name}.\nWritten by `moderntensor testnet init --k8s`. kubectl apply -k "
            "base (or overlays/small, overlays/large).",
        )
    }
    files.update({f"base/{path}": dump_yaml(docs, head) for path, (head, docs) in base.items()})
    for overlay in OVERLAYS:
        for path, (head, docs) in overlay_files(overlay).items():
            files[f"overlays/{overlay.name}/{path}"] = dump_yaml(docs, head)
    return files


def _sizing() -> str:
    return (
        "Resources (see moderntensor/deploy/_k8s_overlays.py): a node peaked at 116-128 MB RSS "
        "in\nscripts/bench_node.py and 255 MB in scripts/bench_state.py; five localnet nodes "
        "finalized\n759 transfers/s on 2 cores (README, Performance). Requests: normal load; "
        "limits: bursts."
    )


def _pdb_comment(n: int) -> str:
    f = (n - 1) // 3
    text = f"{n} validator(s) tolerate f = floor((N - 1) / 3) = {f} down and still finalize."
    if f == 0:
        text += (
            "\nWith fewer than 4 validators any one down stops finality, so maxUnavailable is 0: "
            "a drain\nwaits (it never evicts a validator by itself) and the operator decides "
            "when to stop the chain."
        )
    return text


def write_k8s(
    out: str | Path,
    inputs: K8sInputs,
    *,
    namespace_name: str = DEFAULT_NAMESPACE,
    image: str = DEFAULT_IMAGE,
    explorer: bool | None = None,
) -> list[Path]:
    """Write ``render_k8s`` under ``out`` (created); Secret manifests get mode 0600.

    Raises:
        K8sError: as :func:`render_k8s`, or a file cannot be written.
    """
    written = []
    files = render_k8s(inputs, namespace_name=namespace_name, image=image, explorer=explorer)
    for rel, text in files.items():
        path = Path(out) / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            mode = 0o600 if "/secrets/" in rel else 0o644
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(path, mode)  # also when the file existed with other bits
        except OSError as exc:
            raise K8sError(f"{path}: {exc.strerror or exc}") from None
        written.append(path)
    return written


def _namespace_arg(text: str) -> str:
    if not _DNS_LABEL.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a DNS label (a-z, 0-9 and '-', at most 63 characters)"
        )
    return text


def _image_arg(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an image name")
    return text


def add_k8s_options(parser: argparse.ArgumentParser) -> None:
    """``--k8s``, ``--k8s-namespace`` and ``--k8s-image`` for ``testnet init`` (checked while
    parsing, so a bad one is refused before anything is written)."""
    parser.add_argument(
        "--k8s", action="store_true", help="also write Kubernetes manifests to DIR/k8s"
    )
    parser.add_argument(
        "--k8s-namespace", default=DEFAULT_NAMESPACE, metavar="NS", type=_namespace_arg,
        help=f"namespace of the manifests (default {DEFAULT_NAMESPACE})",
    )  # fmt: skip
    parser.add_argument(
        "--k8s-image", default=DEFAULT_IMAGE, metavar="IMAGE", type=_image_arg,
        help=f"node image the pods run (default {DEFAULT_IMAGE}; push it to your registry)",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """``python -m moderntensor.deploy.k8s DIR``: (re)write DIR/k8s for a testnet directory."""
    parser = argparse.ArgumentParser(
        prog="python -m moderntensor.deploy.k8s",
        description="Write DIR/k8s (Kubernetes manifests) for a `moderntensor testnet init` DIR.",
    )
    parser.add_argument("dir", metavar="DIR")
    parser.add_argument("--out", help="where to write (default DIR/k8s)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, type=_namespace_arg)
    parser.add_argument("--image", default=DEFAULT_IMAGE, type=_image_arg)
    parser.add_argument(
        "--explorer",
        choices=("auto", "on", "off"),
        default="auto",
        help="serve the explorer from the public full nodes (auto: when this node has it)",
    )
    args = parser.parse_args(argv)
    explorer = {"auto": None, "on": True, "off": False}[args.explorer]
    try:
        inputs = read_testnet(args.dir)
        out = Path(args.out) if args.out else Path(args.dir) / "k8s"
        paths = write_k8s(
            out, inputs, namespace_name=args.namespace, image=args.image, explorer=explorer
        )
    except K8sError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"k8s": str(out), "files": len(paths)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
