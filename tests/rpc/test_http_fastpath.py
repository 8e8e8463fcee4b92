"""The hand-written HTTP/1.1 fast path (moderntensor/rpc/_http1.py) and its h11 fallback.

The parser alone: split reads agree with whole reads, anything outside the common shape is
FALLBACK, and whatever it accepts h11 parses the same way. Over real sockets against the dev
node: pipelining, byte-at-a-time requests, malformed heads (400), Expect and chunked bodies
(h11, then back to the fast path on the same connection), oversize bodies (413), close.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import h11
import orjson
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from moderntensor.rpc._config import RpcConfig
from moderntensor.rpc._dispatch import Dispatcher
from moderntensor.rpc._http import HttpHandler
from moderntensor.rpc._http1 import (
    FALLBACK,
    MAX_HEAD_BYTES,
    FastRequest,
    blank_line_search_start,
    parse_request,
)
from moderntensor.rpc._methods import Method
from moderntensor.rpc._work import ReadWorker
from tests.rpc.devnode import DevNode

LIMIT = 5_000_000
CHAIN_ID = b'{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}'
CHAIN_ID_ANSWER = {"jsonrpc": "2.0", "id": 7, "result": "0x539"}


def post(body: bytes = CHAIN_ID, *headers: bytes, host: bool = True) -> bytes:
    lines = [b"POST / HTTP/1.1"]
    if host:
        lines.append(b"Host: 127.0.0.1")
    lines += [b"Content-Type: application/json", b"Content-Length: %d" % len(body), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def parse_incrementally(data: bytes) -> FastRequest | object | None:
    """Feed ``data`` one byte at a time, as the server's loop does."""
    buf = bytearray()
    searched = 0
    result: FastRequest | object | None = None
    for byte in data:
        buf.append(byte)
        result = parse_request(buf, LIMIT, searched)
        if result is None:
            searched = blank_line_search_start(len(buf))
        elif result is FALLBACK:
            return result
    return result


# -- the parser -------------------------------------------------------------------------


def test_common_request() -> None:
    data = post(CHAIN_ID, b"Origin: http://localhost:3000", b"Connection: keep-alive")
    parsed = parse_request(data, LIMIT)
    assert isinstance(parsed, FastRequest)
    assert parsed.body_end == len(data)
    assert data[parsed.head_end : parsed.body_end] == CHAIN_ID
    assert (parsed.target, parsed.origin, parsed.close) == (b"/", b"http://localhost:3000", False)
    closing = parse_request(post(CHAIN_ID, b"connection: Keep-Alive, Close"), LIMIT)
    assert isinstance(closing, FastRequest) and closing.close


def test_incomplete_head_and_body() -> None:
    data = post()
    for end in range(len(data) - len(CHAIN_ID)):
        assert parse_request(data[:end], LIMIT) is None, end
    partial = parse_request(data[:-1], LIMIT)
    assert isinstance(partial, FastRequest) and partial.body_end == len(data)


@pytest.mark.parametrize(
    "data",
    [
        post().replace(b"POST", b"GET", 1),
        post().replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        post().replace(b"POST / ", b"POST  / ", 1),
        post().replace(b"POST / ", b"POST /\x7f ", 1),
        post(CHAIN_ID, b"Transfer-Encoding: chunked"),
        post(CHAIN_ID, b"Expect: 100-continue"),
        post(CHAIN_ID, b"Upgrade: websocket", b"Connection: Upgrade"),
        post(CHAIN_ID, b"Connection: keep-alive, Upgrade"),
        post(CHAIN_ID, host=False),
        post(CHAIN_ID, b"Host: other"),
        post(CHAIN_ID, b"Content-Length: %d" % len(CHAIN_ID)),
        post(CHAIN_ID).replace(b"Content-Length: ", b"Content-Length: +", 1),
        post(CHAIN_ID).replace(b"Content-Length: ", b"Content-Length: 0x", 1),
        post(CHAIN_ID, b"Bad Name: x"),
        post(CHAIN_ID, b"X-Folded: a\r\n b"),
        post(CHAIN_ID, b"X-Nul: a\x00b"),
        post(CHAIN_ID, b": empty name"),
        post(CHAIN_ID).replace(b"\r\n", b"\n"),
        post(CHAIN_ID).replace(b"Host: 127.0.0.1\r\n", b"Host: 127.0.0.1\n", 1),
        b"\r\n" + post(),
        b" POST / HTTP/1.1\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * MAX_HEAD_BYTES,
        post(b"x" * 10, b"X-Pad: " + b"a" * MAX_HEAD_BYTES),
    ],
)
def test_not_the_common_shape_falls_back(data: bytes) -> None:
    assert parse_request(data, LIMIT) is FALLBACK
    assert parse_incrementally(data) is FALLBACK


