"""The transport seam: connections that carry whole binary frames, and two implementations.

* :class:`Connection`: send a frame, receive a frame, close. A frame is one message (the
  wire format needs no stream framing); a frame over the transport's size limit closes the
  connection (the receiver raises :class:`~moderntensor.network.ConnectionClosed`).
* :class:`Transport`: ``serve`` listens and runs a handler per inbound connection (each in
  its own task; the connection is closed when the handler returns), reporting the bound
  port through ``task_status``; ``connect`` dials, as an async context manager that closes
  the connection on exit.

:class:`WebSocketTransport` is the production one (trio-websocket, binary messages,
``max_message_size`` set to the largest frame type; the wire decoder then applies each type's
own cap). :class:`MemoryNetwork` gives in-process transports over bounded Trio memory
channels, for tests and the simulator: the same peer, gossip and request code runs over both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Protocol

import trio
import trio_websocket

from moderntensor.network._errors import ConnectionClosed, DialError
from moderntensor.network._messages import (
    MAX_FRAME_SIZE,
)

__all__ = [
    "Connection",
    "ConnectionHandler",
    "MemoryNetwork",
    "MemoryTransport",
    "Transport",
    "WebSocketTransport",
]

CONNECT_TIMEOUT_S = 5.0
DISCONNECT_TIMEOUT_S = 2.0


class Connection(Protocol):
    """One open connection; ``remote_host``/``remote_port`` are the other end's address."""

    @property
    def remote_host(self) -> str: ...

    @property
    def remote_port(self) -> int: ...

    async def send(self, frame: bytes) -> None:
        """Send one frame. Raises: ConnectionClosed."""

    async def receive(self) -> bytes:
        """The next frame. Raises: ConnectionClosed (also for a frame over the limit)."""

    async def aclose(self) -> None:
        """Close (idempotent; never raises)."""


ConnectionHandler = Callable[[Connection], Awaitable[None]]
"""Runs one inbound connection; it must not raise (a per-peer failure stays per-peer)."""


