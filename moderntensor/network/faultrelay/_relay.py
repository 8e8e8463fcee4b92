"""The relay's Trio shell: listeners, one task pair per direction of each connection.

For each :class:`Route` the relay listens on ``listen_host:listen_port``. A WebSocket upgrade
there makes it dial ``target_host:target_port`` first (same resource path); only if that
works does it accept, else it rejects with HTTP 502, so the dialer sees a refused dial as it
would without the relay. It then forwards every message, each way, through the link model:

* a *reader* takes the next message, asks :meth:`LinkModel.compute_fate` (the time is the
  arrival time) and queues it at each due time (none: dropped and counted);
* a *writer* sends each queued message once it is due, unless its lane is partitioned by then
  (dropped and counted).

Each lane's queue is bounded in messages and bytes (``queue_messages``, ``queue_bytes``; one
message is always let in, however large). When it is full the reader waits and stops reading,
so a slow receiver backs up its sender's socket as TCP would, and the relay's memory stays
bounded; such waits are counted as ``stalled``. Partitioned and lost messages are dropped at
once, so a partition never stalls anything: both nodes keep their connection and simply hear
nothing, as after a cable cut.

When one side closes, what is queued toward the other is still delivered (at its due time),
then that side is closed too; when a send fails, the whole connection ends at once.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import trio
import trio_websocket

from moderntensor.network._logging import event
from moderntensor.network._messages import MAX_FRAME_SIZE
from moderntensor.network.faultrelay._model import Lane, LinkConfig, LinkModel, Verdict

__all__ = ["FaultRelay", "RelayStatistics", "Route", "parse_route"]

log = logging.getLogger("moderntensor.network.faultrelay")

QUEUE_MESSAGES = 4096
QUEUE_BYTES = 64 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0
DISCONNECT_TIMEOUT_S = 2.0
_CLOSED = (trio_websocket.ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)

Message = bytes | str


@attrs.frozen(slots=True)
class Route:
    """Connections to ``listen_host:listen_port`` are relayed to ``target_host:target_port``.

    ``src`` names the node that dials this route and ``dst`` the target node: partitions are
    between names (by default the two addresses, so each route is its own pair)."""

    listen_host: str
    listen_port: int = attrs.field(validator=attrs.validators.in_(range(65536)))
    target_host: str
    target_port: int = attrs.field(validator=attrs.validators.in_(range(1, 65536)))
    src: str = ""
    dst: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.src:
            object.__setattr__(self, "src", f"{self.listen_host}:{self.listen_port}")
        if not self.dst:
            object.__setattr__(self, "dst", f"{self.target_host}:{self.target_port}")


def _endpoint(text: str) -> tuple[str, str, int]:
    name, _, address = text.rpartition("@")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{text!r}: want [NAME@]HOST:PORT")
    return name, host, int(port)


def parse_route(text: str) -> Route:
    """``[SRC@]LISTEN_HOST:PORT=[DST@]TARGET_HOST:PORT`` (IPv4 or host names).

    Raises:
        ValueError: not of that form, or a port out of range.
    """
    listen, sep, target = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r}: want LISTEN=TARGET")
    src, lhost, lport = _endpoint(listen)
    dst, thost, tport = _endpoint(target)
    return Route(lhost, lport, thost, tport, src, dst)


@attrs.frozen(slots=True, kw_only=True)
class RelayStatistics:
    """Counts since start (messages unless named otherwise)."""

    connections: int
    """Connections relayed (the target answered)."""
    refused: int
    """Connections rejected because the target could not be dialed."""
    forwarded: int
    """Messages sent on (a duplicated one counts twice)."""
    forwarded_bytes: int
    lost: int
    partitioned: int
    """Dropped by a partition, when they arrived or when they were due."""
    duplicated: int
    delayed: int
    """Messages given a delay above zero (and not dropped)."""
    stalled: int
    """Times a reader found its queue full and had to wait for room."""


@attrs.define(slots=True)
class _Counters:
    """The running counts behind :class:`RelayStatistics` (same fields)."""

    connections: int = 0
    refused: int = 0
    forwarded: int = 0
    forwarded_bytes: int = 0
    lost: int = 0
    partitioned: int = 0
    duplicated: int = 0
    delayed: int = 0
    stalled: int = 0

    def freeze(self) -> RelayStatistics:
        return RelayStatistics(**attrs.asdict(self))


class _LaneQueue:
    """Messages of one lane waiting for their due time: a heap bounded in count and bytes,
    with one reader putting and one writer getting."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._heap: list[tuple[float, int, Message]] = []
        self._bytes = 0
        self._seq = 0
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._changed = trio.Event()
        self.closed = False

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def is_full(self, size: int) -> bool:
        """Whether a message of ``size`` must wait for room."""
        if not self._heap:
            return False
        return len(self._heap) >= self._max_messages or self._bytes + size > self._max_bytes

    async def put(self, due: float, message: Message) -> None:
        """Queue ``message`` for ``due``, once there is room."""
        while self.is_full(len(message)):
            await self._changed.wait()
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, message))
        self._bytes += len(message)
        self._notify()

    def close(self) -> None:
        """No more puts; ``get`` returns None once the rest is delivered."""
        self.closed = True
        self._notify()

    async def get(self) -> Message | None:
        """The next message once it is due; None when closed and empty."""
        while True:
            if self._heap:
                due = self._heap[0][0]
                if trio.current_time() >= due:
                    _, _, message = heapq.heappop(self._heap)
                    self._bytes -= len(message)
                    self._notify()
                    return message
                with trio.move_on_at(due):  # or sooner, if an earlier one is queued
                    await self._changed.wait()
            elif self.closed:
                return None
            else:
                await self._changed.wait()