def test_body_over_the_limit_falls_back() -> None:
    assert parse_request(post(b"x" * 100), 99) is FALLBACK
    assert isinstance(parse_request(post(b"x" * 100), 100), FastRequest)


def test_pipelined_requests_parse_one_after_another() -> None:
    stream = post() + post(b"[]", b"Connection: close") + b"POST / HT"
    first = parse_request(stream, LIMIT)
    assert isinstance(first, FastRequest) and not first.close
    rest = stream[first.body_end :]
    second = parse_request(rest, LIMIT)
    assert isinstance(second, FastRequest) and second.close
    assert rest[second.head_end : second.body_end] == b"[]"
    assert parse_request(rest[second.body_end :], LIMIT) is None


header_lines = st.sampled_from(
    [
        b"Content-Type: application/json",
        b"Origin: *",
        b"origin:\thttp://a.b  ",
        b"Connection: close",
        b"Connection: keep-alive",
        b"Connection: upgrade",
        b"Accept-Encoding: identity",
        b"User-Agent: x/1 (y)",
        b"X-Empty:",
        b"X-Obs: \xff\xfe",
        b"Content-Length: 0",
        b"Content-Length: 3",
        b"Content-Length: 03",
        b"content-length: 3, 3",
        b"Transfer-Encoding: chunked",
        b"Expect: 100-continue",
        b"Host: h",
        b" folded",
        b"Bad\x01: x",
        b"X: a\rb",
        b"",
    ]
)
heads = st.builds(
    lambda line, headers: b"\r\n".join([line, *headers]) + b"\r\n\r\n",
    st.sampled_from(
        [b"POST / HTTP/1.1", b"POST /x?y=1 HTTP/1.1", b"GET / HTTP/1.1", b"POST / HTTP/1.0"]
    ),
    st.lists(header_lines, max_size=6),
)


def _h11_parse(data: bytes) -> tuple[h11.Request, bytes, bool] | None:
    """h11's reading of one request: the request, its body, whether h11 would close after."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    conn.receive_data(data)
    try:
        request = conn.next_event()
        if not isinstance(request, h11.Request):
            return None
        body = b""
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return None
    except h11.RemoteProtocolError:
        return None
    conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
    conn.send(h11.EndOfMessage())
    return request, body, conn.our_state is h11.MUST_CLOSE


@settings(max_examples=400, deadline=None)
@given(head=heads, body=st.binary(max_size=5), cut=st.integers(0, 200))
def test_what_the_fast_path_accepts_h11_parses_the_same(head: bytes, body: bytes, cut: int) -> None:
    data = head + body
    whole = parse_request(data, LIMIT)
    assert parse_incrementally(data) == whole  # split reads agree with one read
    prefix = parse_request(data[:cut], LIMIT)
    assert prefix is None or prefix == whole
    if not isinstance(whole, FastRequest):
        return
    data += b"\0" * max(0, whole.body_end - len(data))
    parsed = _h11_parse(data)
    assert parsed is not None, data
    request, h11_body, h11_closes = parsed
    assert request.method == b"POST" and request.http_version == b"1.1"
    assert request.target == whole.target
    assert h11_body == data[whole.head_end : whole.body_end]
    assert whole.close == h11_closes


# -- over sockets against the node ------------------------------------------------------


class Conn:
    """A raw socket that reads whole responses (status, headers, body) one at a time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("closed before a response")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.split(b"\r\n")
        status = int(status_line.split(b" ")[1])
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        while len(self.buf) < length:
            if not self._fill():
                raise ConnectionError("closed in a body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed(self) -> bool:
        try:
            return not self._fill() and not self.buf
        except ConnectionResetError:
            return True


@pytest.fixture
def conn(node: DevNode) -> Iterator[Conn]:
    c = Conn(node.port)
    yield c
    c.close()


def test_pipelined(conn: Conn) -> None:
    notification = b'{"jsonrpc":"2.0","method":"eth_chainId"}'
    conn.sock.sendall(post() + post(notification) + post(b"[" + CHAIN_ID + b"]") + post(b"{"))
    assert orjson.loads(conn.response()[2]) == CHAIN_ID_ANSWER
    assert conn.response()[:1] == (204,)
    assert orjson.loads(conn.response()[2]) == [CHAIN_ID_ANSWER]
    status, headers, body = conn.response()
    assert status == 200 and headers[b"content-type"] == b"application/json"
    assert orjson.loads(body)["error"]["code"] == -32700


def test_byte_at_a_time_agrees_with_whole(node: DevNode, conn: Conn) -> None:
    request = post(CHAIN_ID, b"Origin: http://x")
    conn.sock.sendall(request)
    whole = conn.response()
    for i in range(len(request)):
        conn.sock.sendall(request[i : i + 1])
        if i % 40 == 0:
            time.sleep(0.001)  # really separate reads on the server side
    assert conn.response() == whole
    assert whole[0] == 200 and whole[1][b"access-control-allow-origin"] == b"*"


@pytest.mark.parametrize(
    "data",
    [
        b"POST / HTTP/1.1 extra\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"POST /\x01 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    ],
)
def test_malformed_heads_get_400(conn: Conn, data: bytes) -> None:
    conn.sock.sendall(data)
    status, headers, body = conn.response()
    assert status == 400 and headers[b"connection"] == b"close"
    assert orjson.loads(body)["error"]["code"] == -32600
    assert conn.closed()


def test_oversize_head_gets_431(conn: Conn) -> None:
    conn.sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (MAX_HEAD_BYTES + 10))
    assert conn.response()[0] == 431


