"""Connection and protocol limits against a real dev node (real sockets on 127.0.0.0/8).

Linux routes all of 127/8 to the loopback interface, so binding the client socket to
127.0.0.2, 127.0.0.3 ... gives the server distinct source addresses: the per-address caps are
tested with an attacker on one address and honest clients on others. Every wait is bounded.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from moderntensor.rpc import RpcConfig
from moderntensor.rpc._limits import ConnectionLimits, ConnectionRefused
from moderntensor.rpc._ws import FRAGMENT_OVERHEAD, MAX_FRAGMENTS
from tests.rpc.devnode import DevNode

PER_IP = 4
TOTAL = 8
WS_PER_IP = 2
FIRST_REQUEST_S = 2.0
MAX_MESSAGE = 400_000  # over MAX_FRAGMENTS * FRAGMENT_OVERHEAD: both limits show
RESPONSE_CAP = 100_000
CONFIG = RpcConfig(
    port=0,
    max_body_bytes=MAX_MESSAGE,
    max_connections=TOTAL,
    max_http_connections_per_ip=PER_IP,
    max_ws_connections_per_ip=WS_PER_IP,
    first_request_timeout_s=FIRST_REQUEST_S,
    batch_response_max_bytes=RESPONSE_CAP,
)
BLOCK_NUMBER = b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}'


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNode]:
    with DevNode(tmp_path_factory.mktemp("rpc-limits"), rpc_config=CONFIG) as dev:
        yield dev


def connect(port: int, source: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def post(body: bytes, extra_headers: bytes = b"") -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        + extra_headers
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


def read_response(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """One HTTP response with a Content-Length: status, head, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return int(head.split(b" ")[1]), head, body


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (reads are dropped)."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def served(port: int, source: str) -> bool:
    with connect(port, source) as sock:
        sock.sendall(post(BLOCK_NUMBER))
        status, _, body = read_response(sock)
        return status == 200 and orjson.loads(body)["result"].startswith("0x")


# -- connection caps --------------------------------------------------------------------------


def test_one_address_at_its_cap_never_denies_others(limited: DevNode) -> None:
    port = limited.port
    attacker = []
    try:
        for _ in range(PER_IP):  # keep-alive connections, each served once, then idle
            sock = connect(port, "127.0.0.2")
            sock.sendall(post(BLOCK_NUMBER))
            assert read_response(sock)[0] == 200
            attacker.append(sock)
        with connect(port, "127.0.0.2") as extra:  # one more from the same address
            status, _, body = read_response(extra)
            assert status == 503
            assert "rpc.max_http_connections_per_ip = 4" in orjson.loads(body)["error"]["message"]
            assert closed_by_server(extra, 5)
        assert served(port, "127.0.0.3"), "another address is still served"
        # a second address fills the server: the total is reached by two addresses at
        # their caps; a third address still gets in, by evicting the longest-idle one
        for _ in range(PER_IP):
            sock = connect(port, "127.0.0.4")
            sock.sendall(post(BLOCK_NUMBER))
            assert read_response(sock)[0] == 200
            attacker.append(sock)
        assert served(port, "127.0.0.5")
        assert closed_by_server(attacker[0], 5), "the longest-idle connection made room"
        for sock in attacker[1:]:
            sock.sendall(post(BLOCK_NUMBER))  # the others are still served
            assert read_response(sock)[0] == 200
    finally:
        for sock in attacker:
            sock.close()


def test_a_connection_that_sends_nothing_is_cut_early(limited: DevNode) -> None:
    with connect(limited.port, "127.0.0.6") as silent:
        started = time.monotonic()
        assert closed_by_server(silent, FIRST_REQUEST_S + 5)
        waited = time.monotonic() - started
    assert FIRST_REQUEST_S - 0.5 <= waited <= FIRST_REQUEST_S + 3, waited
    with connect(limited.port, "127.0.0.6") as client:  # served ones are kept alive longer
        client.sendall(post(BLOCK_NUMBER))
        assert read_response(client)[0] == 200
        assert not closed_by_server(client, FIRST_REQUEST_S + 1)
        client.sendall(post(BLOCK_NUMBER))
        assert read_response(client)[0] == 200


# -- HTTP framing, sizes and ids ----------------------------------------------------------------


def test_content_length_with_transfer_encoding_is_refused_and_closed(limited: DevNode) -> None:
    smuggled = post(BLOCK_NUMBER)
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    )
    with connect(limited.port, "127.0.0.7") as sock:
        sock.sendall(request)
        status, head, body = read_response(sock)
        assert status == 400 and b"connection: close" in head.lower()
        assert "Transfer-Encoding" in orjson.loads(body)["error"]["message"]
        assert closed_by_server(sock, 5), "the pipelined request behind it is not served"


