"""Free TCP ports on 127.0.0.1 for tests that start real servers or processes.

Runs of consecutive ports are taken below the kernel's ephemeral range (32768-60999 here), so
the outgoing connections of nodes already running cannot take one of them between the check
and the bind; one call gives every port a test needs, so two runs never overlap.
"""

from __future__ import annotations

import random
import socket

__all__ = ["free_port_run"]

_LOW, _HIGH = 20_000, 32_000
_rng = random.Random()


def free_port_run(count: int) -> int:
    """A base port with ``count`` consecutive free ports after it (bounded search)."""
    for _ in range(200):
        base = _rng.randrange(_LOW, _HIGH - count)
        sockets: list[socket.socket] = []
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