def test_oversize_body_gets_413(node: DevNode, conn: Conn) -> None:
    size = node.rpc_config.max_body_bytes + 1
    conn.sock.sendall(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (size, b" " * 1000)
    )
    status, headers, body = conn.response()
    assert status == 413 and headers[b"connection"] == b"close"
    assert orjson.loads(body)["error"]["code"] == -32600


def test_fallbacks_then_back_to_the_fast_path(conn: Conn) -> None:
    # Expect: 100-continue goes through h11: 100 first, then the answer
    conn.sock.sendall(post(CHAIN_ID, b"Expect: 100-continue")[: -len(CHAIN_ID)])
    assert conn.response()[0] == 100
    conn.sock.sendall(CHAIN_ID)
    assert orjson.loads(conn.response()[2]) == CHAIN_ID_ANSWER
    # a chunked body with a fast request pipelined right behind it, in one packet
    chunked = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(CHAIN_ID), CHAIN_ID)
    )
    conn.sock.sendall(chunked + post())
    assert orjson.loads(conn.response()[2]) == CHAIN_ID_ANSWER
    assert orjson.loads(conn.response()[2]) == CHAIN_ID_ANSWER
    # GET /health and HTTP/1.0 keep-alive-less requests through h11, the fast one after
    conn.sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + post())
    assert conn.response()[0] == 200
    assert orjson.loads(conn.response()[2]) == CHAIN_ID_ANSWER
    conn.sock.sendall(post().replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    assert orjson.loads(conn.response()[2]) == CHAIN_ID_ANSWER and conn.closed()


def test_connection_close(conn: Conn) -> None:
    conn.sock.sendall(post(CHAIN_ID, b"Connection: close") + post())
    status, headers, body = conn.response()
    assert status == 200 and headers[b"connection"] == b"close"
    assert orjson.loads(body) == CHAIN_ID_ANSWER
    assert conn.closed()  # the pipelined request after "close" is not answered


def test_peer_half_close_after_a_request(node: DevNode, conn: Conn) -> None:
    conn.sock.sendall(post() + post()[:20])
    conn.sock.shutdown(socket.SHUT_WR)
    assert orjson.loads(conn.response()[2]) == CHAIN_ID_ANSWER
    # the truncated second request: h11 reports it (400) or the server just closes
    try:
        status = conn.response()[0]
    except ConnectionError:
        return
    assert status == 400


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(1, 400), max_size=6), chunked=st.booleans())
def test_any_split_of_a_pipeline_gets_the_same_answers(
    node: DevNode, cuts: list[int], chunked: bool
) -> None:
    second = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"%x\r\n%s\r\n0\r\n\r\n" % (len(CHAIN_ID), CHAIN_ID)
        if chunked
        else post(CHAIN_ID, b"Origin: http://x")
    )
    stream = post() + second + post(b"[" + CHAIN_ID + b"," + CHAIN_ID + b"]")
    conn = Conn(node.port)
    try:
        start = 0
        for cut in sorted(cuts):
            conn.sock.sendall(stream[start:cut])
            start = max(start, cut)
            time.sleep(0.0005)
        conn.sock.sendall(stream[start:])
        answers = [orjson.loads(conn.response()[2]) for _ in range(3)]
    finally:
        conn.close()
    assert answers == [CHAIN_ID_ANSWER, CHAIN_ID_ANSWER, [CHAIN_ID_ANSWER, CHAIN_ID_ANSWER]]


