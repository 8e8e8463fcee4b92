"""Both transports behave alike: whole frames both ways, a frame over the limit closes the
connection, closing is seen by the other side, a refused dial is a DialError."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio_websocket

from moderntensor.network import (
    Connection,
    ConnectionClosed,
    DialError,
    MemoryNetwork,
    Transport,
    WebSocketTransport,
)

LIMIT = 4096


@asynccontextmanager
async def echo_server(transport: Transport) -> AsyncIterator[int]:
    """Serve on 127.0.0.1 (any port): echo every frame back until the peer closes."""

    async def echo(conn: Connection) -> None:
        try:
            while True:
                await conn.send(await conn.receive())
        except ConnectionClosed:
            return

    async with trio.open_nursery() as nursery:
        port = await nursery.start(transport.serve, "127.0.0.1", 0, echo)
        yield port
        nursery.cancel_scope.cancel()


def transports() -> list[Transport]:
    return [MemoryNetwork(max_message_size=LIMIT).transport(), WebSocketTransport(
        max_message_size=LIMIT, connect_timeout_s=5, disconnect_timeout_s=1)]  # fmt: skip


@pytest.mark.parametrize("kind", ["memory", "websocket"])
async def test_frames_round_trip_and_the_limit_closes(kind: str) -> None:
    transport = transports()[kind == "websocket"]
    with trio.fail_after(20):
        async with echo_server(transport) as port:
            async with transport.connect("127.0.0.1", port) as conn:
                for frame in (b"\x00", b"hello" * 100, bytes(range(256)) * 16):
                    await conn.send(frame)
                    assert await conn.receive() == frame
                assert conn.remote_port == port
            async with transport.connect("127.0.0.1", port) as conn:
                with pytest.raises(ConnectionClosed):
                    await conn.send(b"\x01" * (LIMIT + 1))  # the server closes on it
                    await conn.receive()
                with pytest.raises(ConnectionClosed):
                    await conn.receive()


@pytest.mark.parametrize("kind", ["memory", "websocket"])
async def test_a_closed_connection_is_seen_by_the_other_side(kind: str) -> None:
    transport = transports()[kind == "websocket"]
    seen = trio.Event()

    async def handler(conn: Connection) -> None:
        with pytest.raises(ConnectionClosed):
            await conn.receive()
        seen.set()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(transport.serve, "127.0.0.1", 0, handler)
            async with transport.connect("127.0.0.1", port) as conn:
                await conn.aclose()
                await conn.aclose()  # idempotent
                with pytest.raises(ConnectionClosed):
                    await conn.send(b"after close")
            await seen.wait()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["memory", "websocket"])
async def test_dialing_nobody_is_a_dial_error(kind: str) -> None:
    transport = transports()[kind == "websocket"]
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(20), pytest.raises(DialError, match=r"127\.0\.0\.1"):
        async with transport.connect("127.0.0.1", port):
            pass


async def test_a_text_message_closes_a_websocket_connection() -> None:
    received: list[bytes] = []

    async def handler(conn: Connection) -> None:
        with pytest.raises(ConnectionClosed, match="text"):
            received.append(await conn.receive())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(WebSocketTransport().serve, "127.0.0.1", 0, handler)
            async with trio_websocket.open_websocket("127.0.0.1", port, "/", use_ssl=False) as ws:
                await ws.send_message("not binary")
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await ws.get_message()
            nursery.cancel_scope.cancel()
    assert received == []
