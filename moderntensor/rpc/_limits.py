"""Connection limits that cannot lock everyone out: a pure core (STYLE rule 1).

One address may hold at most ``http_per_ip`` HTTP and ``ws_per_ip`` WebSocket connections, so
filling the server-wide ``total`` takes many addresses; and when the total is reached the
connection that has been idle longest (a keep-alive connection between requests, or one that
never sent a byte) is closed to make room, so idle sockets, however many addresses hold them,
never keep a new client out. Busy connections (a request in flight) and WebSockets are never
evicted: WebSockets are bounded per address instead.

:class:`ConnectionLimits` only counts and chooses; the server closes what it is told to (the
victim's ``Slot.cancel`` is the server's cancel scope, opaque here).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable

import attrs
import trio

__all__ = ["ConnectionLimits", "ConnectionRefused", "Slot", "send_refusal"]


class ConnectionRefused(Exception):
    """No room for this connection; ``reason`` names the limit (sent to the client)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.define(slots=True, eq=False)
class Slot:
    """One admitted connection: its address, whether it upgraded to WebSocket, and how to
    close it should it be evicted."""

    ip: str
    cancel: Callable[[], None]
    websocket: bool = False


class ConnectionLimits:
    """Counts connections per address and kind; picks the longest-idle one to evict."""

    def __init__(self, total: int, http_per_ip: int, ws_per_ip: int) -> None:
        self.total = total
        self.http_per_ip = http_per_ip
        self.ws_per_ip = ws_per_ip
        self._http: dict[str, int] = {}
        self._ws: dict[str, int] = {}
        self._count = 0
        self._idle: OrderedDict[Slot, None] = OrderedDict()  # oldest first
        self.refused = 0
        self.evicted = 0

    def __len__(self) -> int:
        return self._count

    def admit(self, ip: str, cancel: Callable[[], None]) -> Slot:
        """A new (idle) HTTP connection from ``ip``; evicts the longest-idle connection when
        the server is full.

        Raises:
            ConnectionRefused: ``ip`` is at its limit, or the server is full of busy
                connections.
        """
        held = self._http.get(ip, 0)
        if held >= self.http_per_ip:
            self.refused += 1
            raise ConnectionRefused(
                f"too many connections from {ip} (rpc.max_http_connections_per_ip = "
                f"{self.http_per_ip})"
            )
        if self._count >= self.total:
            if not self._idle:
                self.refused += 1
                raise ConnectionRefused(
                    f"server full (rpc.max_connections = {self.total}, all busy)"
                )
            victim, _ = self._idle.popitem(last=False)
            self.evicted += 1
            victim.cancel()
        slot = Slot(ip, cancel)
        self._http[ip] = held + 1
        self._count += 1
        self._idle[slot] = None
        return slot

    def busy(self, slot: Slot) -> None:
        """A request started on ``slot``: it is not evictable until :meth:`idle`."""
        self._idle.pop(slot, None)

    def idle(self, slot: Slot) -> None:
        """``slot`` waits for its next request (evictable, newest last)."""
        if not slot.websocket:
            self._idle[slot] = None

    def upgrade(self, slot: Slot) -> None:
        """``slot`` becomes a WebSocket (counted per address as one, never evicted).

        Raises:
            ConnectionRefused: its address holds ``ws_per_ip`` WebSockets already.
        """
        held = self._ws.get(slot.ip, 0)
        if held >= self.ws_per_ip:
            self.refused += 1
            raise ConnectionRefused(
                f"too many WebSocket connections from {slot.ip} "
                f"(rpc.max_ws_connections_per_ip = {self.ws_per_ip})"
            )
        self._idle.pop(slot, None)
        _decrement(self._http, slot.ip)
        self._ws[slot.ip] = held + 1
        slot.websocket = True

    def release(self, slot: Slot) -> None:
        """``slot`` closed."""
        self._idle.pop(slot, None)
        _decrement(self._ws if slot.websocket else self._http, slot.ip)
        self._count -= 1

    def statistics(self) -> dict[str, int]:
        return {
            "connections": self._count,
            "websockets": sum(self._ws.values()),
            "idle": len(self._idle),
            "addresses": len(self._http.keys() | self._ws.keys()),
            "refused": self.refused,
            "evicted": self.evicted,
        }


def _decrement(counts: dict[str, int], ip: str) -> None:
    left = counts.get(ip, 0) - 1
    if left > 0:
        counts[ip] = left
    else:
        counts.pop(ip, None)


REFUSAL_TIMEOUT_S = 1.0
"""How long a refused client gets to read why before its connection is closed."""


async def send_refusal(stream: trio.SocketStream, body: bytes) -> None:
    """Answer a refused connection with a 503 carrying ``body`` (JSON), then close it; a
    client that does not read within :data:`REFUSAL_TIMEOUT_S` is cut."""
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    with trio.move_on_after(REFUSAL_TIMEOUT_S):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(head + body)
    await trio.aclose_forcefully(stream)