# -- in process, over memory streams (the generic Stream path), with Trio's mock clock -----


def _handler(cors: tuple[str, ...]) -> HttpHandler:
    dispatcher = Dispatcher({"eth_chainId": Method(lambda: "0x539")}, max_batch=10)
    return HttpHandler(
        RpcConfig(port=0, cors_origins=cors, max_body_bytes=1000),  # type: ignore[arg-type]
        dispatcher,
        lambda: (200, {}),
        lambda: (b"", "text/plain"),
        None,
    )


async def _exchange(handler: HttpHandler, data: bytes, wait: float = 0) -> bytes:
    """Send ``data``, let the handler work (``wait`` seconds of mock time), return all it
    wrote until it closed or went quiet."""
    client, server = trio.testing.memory_stream_pair()
    out = b""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handler, server)
        await client.send_all(data)
        with trio.move_on_after(wait + 1):
            while chunk := await client.receive_some():
                out += chunk
        nursery.cancel_scope.cancel()
    return out


def test_cors_list_echoes_listed_origins() -> None:
    async def main() -> None:
        handler = _handler(("http://a",))
        listed = await _exchange(handler, post(CHAIN_ID, b"Origin: http://a"))
        assert b"\r\naccess-control-allow-origin: http://a\r\nvary: Origin\r\n" in listed
        assert listed.endswith(orjson.dumps(CHAIN_ID_ANSWER))
        other = await _exchange(handler, post(CHAIN_ID, b"Origin: http://b"))
        assert b"access-control" not in other and other.startswith(b"HTTP/1.1 200 ")
        none = await _exchange(_handler(()), post(CHAIN_ID, b"Origin: http://a"))
        assert b"access-control" not in none

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_stalled_request_is_dropped_idle_one_kept() -> None:
    async def main() -> None:
        handler = _handler(("*",))
        # a started request must complete within 30 s: a stalled head gets the door
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handler, server)
            await client.send_all(post()[:10])
            start = trio.current_time()
            assert await client.receive_some() == b""  # closed, no answer
            assert 30 <= trio.current_time() - start < 31
            # an idle keep-alive connection lasts at least 120 s, then is closed
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(handler, server)
            await client.send_all(post())
            assert (await client.receive_some()).startswith(b"HTTP/1.1 200 ")
            await trio.sleep(100)
            await client.send_all(post())
            assert (await client.receive_some()).startswith(b"HTTP/1.1 200 ")
            start = trio.current_time()
            assert await client.receive_some() == b""
            assert 120 <= trio.current_time() - start <= 180

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_body_limit_and_batch_limit_in_process() -> None:
    async def main() -> None:
        handler = _handler(("*",))
        too_big = await _exchange(handler, post(b" " * 1001))
        assert too_big.startswith(b"HTTP/1.1 413 ") and b"connection: close" in too_big
        batch = b"[" + b",".join([CHAIN_ID] * 11) + b"]"
        assert b'"code":-32600' in await _exchange(handler, post(batch))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_request_waiting_for_the_worker_is_answered_though_its_timer_ran_out() -> None:
    """The mock clock jumps past the first-request and idle deadlines while the heavy call
    runs in its worker thread: the answer still goes out whole (review M1: it used to be cut
    off, or never sent, by a timer that kept running while the answer was computed)."""

    def slow_logs() -> list[str]:
        time.sleep(0.05)  # real time in the worker; the mock clock jumps meanwhile
        return ["done"]

    async def main() -> None:
        dispatcher = Dispatcher(
            {"eth_getLogs": Method(slow_logs), "eth_chainId": Method(lambda: "0x539")},
            max_batch=10,
            worker=ReadWorker(1),
        )
        handler = HttpHandler(
            RpcConfig(port=0, first_request_timeout_s=1, idle_timeout_s=2),
            dispatcher, lambda: (200, {}), lambda: (b"", "text/plain"), None,
        )  # fmt: skip
        logs = b'{"jsonrpc":"2.0","id":7,"method":"eth_getLogs"}'
        client, server = trio.testing.memory_stream_pair()

        async def clock_ticks() -> None:  # a deadline for the mock clock to jump to
            while True:
                await trio.sleep(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(clock_ticks)
            nursery.start_soon(handler, server)
            for body in (logs, b"[" + logs + b"," + CHAIN_ID + b"]", logs):
                start = trio.current_time()
                await client.send_all(post(body))
                head = await client.receive_some()
                assert head.startswith(b"HTTP/1.1 200 "), head
                assert b'"result":["done"]' in head
                assert trio.current_time() - start > 2, "the timers did run out meanwhile"
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