class Transport(Protocol):
    """Listens and dials."""

    async def serve(
        self,
        host: str,
        port: int,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host``:``port`` (0: any free port), report the bound port, and run
        ``handler`` for each inbound connection until cancelled.

        Raises:
            OSError: the address cannot be bound.
        """

    def connect(self, host: str, port: int) -> AbstractAsyncContextManager[Connection]:
        """Dial ``host``:``port``; the connection is closed when the context exits.

        Raises:
            DialError: on entering, when no connection could be made.
        """


# -- trio-websocket ------------------------------------------------------------------------


class _WebSocketConnection:
    def __init__(self, ws: Any) -> None:
        self._ws = ws
        remote = ws.remote
        self.remote_host: str = str(getattr(remote, "address", remote))
        self.remote_port: int = int(getattr(remote, "port", 0))

    async def send(self, frame: bytes) -> None:
        try:
            await self._ws.send_message(frame)
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError) as exc:
            raise ConnectionClosed(f"send: {_reason(exc)}") from None

    async def receive(self) -> bytes:
        try:
            message = await self._ws.get_message()
        except (trio_websocket.ConnectionClosed, trio.BrokenResourceError) as exc:
            raise ConnectionClosed(_reason(exc)) from None
        if not isinstance(message, bytes):
            await self.aclose()
            raise ConnectionClosed("a text message (the protocol is binary)")
        return message

    async def aclose(self) -> None:
        with trio.move_on_after(DISCONNECT_TIMEOUT_S):
            await self._ws.aclose()


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason is not None:
        return f"closed, code {reason.code} {reason.name} {reason.reason or ''}".strip()
    return str(exc) or type(exc).__name__


class WebSocketTransport:
    """WebSockets over TCP (no TLS: the handshake authenticates, nothing is secret)."""

    def __init__(
        self,
        *,
        max_message_size: int = MAX_FRAME_SIZE,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        disconnect_timeout_s: float = DISCONNECT_TIMEOUT_S,
    ) -> None:
        self.max_message_size = max_message_size
        self.connect_timeout_s = connect_timeout_s
        self.disconnect_timeout_s = disconnect_timeout_s

    async def serve(
        self,
        host: str,
        port: int,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async def on_request(request: Any) -> None:
            try:
                ws = await request.accept()
            except (trio_websocket.ConnectionClosed, trio.BrokenResourceError):
                return
            await handler(_WebSocketConnection(ws))

        serve = partial(
            trio_websocket.serve_websocket, on_request, host, port, None,
            max_message_size=self.max_message_size, connect_timeout=self.connect_timeout_s,
            disconnect_timeout=self.disconnect_timeout_s,
        )  # fmt: skip
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve)
            task_status.started(server.port)

    @asynccontextmanager
    async def connect(self, host: str, port: int) -> AsyncIterator[Connection]:
        entered = False
        try:
            async with trio_websocket.open_websocket(
                host, port, "/", use_ssl=False, max_message_size=self.max_message_size,
                connect_timeout=self.connect_timeout_s,
                disconnect_timeout=self.disconnect_timeout_s,
            ) as ws:  # fmt: skip
                entered = True
                yield _WebSocketConnection(ws)
        except trio_websocket.HandshakeError as exc:  # includes the timeouts and rejections
            if not entered:
                cause = exc.__cause__ or exc
                raise DialError(f"{host}:{port}: {type(cause).__name__}: {cause}") from None
            # closing timed out: the connection is gone either way


# -- memory channels -----------------------------------------------------------------------


class _MemoryConnection:
    def __init__(
        self,
        send: trio.MemorySendChannel[bytes],
        receive: trio.MemoryReceiveChannel[bytes],
        remote_host: str,
        remote_port: int,
        max_message_size: int,
    ) -> None:
        self._send = send
        self._receive = receive
        self.remote_host = remote_host
        self.remote_port = remote_port
        self.max_message_size = max_message_size

    async def send(self, frame: bytes) -> None:
        try:
            await self._send.send(bytes(frame))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionClosed("send: closed") from None

    async def receive(self) -> bytes:
        try:
            frame = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionClosed("closed") from None
        if len(frame) > self.max_message_size:  # as trio-websocket: close, code 1009
            await self.aclose()
            raise ConnectionClosed(f"message of {len(frame)} bytes > {self.max_message_size}")
        return frame

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()


class MemoryNetwork:
    """An in-process network: listeners by (host, port); each connection is two bounded
    memory channels of ``buffer`` frames (a full one makes the sender wait, as TCP does)."""

    def __init__(self, *, max_message_size: int = MAX_FRAME_SIZE, buffer: int = 16) -> None:
        self.max_message_size = max_message_size
        self.buffer = buffer
        self._listeners: dict[tuple[str, int], trio.MemorySendChannel[_MemoryConnection]] = {}
        self._next_port = 40_000

    def transport(self, host: str = "127.0.0.1") -> MemoryTransport:
        """A transport whose connections come from ``host``."""
        return MemoryTransport(self, host)

    def _port(self) -> int:
        self._next_port += 1
        return self._next_port


class MemoryTransport:
    """One node's side of a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, host: str) -> None:
        self.network = network
        self.host = host

    async def serve(
        self,
        host: str,
        port: int,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        port = port or self.network._port()
        key = (host, port)
        if key in self.network._listeners:
            raise OSError(f"{host}:{port}: address in use")
        send, inbound = trio.open_memory_channel[_MemoryConnection](self.network.buffer)
        self.network._listeners[key] = send
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(port)
                async for conn in inbound:
                    nursery.start_soon(self._handle, handler, conn)
        finally:
            del self.network._listeners[key]
            send.close()

    @staticmethod
    async def _handle(handler: ConnectionHandler, conn: Connection) -> None:
        try:
            await handler(conn)
        finally:
            await conn.aclose()

    @asynccontextmanager
    async def connect(self, host: str, port: int) -> AsyncIterator[Connection]:
        net = self.network
        listener = net._listeners.get((host, port))
        if listener is None:
            raise DialError(f"{host}:{port}: connection refused")
        out_send, out_receive = trio.open_memory_channel[bytes](net.buffer)
        in_send, in_receive = trio.open_memory_channel[bytes](net.buffer)
        size = net.max_message_size
        ours = _MemoryConnection(out_send, in_receive, host, port, size)
        theirs = _MemoryConnection(in_send, out_receive, self.host, net._port(), size)
        try:
            await listener.send(theirs)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise DialError(f"{host}:{port}: connection refused") from None
        try:
            yield ours
        finally:
            await ours.aclose()
