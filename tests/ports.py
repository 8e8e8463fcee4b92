"""Free TCP ports on 127.0.0.1 for tests that start real servers or processes."""

from __future__ import annotations

import socket

__all__ = ["free_port_run"]


def free_port_run(count: int) -> int:
    """A base port with ``count`` consecutive free ports after it (bounded search)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count >= 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no run of free ports found")
