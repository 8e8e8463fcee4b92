"""HTTP/1.1 on Trio: JSON-RPC POSTs, CORS, ``/health``, ``/metrics``, WebSocket upgrade.

The common request (a keep-alive ``POST`` with ``Content-Length``) takes the fast path of
``_http1.py``: parsed by hand, answered with one write, read with one readiness wait and one
``read`` on the socket. Anything else (other methods, chunked bodies, ``Expect``, HTTP/1.0,
malformed or oversized heads, bodies over the limit) goes to h11 for that request, then the
connection returns to the fast path. Why h11 rather than hypercorn + starlette: hypercorn's
Trio worker parses with the same h11 and wsproto, but its ASGI layers cost ~420 µs of CPU per
request on our 2-core machine (1,500 no-op requests/s against 3,400 with h11 alone). h11 and
wsproto are sans-I/O state machines (STYLE rule 1's model), and so is the fast parser.

Limits: request heads up to 16 KiB, bodies up to ``max_body_bytes`` (413 beyond, before
reading it); a connection that never sends a byte is closed after ``first_request_timeout_s``,
an idle keep-alive one after ``idle_timeout_s`` (to 1.5 times that: the deadline is moved
lazily); a started request, head and body, must arrive within 30 s. The clock stops while the
answer is computed (bounded by the dispatcher's budgets), and the response gets 30 s plus one
second per 16 KiB to be read, so a large answer to a slow reader is not cut off (a stalled
reader is). A request with both Content-Length and Transfer-Encoding is refused (400) and the
connection closed (RFC 9112 §6.1: such a request is a smuggling attempt or a broken proxy).
A client that goes away mid-request or mid-response is one DEBUG line, not a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
from collections.abc import Callable
from typing import Any

import h11
import orjson
import trio

from ._config import RpcConfig
from ._dispatch import Dispatcher, error_response
from ._errors import INVALID_REQUEST, RpcError
from ._http1 import MAX_HEAD_BYTES, Fallback, blank_line_search_start, parse_request, response_bytes
from ._io import (
    RECEIVE_CHUNK,
    REQUEST_TIMEOUT,
    Closed,
    SocketIo,
    StreamIo,
    is_disconnect,
    write_timeout,
)
from ._limits import ConnectionLimits, ConnectionRefused, Slot

__all__ = ["HttpHandler"]

log = logging.getLogger("moderntensor.rpc")

LINGER_SECONDS = 2.0
_IDLE_SLACK = 1.5
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_JSON = (b"content-type", b"application/json")
_JSON_LINE = b"content-type: application/json\r\n"

Headers = list[tuple[bytes, bytes]]
_Pending = tuple[bytes, bool] | None  # unconsumed bytes and end-of-input, or close


class HttpHandler:
    """Serves one TCP connection at a time (each in its own task)."""

    def __init__(
        self,
        config: RpcConfig,
        dispatcher: Dispatcher,
        health: Callable[[], tuple[int, dict[str, Any]]],
        metrics: Callable[[], tuple[bytes, str]],
        websocket: Callable[[trio.abc.Stream, bytes], Any] | None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.health = health
        self.metrics = metrics
        self.websocket = websocket
        self.limits = limits
        self.disconnects = 0

    async def __call__(self, stream: trio.abc.Stream, slot: Slot | None = None) -> None:
        try:
            await self._serve(stream, slot)
        except Exception as exc:
            if not is_disconnect(exc):
                log.exception("rpc connection failed")
            else:
                self.disconnects += 1
                if log.isEnabledFor(logging.DEBUG):
                    leaf: BaseException = exc
                    while isinstance(leaf, BaseExceptionGroup):
                        leaf = leaf.exceptions[0]
                    log.debug("rpc client went away: %s", type(leaf).__name__)
        finally:
            await trio.aclose_forcefully(stream)

    def _busy(self, slot: Slot | None) -> None:
        if slot is not None and self.limits is not None:
            self.limits.busy(slot)

    def _idle(self, slot: Slot | None) -> None:
        if slot is not None and self.limits is not None:
            self.limits.idle(slot)

    async def _next_event(
        self, stream: trio.abc.Stream, conn: h11.Connection, timeout: float
    ) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            with trio.move_on_after(timeout):
                data = await stream.receive_some(RECEIVE_CHUNK)
                conn.receive_data(bytes(data))
                continue
            raise Closed

    async def _serve(self, stream: trio.abc.Stream, slot: Slot | None) -> None:
        io: SocketIo | StreamIo = (
            SocketIo(stream.socket) if isinstance(stream, trio.SocketStream) else StreamIo(stream)
        )
        pending: tuple[bytes, bool] | None = (b"", False)
        first = True
        while pending is not None:
            pending = await self._fast(io, *pending, slot, first)
            first = False
            if pending is not None:
                pending = await self._slow(stream, *pending, slot)

    async def _fast(
        self, io: SocketIo | StreamIo, data: bytes, eof: bool, slot: Slot | None, first: bool
    ) -> _Pending:
        """Serve common requests until one needs h11: returns the unconsumed bytes and whether
        the peer finished sending, or None to close the connection."""
        buf = bytearray(data)
        limit = self.config.max_body_bytes
        idle_timeout = self.config.idle_timeout_s
        answer_body = self.dispatcher.answer
        limits = self.limits if slot is not None else None
        searched = 0
        with trio.CancelScope() as scope:
            # Moving a deadline costs a few µs: the idle one is moved only once it is due
            # within idle_timeout, so it is 1 to 1.5 times that after the last response.
            scope.deadline = trio.current_time() + (
                self.config.first_request_timeout_s if first else _IDLE_SLACK * idle_timeout
            )
            idle = True

            def lift() -> None:
                scope.deadline = math.inf

            while True:
                parsed = parse_request(buf, limit, searched) if buf else None
                if isinstance(parsed, Fallback):
                    return bytes(buf), eof
                if parsed is None or len(buf) < parsed.body_end:
                    if eof:
                        return (bytes(buf), True) if buf else None
                    if parsed is None:
                        searched = blank_line_search_start(len(buf))
                    if buf and idle:  # a request has started: it gets REQUEST_TIMEOUT
                        scope.deadline = trio.current_time() + REQUEST_TIMEOUT
                        idle = False
                        if limits is not None:
                            limits.busy(slot)  # type: ignore[arg-type]
                    received = await io.receive()
                    if received:
                        buf += received
                    else:
                        eof = True
                    continue
                body = bytes(buf[parsed.head_end : parsed.body_end])
                del buf[: parsed.body_end]
                searched = 0
                if idle and limits is not None:  # the whole request came in one read
                    limits.busy(slot)  # type: ignore[arg-type]
                # Not timed: the answer is bounded by the dispatcher's budgets, and it lifts
                # the timer before it waits (a light call does not). Only the write is timed:
                # the idle deadline is moved only when it is too close for that (rarely, on a
                # keep-alive connection).
                answer = await answer_body(body, before_wait=lift)
                cors = self._cors_lines(parsed.origin) if parsed.origin is not None else b""
                if answer is None:
                    response = response_bytes(204, cors, b"", parsed.close)
                else:
                    response = response_bytes(200, _JSON_LINE + cors, answer, parsed.close)
                now = trio.current_time()
                write_by = now + write_timeout(len(response))
                deadline = scope.deadline
                if deadline < write_by or deadline == math.inf:  # too close, or lifted
                    scope.deadline = write_by
                    idle = False
                await io.send(response)
                if parsed.close:
                    return None
                if limits is not None:
                    limits.idle(slot)  # type: ignore[arg-type]
                if buf:
                    await trio.lowlevel.checkpoint()  # pipelined requests: let others run
                    now = trio.current_time()
                if not idle or scope.deadline < now + idle_timeout:
                    scope.deadline = now + _IDLE_SLACK * idle_timeout
                    idle = True
        return None  # timed out

    async def _slow(
        self, stream: trio.abc.Stream, data: bytes, eof: bool, slot: Slot | None
    ) -> _Pending:
        """One request through h11, starting with bytes already received; what follows it
        (for the fast path) or None to close."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        if data:
            conn.receive_data(data)
        if eof:
            conn.receive_data(b"")
        self._busy(slot)
        try:
            event = await self._next_event(stream, conn, REQUEST_TIMEOUT)
        except h11.RemoteProtocolError as exc:
            await self._protocol_error(stream, conn, exc)
            return None
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed (or PAUSED, which needs a Request first)
        try:
            keep_going = await self._request(stream, conn, event, slot)
        except h11.RemoteProtocolError as exc:
            await self._protocol_error(stream, conn, exc)
            return None
        self._idle(slot)
        if not keep_going or conn.our_state is h11.MUST_CLOSE:
            return None
        if conn.their_state is not h11.DONE:
            return None  # the body was not read (e.g. 413): the connection cannot be reused
        trailing, closed = conn.trailing_data
        return bytes(trailing), closed

    async def _protocol_error(
        self, stream: trio.abc.Stream, conn: h11.Connection, exc: h11.RemoteProtocolError
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint
        body = orjson.dumps(error_response(RpcError(INVALID_REQUEST, f"bad HTTP request: {exc}")))
        await self._respond(stream, conn, status, body, [_JSON, (b"connection", b"close")])

    # -- one request ----------------------------------------------------------------------

    async def _request(
        self, stream: trio.abc.Stream, conn: h11.Connection, request: h11.Request, slot: Slot | None
    ) -> bool:
        headers = {name.lower(): value for name, value in request.headers}
        cors = self._cors_headers(headers.get(b"origin"))
        path = request.target.split(b"?", 1)[0]
        method = request.method
        if b"transfer-encoding" in headers and b"content-length" in headers:
            await self._error(
                stream, conn, 400,
                "request has both Content-Length and Transfer-Encoding (RFC 9112 section 6.1)",
                [*cors, (b"connection", b"close")],
            )  # fmt: skip
            return False
        if method == b"OPTIONS":
            await self._drain(stream, conn)
            await self._respond(stream, conn, 204, b"", cors + self._preflight(headers, cors))
            return True
        if method in (b"GET", b"HEAD"):
            if headers.get(b"upgrade", b"").lower() == b"websocket" and self.websocket:
                await self._upgrade(stream, conn, request, headers, slot)
                return False
            if path == b"/health":
                status, doc = self.health()
                body = orjson.dumps(doc)
                await self._drain(stream, conn)
                await self._respond(
                    stream, conn, status, body, [_JSON, *cors], head=method == b"HEAD"
                )
                return True
            if path == b"/metrics":
                body, content_type = self.metrics()
                await self._drain(stream, conn)
                await self._respond(
                    stream, conn, 200, body, [(b"content-type", content_type.encode()), *cors],
                    head=method == b"HEAD",
                )  # fmt: skip
                return True
        if method != b"POST":
            await self._drain(stream, conn)
            message = "use POST for JSON-RPC; GET serves /health and /metrics and WebSocket"
            status = 404 if method in (b"GET", b"HEAD") else 405
            await self._error(stream, conn, status, message, cors)
            return True
        length = headers.get(b"content-length")
        limit = self.config.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            await self._error(
                stream, conn, 413, f"request body too large: {int(length)} bytes, limit {limit}",
                [*cors, (b"connection", b"close")],
            )  # fmt: skip
            await self._linger(stream, int(length))
            return False
        if conn.they_are_waiting_for_100_continue:
            await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        payload = await self._read_body(stream, conn, limit)
        if payload is None:
            await self._error(
                stream, conn, 413, f"request body too large: limit {limit} bytes",
                [*cors, (b"connection", b"close")],
            )  # fmt: skip
            await self._linger(stream, limit)
            return False
        answer = await self.dispatcher.answer(payload)
        with trio.move_on_after(write_timeout(0 if answer is None else len(answer))):
            if answer is None:
                await self._respond(stream, conn, 204, b"", cors)
            else:
                await self._respond(stream, conn, 200, answer, [_JSON, *cors])
            return True
        raise Closed  # a reader stalled for longer than the response deserves

    async def _read_body(
        self, stream: trio.abc.Stream, conn: h11.Connection, limit: int
    ) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        with trio.move_on_after(REQUEST_TIMEOUT):
            while True:
                event = await self._next_event(stream, conn, REQUEST_TIMEOUT)
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > limit:
                        return None
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks)
                else:
                    raise Closed
        raise Closed  # a slow body: the whole request gets REQUEST_TIMEOUT

    @staticmethod
    async def _linger(stream: trio.abc.Stream, size: int) -> None:
        """Read and drop what the client is still sending (bounded in bytes and time), so it
        sees our error response instead of a reset connection."""
        with trio.move_on_after(LINGER_SECONDS):
            while size > 0:
                data = await stream.receive_some(RECEIVE_CHUNK)
                if not data:
                    return
                size -= len(data)

    async def _drain(self, stream: trio.abc.Stream, conn: h11.Connection) -> None:
        """Skip a (small) body of a request that should not have one."""
        if conn.their_state is h11.SEND_BODY:
            body = await self._read_body(stream, conn, 64 * 1024)
            if body is None:
                raise Closed

    async def _respond(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        status: int,
        body: bytes,
        headers: Headers,
        *,
        head: bool = False,
    ) -> None:
        all_headers = [*headers, (b"content-length", str(len(body)).encode())]
        if status == 204:
            all_headers.pop()
        data = conn.send(h11.Response(status_code=status, headers=all_headers))
        if body and not head:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        await stream.send_all(data)

    async def _error(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        status: int,
        message: str,
        headers: Headers,
    ) -> None:
        body = orjson.dumps(error_response(RpcError(INVALID_REQUEST, message)))
        await self._respond(stream, conn, status, body, [_JSON, *headers])

    # -- CORS -----------------------------------------------------------------------------

    def _cors_headers(self, origin: bytes | None) -> Headers:
        origins = self.config.cors_origins
        if origin is None or not origins:
            return []
        if "*" in origins:
            return [(b"access-control-allow-origin", b"*")]
        if origin.decode("latin-1") in origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        return []

    def _cors_lines(self, origin: bytes) -> bytes:
        return b"".join(b"%s: %s\r\n" % header for header in self._cors_headers(origin))

    @staticmethod
    def _preflight(headers: dict[bytes, bytes], cors: Headers) -> Headers:
        if not cors:
            return []
        requested = headers.get(b"access-control-request-headers", b"content-type")
        return [
            (b"access-control-allow-methods", b"POST, GET, OPTIONS"),
            (b"access-control-allow-headers", requested),
            (b"access-control-max-age", b"600"),
        ]

    # -- WebSocket ------------------------------------------------------------------------

    async def _upgrade(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        request: h11.Request,
        headers: dict[bytes, bytes],
        slot: Slot | None,
    ) -> None:
        key = headers.get(b"sec-websocket-key")
        version = headers.get(b"sec-websocket-version")
        if request.method != b"GET" or not key or version != b"13" or self.websocket is None:
            await self._drain(stream, conn)
            await self._error(
                stream, conn, 400, "bad WebSocket handshake (need GET, a key and version 13)",
                [(b"connection", b"close")],
            )  # fmt: skip
            return
        if slot is not None and self.limits is not None:
            try:
                self.limits.upgrade(slot)
            except ConnectionRefused as exc:
                await self._drain(stream, conn)
                await self._error(stream, conn, 429, exc.reason, [(b"connection", b"close")])
                return
        accept = base64.b64encode(hashlib.sha1(key.strip() + _WS_GUID).digest())
        if conn.their_state is h11.SEND_BODY:
            await self._drain(stream, conn)
        for _ in range(3):  # EndOfMessage, then h11 pauses before the new protocol
            if conn.next_event() is h11.PAUSED:
                break
        else:
            raise Closed
        response = h11.InformationalResponse(
            status_code=101,
            headers=[
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", accept),
            ],
        )
        await stream.send_all(conn.send(response))
        trailing, _closed = conn.trailing_data
        await self.websocket(stream, bytes(trailing))
