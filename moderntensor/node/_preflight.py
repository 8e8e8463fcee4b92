"""Operator mistakes found at start: one line naming the culprit, exit code 2, no traceback.

A port already taken, two listeners on one port, a file where the data directory should be, a
database another node holds open or that belongs to another chain: none of these is a bug, and
a traceback (an ``ExceptionGroup`` of 25-45 lines, exit 1) hides the one fact the operator needs.
The node raises :class:`StartupError` for each, with the flag or ``node.toml`` key to change.

:func:`check_listeners` runs before the node logs anything, so the error is all that reaches
stderr; the same mistakes found later (a port taken in between) are translated by the
supervisor with :func:`bind_error`, so they too end in one line and exit 2.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from pathlib import Path

import attrs

__all__ = [
    "Listener",
    "StartupError",
    "bind_error",
    "check_data_dir",
    "check_listeners",
    "format_http_url",
]


class StartupError(Exception):
    """An operator's mistake found while starting the node; printed as one line, exit code 2."""


@attrs.frozen(slots=True)
class Listener:
    """A socket the node will listen on; ``name`` is what the operator sets (``rpc.port``,
    ``--rpc-port``)."""

    name: str
    addr: str
    port: int


def format_http_url(addr: str, port: int) -> str:
    """``http://addr:port``, with an IPv6 address in brackets as RFC 3986 wants
    (``http://[::1]:8545``; ``http://::1:8545`` is not a URL a client can parse)."""
    host = f"[{addr}]" if ":" in addr else addr
    return f"http://{host}:{port}"


def bind_error(listener: Listener, exc: OSError) -> StartupError:
    """The one line for a socket that cannot be bound, naming the setting and the cause."""
    where = f"{listener.name} {listener.port} on {listener.addr}"
    if exc.errno == errno.EADDRINUSE:
        return StartupError(f"{where}: address already in use (another process listens there)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartupError(f"{where}: {listener.addr} is not an address of this host")
    if exc.errno == errno.EACCES:
        return StartupError(f"{where}: permission denied (ports below 1024 need privileges)")
    return StartupError(f"{where}: cannot listen: {exc.strerror or exc}")


def _overlap(a: Listener, b: Listener) -> bool:
    if a.port == 0 or a.port != b.port:
        return False
    wildcard = {"0.0.0.0", "::"}
    return a.addr == b.addr or a.addr in wildcard or b.addr in wildcard


def check_listeners(listeners: list[Listener]) -> None:
    """Refuse two listeners on one port, and any port another process already listens on.

    The bind test uses ``SO_REUSEADDR`` as Trio's listeners do, so a port in TIME_WAIT from
    a node just stopped is not mistaken for a taken one. A port taken between this check and
    the real bind is still reported as one line (:func:`bind_error`).

    Raises:
        StartupError: naming the setting(s) and the port.
    """
    for i, a in enumerate(listeners):
        for b in listeners[i + 1 :]:
            if _overlap(a, b):
                raise StartupError(
                    f"{b.name} {b.port} is also {a.name}: give each listener its own port"
                )
    for listener in listeners:
        if listener.port == 0:
            continue
        family = (
            socket.AF_INET6 if ipaddress.ip_address(listener.addr).version == 6 else socket.AF_INET
        )
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((listener.addr, listener.port))
            except OSError as exc:
                raise bind_error(listener, exc) from None


def check_data_dir(path: Path, name: str) -> None:
    """A data directory must be a directory (or not exist yet).

    Raises:
        StartupError: ``path`` exists and is something else.
    """
    if path.exists() and not path.is_dir():
        raise StartupError(f"{name} {path}: exists and is not a directory")
