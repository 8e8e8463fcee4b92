"""Which nodes to watch: URLs from ``--nodes``, or the nodes of a ``testnet init`` directory.

A testnet directory has ``testnet.json`` (each node's name and RPC URL); without it, each
``DIR/*/node.toml`` gives its ``[rpc] addr`` and ``port`` (an unspecified bind address such as
0.0.0.0 is reached at 127.0.0.1) and the directory name is the node's name.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ._http import parse_http_url

__all__ = ["MonitorTargetError", "targets_from_testnet", "targets_from_urls"]

_UNSPECIFIED = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class MonitorTargetError(Exception):
    """A node list that cannot be used (bad URL, missing or malformed testnet files)."""


def targets_from_urls(urls: Sequence[str]) -> list[tuple[str, str]]:
    """(name, url) per URL; the name is host:port (a path, if any, is kept)."""
    out: list[tuple[str, str]] = []
    for url in urls:
        try:
            parse_http_url(url)
        except ValueError as exc:
            raise MonitorTargetError(f"--nodes {exc}") from None
        parts = urlsplit(url)
        name = parts.netloc + (parts.path.rstrip("/") or "")
        out.append((name, url.rstrip("/") if parts.path in ("", "/") else url))
    names = [n for n, _ in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MonitorTargetError(f"--nodes lists the same node twice: {', '.join(dupes)}")
    return out


def _reachable(url: str) -> str:
    """The URL with an unspecified bind address (0.0.0.0) replaced by loopback."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in _UNSPECIFIED and parts.port is not None:
        local = _UNSPECIFIED[host]
        return parts._replace(
            netloc=f"{f'[{local}]' if ':' in local else local}:{parts.port}"
        ).geturl()
    return url


def targets_from_testnet(directory: Path) -> list[tuple[str, str]]:
    """(name, url) of each node of a ``moderntensor testnet init`` directory."""
    if not directory.is_dir():
        raise MonitorTargetError(f"--testnet {directory}: not a directory")
    summary = directory / "testnet.json"
    if summary.exists():
        try:
            doc = json.loads(summary.read_text(encoding="utf-8"))
            nodes = [(str(n["name"]), _reachable(str(n["rpc"]))) for n in doc["nodes"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MonitorTargetError(f"{summary}: cannot read the node list: {exc!r}") from None
    else:
        nodes = []
        for toml in sorted(directory.glob("*/node.toml")):
            try:
                rpc = tomllib.loads(toml.read_text(encoding="utf-8")).get("rpc", {})
                host = str(rpc.get("addr", "127.0.0.1"))
                port = int(rpc.get("port", 8545))
            except (OSError, ValueError, TypeError) as exc:
                raise MonitorTargetError(f"{toml}: cannot read [rpc]: {exc}") from None
            host = _UNSPECIFIED.get(host, host)
            nodes.append(
                (toml.parent.name, f"http://{f'[{host}]' if ':' in host else host}:{port}")
            )
    if not nodes:
        raise MonitorTargetError(f"--testnet {directory}: no testnet.json and no */node.toml")
    for name, url in nodes:
        try:
            parse_http_url(url)
        except ValueError as exc:
            raise MonitorTargetError(f"{directory}: node {name}: {exc}") from None
    return nodes