class FaultRelay:
    """A fault-injecting WebSocket relay (see the module docstring).

    Args:
        routes: what to listen on and where to relay it.
        config: the link's latency, jitter, loss, duplication and reordering (none: a
            perfect link).
        seed: the seed of the link model's random streams.
        queue_messages, queue_bytes: the bound of each lane's queue.
        max_message_size: the largest message relayed (a larger one closes that side, 1009).
    """

    def __init__(
        self,
        routes: Sequence[Route],
        config: LinkConfig | None = None,
        *,
        seed: int = 0,
        queue_messages: int = QUEUE_MESSAGES,
        queue_bytes: int = QUEUE_BYTES,
        max_message_size: int = MAX_FRAME_SIZE,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        if queue_messages < 1 or queue_bytes < 1:
            raise ValueError("queue bounds must be positive")
        self.routes = tuple(routes)
        self.model = LinkModel(config or LinkConfig(), seed)
        self.queue_messages = queue_messages
        self.queue_bytes = queue_bytes
        self.max_message_size = max_message_size
        self.connect_timeout_s = connect_timeout_s
        self.ports: list[int] = []
        self._counters = _Counters()
        self._opened = [0] * len(self.routes)

    # -- control ----------------------------------------------------------------------------

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Drop every message between nodes of different groups, both ways, from now on.

        Raises:
            ValueError: a name is in two groups.
        """
        groups = [sorted(g) for g in groups]
        self.model.partition(groups)
        event(log, logging.INFO, "relay partition", groups=groups)

    def block(self, src: str, dst: str) -> None:
        """Drop messages from ``src`` to ``dst`` (one way) from now on."""
        self.model.block(src, dst)
        event(log, logging.INFO, "relay block", src=src, dst=dst)

    def heal(self) -> None:
        """Deliver everything again (messages dropped meanwhile stay lost)."""
        self.model.heal()
        event(log, logging.INFO, "relay healed")

    def statistics(self) -> RelayStatistics:
        return self._counters.freeze()

    # -- the task ---------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on every route, report the bound ports (in route order), relay until
        cancelled.

        Raises:
            OSError: a listen address cannot be bound.
        """
        async with trio.open_nursery() as nursery:
            for index, route in enumerate(self.routes):

                async def handler(request: Any, index: int = index) -> None:
                    await self._relay(index, request)

                server = await nursery.start(
                    _serve, handler, route.listen_host, route.listen_port,
                    self.max_message_size, self.connect_timeout_s,
                )  # fmt: skip
                self.ports.append(server.port)
                event(log, logging.INFO, "relay route", listen=f"{route.listen_host}:{server.port}",
                      target=f"{route.target_host}:{route.target_port}", src=route.src,
                      dst=route.dst)  # fmt: skip
            task_status.started(list(self.ports))

    async def _relay(self, index: int, request: Any) -> None:
        route = self.routes[index]
        number = self._opened[index]
        self._opened[index] += 1
        entered = False
        try:
            async with trio_websocket.open_websocket(
                route.target_host, route.target_port, request.path, use_ssl=False,
                max_message_size=self.max_message_size, connect_timeout=self.connect_timeout_s,
                disconnect_timeout=DISCONNECT_TIMEOUT_S,
            ) as upstream:  # fmt: skip
                entered = True
                try:
                    downstream = await request.accept()
                except _CLOSED:
                    return
                self._counters.connections += 1
                event(log, logging.INFO, "relay connected", src=route.src, dst=route.dst,
                      number=number)  # fmt: skip
                try:
                    await self._forward(route, f"{index}/{number}", downstream, upstream)
                except* Exception as group:  # a bug: this connection ends, the relay goes on
                    log.error("relay connection failed", exc_info=group,
                              extra={"fields": {"src": route.src, "dst": route.dst}})  # fmt: skip
                finally:
                    event(log, logging.INFO, "relay closed", src=route.src, dst=route.dst,
                          number=number)  # fmt: skip
        except trio_websocket.HandshakeError as exc:
            if entered:
                return  # closing timed out: both sides are gone anyway
            self._counters.refused += 1
            event(log, logging.DEBUG, "relay target unreachable", src=route.src, dst=route.dst,
                  reason=str(exc.__cause__ or exc))  # fmt: skip
            with contextlib.suppress(*_CLOSED):
                await request.reject(502)

    async def _forward(self, route: Route, key: str, downstream: Any, upstream: Any) -> None:
        """Relay one connection until both sides are done (or one broke)."""
        out = self.model.open_lane(route.src, route.dst, f"{key}/out")
        back = self.model.open_lane(route.dst, route.src, f"{key}/back")
        queues = [_LaneQueue(self.queue_messages, self.queue_bytes) for _ in range(2)]
        try:
            async with trio.open_nursery() as nursery:
                for lane, queue, source, sink in (
                    (out, queues[0], downstream, upstream),
                    (back, queues[1], upstream, downstream),
                ):
                    nursery.start_soon(self._read, lane, queue, source)
                    nursery.start_soon(self._write, lane, queue, sink, nursery.cancel_scope)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_TIMEOUT_S):
                await downstream.aclose()
                await upstream.aclose()

    async def _read(self, lane: Lane, queue: _LaneQueue, source: Any) -> None:
        counters = self._counters
        try:
            while True:
                message = await source.get_message()
                fate = self.model.compute_fate(lane, trio.current_time())
                if fate.verdict is Verdict.LOSS:
                    counters.lost += 1
                    continue
                if fate.verdict is Verdict.PARTITION:
                    counters.partitioned += 1
                    continue
                if fate.verdict is Verdict.DUPLICATE:
                    counters.duplicated += 1
                if fate.delay_s > 0:
                    counters.delayed += 1
                for due in fate.due:
                    if queue.is_full(len(message)):
                        counters.stalled += 1  # counted now: the wait may never end
                    await queue.put(due, message)
        except _CLOSED:
            pass
        finally:
            queue.close()

    async def _write(
        self, lane: Lane, queue: _LaneQueue, sink: Any, scope: trio.CancelScope
    ) -> None:
        counters = self._counters
        while (message := await queue.get()) is not None:
            if self.model.is_blocked(lane.src, lane.dst):
                counters.partitioned += 1
                continue
            try:
                await sink.send_message(message)
            except _CLOSED:
                scope.cancel()  # this side is gone: end the connection at once
                return
            counters.forwarded += 1
            counters.forwarded_bytes += len(message)
        await sink.aclose()  # the other side closed and all it sent is delivered


async def _serve(
    handler: Any,
    host: str,
    port: int,
    max_message_size: int,
    connect_timeout_s: float,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    await trio_websocket.serve_websocket(
        handler, host, port, None, max_message_size=max_message_size,
        connect_timeout=connect_timeout_s, disconnect_timeout=DISCONNECT_TIMEOUT_S,
        task_status=task_status,
    )  # fmt: skip
