"""Socket I/O for the HTTP loop, and telling a vanished client from a real failure."""

from __future__ import annotations

import os

import trio

__all__ = [
    "RECEIVE_CHUNK",
    "REQUEST_TIMEOUT",
    "Closed",
    "SocketIo",
    "StreamIo",
    "is_disconnect",
    "write_timeout",
]

REQUEST_TIMEOUT = 30.0
WRITE_BYTES_PER_S = 16384
"""The slowest reading speed a response is given time for (beyond REQUEST_TIMEOUT)."""
RECEIVE_CHUNK = 65536


class Closed(Exception):
    """The peer went away or timed out: drop the connection quietly."""


DISCONNECTS = (Closed, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` (or every error of a group, e.g. a WebSocket session's nursery) only
    says that the peer went away."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_disconnect(sub) for sub in exc.exceptions)
    return isinstance(exc, DISCONNECTS)


def write_timeout(size: int) -> float:
    """Seconds a response of ``size`` bytes gets to be read (see the module docstring)."""
    return REQUEST_TIMEOUT + size / WRITE_BYTES_PER_S


class SocketIo:
    """The socket directly: a readiness wait then one ``read`` (the Stream API first tries a
    read, which after each keep-alive response fails), and ``write`` without a checkpoint
    (the reads provide them)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.fd = sock.fileno()  # valid until HttpHandler.__call__ closes the stream

    async def receive(self) -> bytes:
        while True:
            await trio.lowlevel.wait_readable(self.fd)
            try:
                return os.read(self.fd, RECEIVE_CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise Closed from exc

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.fd)
            except OSError as exc:
                raise Closed from exc


class StreamIo:
    """Any other Trio stream (tests, TLS wrappers)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def receive(self) -> bytes:
        return bytes(await self.stream.receive_some(RECEIVE_CHUNK))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)