def test_batch_response_cap_answers_the_rest_with_a_named_limit(limited: DevNode) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber", "params": ["0x0", True]}
        for i in range(400)
    ]
    with connect(limited.port, "127.0.0.8") as sock:
        sock.sendall(post(orjson.dumps(batch)))
        status, _, body = read_response(sock)
    answers = orjson.loads(body)
    assert status == 200 and [a["id"] for a in answers] == list(range(400))
    served_ = [a for a in answers if "result" in a]
    refused = [a for a in answers if "error" in a]
    assert served_ and refused and answers[: len(served_)] == served_, "a prefix is served"
    assert {a["error"]["code"] for a in refused} == {-32005}
    assert "rpc.batch_response_max_bytes" in refused[0]["error"]["message"]
    assert sum(len(orjson.dumps(a)) + 1 for a in served_) <= RESPONSE_CAP
    assert len(body) <= RESPONSE_CAP + 200 * len(refused)


@pytest.mark.parametrize(
    "raw_id",
    [
        b"18446744073709551616",  # 2**64: orjson reads it as a float
        b"1" + b"0" * 100,
        b"-1180591620717411303424",
        b"1.50",
        b"1e3",
        b'"' + b"x" * 40_000 + b'"',
        b"18446744073709551615",
    ],
)
def test_json_ids_of_any_size_are_echoed_exactly(limited: DevNode, raw_id: bytes) -> None:
    single = b'{"jsonrpc":"2.0","id":%s,"method":"eth_chainId"}' % raw_id
    batch = b"[%s,%s]" % (single, single.replace(b"eth_chainId", b"eth_noSuchMethod"))
    with connect(limited.port, "127.0.0.9") as sock:
        sock.sendall(post(single))
        _, _, body = read_response(sock)
        assert body == b'{"jsonrpc":"2.0","id":%s,"result":"0x539"}' % raw_id
        sock.sendall(post(batch))
        _, _, body = read_response(sock)
        assert body.startswith(b'[{"jsonrpc":"2.0","id":%s,"result":"0x539"}' % raw_id)
        assert body.count(b'"id":%s,' % raw_id) == 2


# -- WebSocket --------------------------------------------------------------------------------


class RawWebSocket:
    """A wsproto client over a plain socket, so tests can send frames no library would."""

    def __init__(self, port: int, source: str) -> None:
        self.sock = connect(port, source)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target="/")))
        self.status = 101
        for event in self.events():
            if isinstance(event, AcceptConnection):
                return
        raise AssertionError("no handshake")

    def events(self) -> Iterator[object]:
        while True:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            yield from self.ws.events()
            if not data:
                return

    def close_code(self, within: float = 10) -> int | None:
        """The code of the server's Close frame (None: closed without one)."""
        self.sock.settimeout(within)
        try:
            for event in self.events():
                if isinstance(event, CloseConnection):
                    return event.code
        except ConnectionResetError:
            return None
        return None


def handshake_status(port: int, source: str) -> tuple[int, bytes]:
    with connect(port, source) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = sock.recv(65536)
        return int(data.split(b" ")[1]), data


def masked_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, (0x80 if mask else 0) | size)
    else:
        head = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, size)
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_websocket_connections_are_capped_per_address(limited: DevNode) -> None:
    held = [RawWebSocket(limited.port, "127.0.0.10") for _ in range(WS_PER_IP)]
    try:
        status, data = handshake_status(limited.port, "127.0.0.10")
        assert status == 429 and b"rpc.max_ws_connections_per_ip = 2" in data
        other = RawWebSocket(limited.port, "127.0.0.11")  # another address gets in
        other.sock.sendall(other.ws.send(TextMessage(data=BLOCK_NUMBER.decode())))
        answer = next(e for e in other.events() if isinstance(e, TextMessage))
        assert orjson.loads(answer.data)["result"].startswith("0x")
        other.sock.close()
    finally:
        for ws in held:
            ws.sock.close()


