"""HTTP/1.1 for the explorer on Trio with h11: one task per connection, keep-alive, bounded.

The faucet's h11 loop (``moderntensor/faucet/_http.py``) is the model, but the explorer needs
what it does not have: the WebSocket upgrade of ``GET /ws`` (handed to the RPC's
``WebSocketSession``), the RPC server's :class:`ConnectionLimits` (per-address caps, the
longest-idle connection evicted when full, so each request marks its slot busy then idle),
``HEAD`` and ``304 Not Modified``. The node's RPC port keeps its own faster loop.

Limits: heads up to 16 KiB (431 beyond), bodies up to ``max_body_bytes`` (413, answered from
``Content-Length`` before the body is read, or once a chunked body passes the limit); a
connection that sends nothing is closed after ``first_request_timeout_s``, an idle keep-alive
one after ``idle_timeout_s``; a started request must arrive within 30 s; a response gets 30 s
plus a second per 16 KiB to be read.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable

import attrs
import h11
import orjson
import trio

from moderntensor.rpc._io import REQUEST_TIMEOUT, is_disconnect, write_timeout
from moderntensor.rpc._limits import ConnectionLimits, ConnectionRefused, Slot

from ._config import ExplorerConfig

__all__ = ["HttpRequest", "HttpResponse", "serve_connection"]

log = logging.getLogger("moderntensor.explorer")

MAX_HEAD = 16 * 1024
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@attrs.frozen(slots=True)
class HttpRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    """Lower-case names; the last value of a repeated header."""
    body: bytes


@attrs.frozen(slots=True)
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_error(status: int, message: str) -> HttpResponse:
    return HttpResponse(status, orjson.dumps({"error": message}))


class _Done(Exception):
    """Close the connection."""


async def _next(stream: trio.abc.Stream, conn: h11.Connection) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await stream.receive_some(65536)
        conn.receive_data(bytes(data))


async def _send(
    stream: trio.abc.Stream, conn: h11.Connection, response: HttpResponse, head: bool = False
) -> None:
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        ("x-content-type-options", "nosniff"),
        *response.headers,
    ]
    if not any(name == "cache-control" for name, _ in response.headers):
        headers.append(("cache-control", "no-store"))
    if response.status == 304:
        headers = [h for h in headers if h[0] not in ("content-length", "content-type")]
    data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    if not head and response.status != 304:
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    with trio.move_on_after(write_timeout(len(data))):
        await stream.send_all(data)
        return
    raise _Done  # a reader too slow for the response


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
WebSocket = Callable[[trio.abc.Stream, bytes], Awaitable[None]]


async def serve_connection(
    stream: trio.abc.Stream,
    slot: Slot,
    limits: ConnectionLimits,
    config: ExplorerConfig,
    handle: Handler,
    websocket: WebSocket,
) -> None:
    """Serve requests on ``stream`` until the client closes, errs, idles or is evicted."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    first = True
    try:
        while True:
            limits.idle(slot)
            wait = config.first_request_timeout_s if first else config.idle_timeout_s
            first = False
            try:
                with trio.move_on_after(wait) as idle:
                    event = await _next(stream, conn)
                if idle.cancelled_caught:
                    return
                limits.busy(slot)
                if isinstance(event, h11.ConnectionClosed) or not isinstance(event, h11.Request):
                    return
                if await _request(stream, conn, event, slot, limits, config, handle, websocket):
                    return
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint
                    reason = "request head too large" if status == 431 else f"bad request: {exc}"
                    await _send(stream, conn, json_error(status, reason))
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return  # e.g. a 413 sent before the body was read: do not read it
            conn.start_next_cycle()
    except _Done:
        pass
    except Exception as exc:
        if not is_disconnect(exc):
            log.exception("explorer connection failed")
    finally:
        await trio.aclose_forcefully(stream)


async def _request(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    event: h11.Request,
    slot: Slot,
    limits: ConnectionLimits,
    config: ExplorerConfig,
    handle: Handler,
    websocket: WebSocket,
) -> bool:
    """Answer one request; True when the connection is done (upgraded, or must close)."""
    if len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers) > MAX_HEAD:
        await _send(stream, conn, json_error(431, "request head too large"))
        return True  # h11 bounds a head that arrives in pieces; one that came whole: here
    headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in event.headers}
    target = event.target.decode("latin-1")
    path, _, query = target.partition("?")
    method = event.method.decode("ascii", "replace")
    if path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
        await _upgrade(stream, conn, headers, method, slot, limits, websocket)
        return True
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > config.max_body_bytes:
        await _send(stream, conn, json_error(413, _too_large(config)))
        return True
    if conn.they_are_waiting_for_100_continue:
        await stream.send_all(
            conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
        )
    body = bytearray()
    with trio.move_on_after(REQUEST_TIMEOUT) as scope:
        while True:
            part = await _next(stream, conn)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > config.max_body_bytes:
                    await _send(stream, conn, json_error(413, _too_large(config)))
                    return True
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                return True
    if scope.cancelled_caught:
        return True
    request = HttpRequest(method, path, query, headers, bytes(body))
    try:
        response = await handle(request)
    except Exception:  # one bad request must not take the server down
        log.exception("explorer request %s %s failed", method, path[:200])
        response = json_error(500, "internal error")
    await _send(stream, conn, response, head=method == "HEAD")
    return False


def _too_large(config: ExplorerConfig) -> str:
    return f"request body too large: limit {config.max_body_bytes} bytes (explorer.max_body_bytes)"


async def _upgrade(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    headers: dict[str, str],
    method: str,
    slot: Slot,
    limits: ConnectionLimits,
    websocket: WebSocket,
) -> None:
    key = headers.get("sec-websocket-key", "").strip()
    if method != "GET" or not key or headers.get("sec-websocket-version") != "13":
        await _send(stream, conn, json_error(400, "bad WebSocket handshake (need GET, a key "
                                                  "and version 13)"))  # fmt: skip
        return
    try:
        limits.upgrade(slot)
    except ConnectionRefused as exc:
        await _send(stream, conn, json_error(429, exc.reason.replace("rpc.", "explorer.")))
        return
    for _ in range(3):  # EndOfMessage, then h11 pauses before the new protocol
        if conn.next_event() is h11.PAUSED:
            break
    else:
        return
    accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest())
    response = h11.InformationalResponse(
        status_code=101,
        headers=[
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept),
        ],
    )
    await stream.send_all(conn.send(response) or b"")
    trailing, _closed = conn.trailing_data
    await websocket(stream, bytes(trailing))
