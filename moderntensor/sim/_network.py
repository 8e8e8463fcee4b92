"""Simulated links: the network's transport seam over in-process queues whose frames arrive
after a latency with jitter, may be lost or duplicated, and are dropped between the two sides
of a partition. One delivery task orders every frame in flight by (arrival time, send order),
so with Trio's ``MockClock`` and a seeded ``random.Random`` a run is a function of its seed.

The fates come from the fault relay's link model (``network.faultrelay``): each direction of
each connection is a lane with its own seeded random stream, FIFO unless ``reorder``. A
connection keeps going through a partition (as TCP does while packets are lost): frames are
dropped, not delayed, and a dial across it is refused.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from moderntensor.network import MAX_FRAME_SIZE, ConnectionClosed, DialError
from moderntensor.network._transport import ConnectionHandler, MemoryTransport
from moderntensor.network.faultrelay import Lane, LinkConfig, LinkModel

__all__ = ["SimNetwork", "host_of", "link_config", "node_of"]

Observer = Callable[[float, int, int, bytes], None]
"""Called with (time, to node, from node, frame) as each frame arrives."""


def host_of(node: int) -> str:
    return f"10.{node // 65536}.{node // 256 % 256}.{node % 256}"


def node_of(host: str) -> int:
    _ten, b, c, d = (int(x) for x in host.split("."))
    return b * 65536 + c * 256 + d


def link_config(
    latency_ms: float, jitter_ms: float, drop: float, duplicate: float, reorder: bool
) -> LinkConfig:
    """The fault relay's link settings for the simulator's ``--latency L --jitter J``: a delay
    uniform in ``[L - J, L + J]`` (never below 0)."""
    low = max(0.0, latency_ms - jitter_ms) / 1000
    return LinkConfig(latency_s=low, jitter_s=(latency_ms + jitter_ms) / 1000 - low, loss=drop,
                      duplicate=duplicate, reorder=1.0 if reorder else 0.0)  # fmt: skip


class _SimConnection:
    """One end of a simulated connection."""

    def __init__(self, net: SimNetwork, src: int, dst: int, remote_host: str, port: int) -> None:
        self.net = net
        self.src = src
        self.dst = dst
        self.remote_host = remote_host
        self.remote_port = port
        self.other: _SimConnection | None = None
        self.inbox: deque[bytes] = deque()
        self.readable = trio.Event()
        self.closed = False
        self.lane: Lane | None = None  # the link model's lane of this direction

    async def send(self, frame: bytes) -> None:
        other = self.other
        if self.closed or other is None or other.closed:
            raise ConnectionClosed("send: closed")
        await trio.lowlevel.checkpoint()
        self.net.route(self, bytes(frame))

    async def receive(self) -> bytes:
        while not self.inbox:
            if self.closed or (self.other is not None and self.other.closed):
                raise ConnectionClosed("closed")
            self.readable = trio.Event()
            await self.readable.wait()
        frame = self.inbox.popleft()
        if len(frame) > MAX_FRAME_SIZE:
            await self.aclose()
            raise ConnectionClosed(f"message of {len(frame)} bytes > {MAX_FRAME_SIZE}")
        return frame

    async def aclose(self) -> None:
        self.closed = True
        self.readable.set()
        if self.other is not None:
            self.other.readable.set()

    def arrive(self, frame: bytes) -> None:
        if not self.closed:
            self.inbox.append(frame)
            self.readable.set()


class SimNetwork:
    """In-process hosts ``host_of(i)``, links of ``model``, partitions from ``cut``."""

    def __init__(
        self,
        model: LinkModel,
        *,
        cut: Callable[[int, int], bool] = lambda a, b: False,
        observe: Observer | None = None,
    ) -> None:
        self.model = model
        self.cut = cut
        self.observe = observe
        self._lanes = itertools.count()
        self._listeners: dict[tuple[str, int], Callable[[_SimConnection], None]] = {}
        self._heap: list[tuple[float, int, _SimConnection, bytes]] = []
        self._seq = itertools.count()
        self._ports = itertools.count(40_000)
        self._wake = trio.Event()
        self.sent = self.delivered = self.dropped = self.duplicated = 0
        self.tamper: dict[int, Callable[[int, bytes], list[bytes]]] = {}
        """Byzantine senders' actors: (destination, frame) -> the frames sent instead."""
        self.on_send: Callable[[float, int, int, bytes], None] | None = None
        """Called with (time, from node, to node, frame) as each frame leaves its sender
        (after its actor, before the link's fate)."""

    def transport(self, node: int) -> SimTransport:
        return SimTransport(self, node)

    def route(self, conn: _SimConnection, frame: bytes) -> None:
        """Schedule ``frame`` from ``conn`` to the other end (or lose it); a byzantine
        sender's frames pass through its actor first."""
        actor = self.tamper.get(conn.src)
        for out in [frame] if actor is None else actor(conn.dst, frame):
            if self.on_send is not None:
                self.on_send(trio.current_time(), conn.src, conn.dst, out)
            self._route(conn, out)

    def _route(self, conn: _SimConnection, frame: bytes) -> None:
        self.sent += 1
        other = conn.other
        assert other is not None
        if self.cut(conn.src, conn.dst):
            self.dropped += 1
            return
        if conn.lane is None:  # its own random stream: fates do not depend on interleaving
            conn.lane = self.model.open_lane(str(conn.src), str(conn.dst), str(next(self._lanes)))
        fate = self.model.compute_fate(conn.lane, trio.current_time())
        if not fate.due:
            self.dropped += 1
            return
        self.duplicated += len(fate.due) - 1
        for at in fate.due:
            heapq.heappush(self._heap, (at, next(self._seq), other, frame))
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver frames as their time comes (a long-lived task)."""
        task_status.started()
        while True:
            self._wake = trio.Event()
            if not self._heap:
                await self._wake.wait()
                continue
            at = self._heap[0][0]
            if at > trio.current_time():
                with trio.move_on_at(at):
                    await self._wake.wait()
                continue
            _, _, conn, frame = heapq.heappop(self._heap)
            if conn.closed:
                continue
            self.delivered += 1
            conn.arrive(frame)
            if self.observe is not None:
                self.observe(at, conn.dst, conn.src, frame)

    def listen(self, host: str, port: int, accept: Callable[[_SimConnection], None]) -> int:
        port = port or next(self._ports)
        if (host, port) in self._listeners:
            raise OSError(f"{host}:{port}: address in use")
        self._listeners[(host, port)] = accept
        return port

    def unlisten(self, host: str, port: int) -> None:
        self._listeners.pop((host, port), None)

    def dial(self, src: int, host: str, port: int) -> _SimConnection:
        accept = self._listeners.get((host, port))
        dst = node_of(host)
        if accept is None or self.cut(src, dst):
            raise DialError(f"{host}:{port}: connection refused")
        ours = _SimConnection(self, src, dst, host, port)
        theirs = _SimConnection(self, dst, src, host_of(src), next(self._ports))
        ours.other, theirs.other = theirs, ours
        accept(theirs)
        return ours


class SimTransport:
    """Node ``node``'s side of a :class:`SimNetwork` (the network's ``Transport``)."""

    def __init__(self, net: SimNetwork, node: int) -> None:
        self.net = net
        self.node = node

    async def serve(
        self,
        host: str,
        port: int,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        host = host_of(self.node)  # a node listens on its own host, whatever it asked
        async with trio.open_nursery() as nursery:

            def accept(conn: _SimConnection) -> None:
                nursery.start_soon(self._handle, handler, conn)

            bound = self.net.listen(host, port, accept)
            try:
                task_status.started(bound)
                await trio.sleep_forever()
            finally:
                self.net.unlisten(host, bound)

    _handle = staticmethod(MemoryTransport._handle)  # run the handler, then close

    @asynccontextmanager
    async def connect(self, host: str, port: int) -> AsyncIterator[_SimConnection]:
        await trio.sleep(self.net.model.config.latency_s)  # a connection costs a round trip
        conn = self.net.dial(self.node, host, port)
        try:
            yield conn
        finally:
            await conn.aclose()