def test_fragment_bookkeeping_counts_against_the_message_limit(limited: DevNode) -> None:
    # many small fragments: memory is charged per fragment, so the close comes long before
    # the payload itself reaches the limit
    ws = RawWebSocket(limited.port, "127.0.0.12")
    piece = b"x" * 100
    needed = MAX_MESSAGE // (len(piece) + FRAGMENT_OVERHEAD) + 1
    frames = [masked_frame(0x1, piece, fin=False)]
    frames += [masked_frame(0x0, piece, fin=False) for _ in range(needed)]
    ws.sock.sendall(b"".join(frames))
    assert ws.close_code() == 1009
    assert needed * len(piece) < MAX_MESSAGE, "closed before the payload reached the limit"
    ws.sock.close()
    # tiny fragments: the fragment count is a policy limit of its own
    ws = RawWebSocket(limited.port, "127.0.0.12")
    frames = [masked_frame(0x1, b"[", fin=False)]
    frames += [masked_frame(0x0, b" ", fin=False) for _ in range(MAX_FRAGMENTS + 10)]
    ws.sock.sendall(b"".join(frames))
    assert ws.close_code() == 1008
    ws.sock.close()
    # a fragmented request within both limits is answered
    ws = RawWebSocket(limited.port, "127.0.0.12")
    parts = [BLOCK_NUMBER[i : i + 5] for i in range(0, len(BLOCK_NUMBER), 5)]
    frames = [masked_frame(0x1 if i == 0 else 0x0, p, fin=i == len(parts) - 1)
              for i, p in enumerate(parts)]  # fmt: skip
    ws.sock.sendall(b"".join(frames))
    answer = next(e for e in ws.events() if isinstance(e, TextMessage))
    assert orjson.loads(answer.data)["id"] == 1
    ws.sock.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (masked_frame(0x1, BLOCK_NUMBER, mask=False), 1002),  # unmasked client frame
        (masked_frame(0x0, b"x"), 1002),  # continuation with nothing to continue
        (masked_frame(0x3, b"x"), 1002),  # reserved opcode
        (masked_frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8 in a text message
    ],
)
def test_protocol_errors_get_a_close_frame_with_the_code(
    limited: DevNode, frame: bytes, code: int
) -> None:
    ws = RawWebSocket(limited.port, "127.0.0.13")
    ws.sock.sendall(frame)
    assert ws.close_code() == code
    ws.sock.close()


# -- quiet disconnects ------------------------------------------------------------------------


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a killed client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_vanishing_mid_exchange_are_one_debug_line(
    node: DevNode, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="moderntensor.rpc")
    big = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": i, "method": "eth_getBlockByNumber", "params": ["0x0", True]}
            for i in range(1000)
        ]
    )
    for _ in range(5):
        ws = RawWebSocket(node.port, "127.0.0.1")
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws.sock.sendall(ws.ws.send(TextMessage(data=big.decode())))
        ws.sock.recv(1024)  # the answer is on its way
        reset(ws.sock)
        sock = connect(node.port, "127.0.0.1")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(post(big))
        sock.recv(1024)
        reset(sock)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        quiet = [r for r in caplog.records if r.getMessage().startswith("rpc client went away")]
        if len(quiet) >= 5:
            break
        time.sleep(0.05)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith(
        "moderntensor.rpc")]  # fmt: skip
    assert errors == []
    assert len(quiet) >= 5 and all(r.levelno == logging.DEBUG and r.exc_info is None
                                   for r in quiet)  # fmt: skip


# -- the core alone ---------------------------------------------------------------------------


def test_connection_limits_core() -> None:
    cancelled: list[str] = []
    limits = ConnectionLimits(total=4, http_per_ip=2, ws_per_ip=1)
    a1 = limits.admit("a", lambda: cancelled.append("a1"))
    limits.admit("a", lambda: cancelled.append("a2"))
    with pytest.raises(ConnectionRefused, match="max_http_connections_per_ip = 2"):
        limits.admit("a", lambda: None)
    limits.busy(a1)  # a request in flight: not evictable
    b1 = limits.admit("b", lambda: cancelled.append("b1"))
    limits.upgrade(b1)  # a WebSocket: never evicted, counted apart
    with pytest.raises(ConnectionRefused, match="max_ws_connections_per_ip = 1"):
        limits.upgrade(limits.admit("b", lambda: cancelled.append("b2")))
    assert len(limits) == 4 and cancelled == []
    # full: the longest-idle connection (a2; a1 is busy, b1 a WebSocket) makes room
    limits.admit("c", lambda: cancelled.append("c1"))
    assert cancelled == ["a2"]
    limits.idle(a1)
    limits.admit("d", lambda: cancelled.append("d1"))
    assert cancelled == ["a2", "b2"], "b2 had been idle longer than a1"
    stats = limits.statistics()
    assert (stats["evicted"], stats["refused"], stats["websockets"]) == (2, 2, 1)
    limits.release(b1)
    assert limits.statistics()["websockets"] == 0
