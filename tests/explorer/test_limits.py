"""What one client can hold on the explorer's port: connections per address (HTTP and
WebSocket), idle and silent connections, message sizes on the WebSocket.

A dev node with small limits so each is reached with a handful of real connections.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from moderntensor.explorer import ExplorerConfig
from tests.explorer.harness import ExplorerNode, request

LIMITS = ExplorerConfig(
    port=0,
    max_body_bytes=4096,
    max_connections=16,
    max_http_connections_per_ip=3,
    max_ws_connections_per_ip=2,
    first_request_timeout_s=0.5,
    idle_timeout_s=1.0,
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExplorerNode]:
    with ExplorerNode(tmp_path_factory.mktemp("explorer-limits"), LIMITS) as dev:
        yield dev


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (reads until EOF or the end)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def test_a_silent_connection_is_closed(node: ExplorerNode) -> None:
    with _connect(node.explorer_port) as sock:
        assert _closed_within(sock, 5.0)  # first_request_timeout_s = 0.5


def test_an_idle_keep_alive_connection_is_closed(node: ExplorerNode) -> None:
    with _connect(node.explorer_port) as sock:
        sock.sendall(b"GET /api/index HTTP/1.1\r\nhost: x\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert _closed_within(sock, 5.0)  # idle_timeout_s = 1


def test_http_connections_per_address_are_capped(node: ExplorerNode) -> None:
    """Three idle connections from 127.0.0.1 fill its share; a fourth is refused with the
    reason (idle ones are evicted only when the server-wide total is reached)."""
    held = [_connect(node.explorer_port) for _ in range(3)]
    try:
        time.sleep(0.1)  # accepted and counted
        with _connect(node.explorer_port) as extra:
            extra.settimeout(10)
            answer = extra.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"explorer.max_http_connections_per_ip = 3" in answer
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert request(node.explorer_port, "GET", "/api/index")[0] == 200  # room again


async def test_websockets_per_address_are_capped(node: ExplorerNode) -> None:
    url = f"ws://127.0.0.1:{node.explorer_port}/ws"
    async with open_websocket_url(url) as first, open_websocket_url(url) as second:
        for ws in (first, second):
            await ws.send_message('{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}')
            with trio.fail_after(10):
                assert "result" in orjson.loads(await ws.get_message())
        with pytest.raises(ConnectionRejected) as refused:
            with trio.fail_after(10):
                async with open_websocket_url(url):
                    pass
        assert refused.value.status_code == 429
        assert b"explorer.max_ws_connections_per_ip = 2" in (refused.value.body or b"")


async def test_a_websocket_message_over_the_limit_closes_it(node: ExplorerNode) -> None:
    url = f"ws://127.0.0.1:{node.explorer_port}/ws"
    async with open_websocket_url(url) as ws:
        big: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber",
                               "params": ["x" * 10_000]}  # fmt: skip
        await ws.send_message(orjson.dumps(big).decode())
        with pytest.raises(ConnectionClosed) as closed:
            with trio.fail_after(10):
                await ws.get_message()
        assert closed.value.reason is not None and closed.value.reason.code == 1009


def test_a_body_over_the_limit_is_413_before_it_is_read(node: ExplorerNode) -> None:
    body = b"[" + b"0," * 5000 + b"0]"
    status, _, answer = request(
        node.explorer_port, "POST", "/rpc", body, {"content-type": "application/json"}
    )
    assert status == 413 and b"limit 4096 bytes" in answer


def test_a_chunked_body_is_cut_off_at_the_limit(node: ExplorerNode) -> None:
    with _connect(node.explorer_port) as sock:
        sock.sendall(
            b"POST /rpc HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        chunk = b"0" * 1000
        for _ in range(5):  # 5,000 bytes in 1,000-byte chunks, over the 4,096 limit
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413") and b"limit 4096 bytes" in answer


def test_pipelined_requests_are_answered_in_order(node: ExplorerNode) -> None:
    calls = [
        orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "eth_chainId"}) for i in range(1, 4)
    ]
    wire = b"".join(
        b"POST /rpc HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(c), c)
        for c in calls
    )
    with _connect(node.explorer_port) as sock:
        sock.sendall(wire)
        sock.settimeout(10)
        data = b""
        while data.count(b'"result"') < 3:
            part = sock.recv(65536)
            assert part, data
            data += part
    ids = [int(x.split(b",")[0]) for x in data.split(b'"id":')[1:]]
    assert ids == [1, 2, 3]


def test_malformed_and_oversized_heads_are_refused(node: ExplorerNode) -> None:
    with _connect(node.explorer_port) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    with _connect(node.explorer_port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nx-junk: " + b"a" * 20_000 + b"\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 431")
